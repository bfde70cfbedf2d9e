/* test_avi_sync.c - runtime/avi/sync without a controller: refusals before
 * the cache is synced, dry-run planning and output, freeing with work in
 * flight (ASan checks that nothing leaks). The calls against a controller
 * are tested in tests/integration/test_avi_sync.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avi/sync.h"

typedef struct {
  int calls;
  int ok, transient;
  char error[512];
  unsigned planned;
  unsigned n[4];
} res_t;

static void on_result(const amc_avi_sync_result_t *r, void *data) {
  res_t *x = data;
  x->calls++;
  x->ok = r->ok;
  x->transient = r->transient;
  x->planned = r->planned;
  memcpy(x->n, r->calls, sizeof x->n);
  snprintf(x->error, sizeof x->error, "%s", r->error ? r->error : "");
}

static amc_translation_t *translation(void) {
  static char *objs[][3] = {
      {"virtualservice", "amc--c1--ns--gw",
       "{\"created_by\":\"amc-c1\",\"name\":\"amc--c1--ns--gw\","
       "\"vsvip_ref\":\"/api/vsvip?name=amc--c1--ns--gw\"}"},
      {"vsvip", "amc--c1--ns--gw", "{\"name\":\"amc--c1--ns--gw\"}"},
      {"sslkeyandcertificate", "amc--c1--ns--gw--cert",
       "{\"created_by\":\"amc-c1\",\"key\":\"-----BEGIN PRIVATE KEY-----"
       "SECRET\",\"name\":\"amc--c1--ns--gw--cert\"}"},
  };
  amc_translation_t *t = calloc(1, sizeof *t);
  t->key = strdup("Gateway/ns/gw");
  t->n_objects = 3;
  t->objects = calloc(3, sizeof *t->objects);
  for (int i = 0; i < 3; i++) {
    t->objects[i].type = strdup(objs[i][0]);
    t->objects[i].name = strdup(objs[i][1]);
    t->objects[i].json = strdup(objs[i][2]);
    t->objects[i].json_len = strlen(objs[i][2]);
  }
  return t;
}

static void test_refuses_before_start(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  amc_avi_sync_opts_t o = {.controller = "http://127.0.0.1:1",
                           .username = "u",
                           .password = "p",
                           .cluster = "c1"};
  amc_avi_sync_t *s = amc_avi_sync_new(&loop, h, &o);
  assert_non_null(s);
  assert_false(amc_avi_sync_synced(s));
  res_t r = {0}, g = {0};
  amc_translation_t *t = translation();
  amc_avi_sync_key(s, t->key, t, on_result, &r);
  assert_int_equal(r.calls, 1);
  assert_false(r.ok);
  assert_true(r.transient);
  assert_string_equal(r.error, "the AVI cache is not synced yet (start has "
                               "not succeeded)");
  amc_avi_sync_key(s, t->key, NULL, on_result, &r); /* a delete, too */
  assert_int_equal(r.calls, 2);
  assert_false(r.ok);
  amc_avi_sync_gc(s, NULL, 0, on_result, &g);
  assert_int_equal(g.calls, 1);
  assert_false(g.ok);
  assert_int_equal(g.n[0] + g.n[1] + g.n[2] + g.n[3], 0);
  amc_avi_sync_free(s);
  amc_http_close(h, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  amc_translation_free(t);
}

static void test_bad_options(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_avi_sync_opts_t o = {.controller = "http://x", .cluster = "c1"};
  assert_null(amc_avi_sync_new(&loop, NULL, &o)); /* no credentials */
  amc_avi_sync_opts_t o2 = {.cluster = "c1"};
  assert_null(amc_avi_sync_new(&loop, NULL, &o2)); /* no controller */
  amc_avi_sync_opts_t o3 = {.dry_run = 1};
  assert_null(amc_avi_sync_new(&loop, NULL, &o3)); /* no cluster */
  uv_loop_close(&loop);
}

static void test_dry_run_plans_in_order_without_secrets(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  amc_avi_sync_opts_t o = {.cluster = "c1", .dry_run = 1, .dry_run_out = out};
  amc_avi_sync_t *s = amc_avi_sync_new(&loop, NULL, &o);
  assert_non_null(s);
  res_t st = {0}, r = {0};
  amc_avi_sync_start(s, on_result, &st);
  assert_int_equal(st.calls, 1);
  assert_true(st.ok);
  amc_translation_t *t = translation();
  amc_avi_sync_key(s, t->key, t, on_result, &r);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_true(r.ok);
  assert_int_equal(r.planned, 3);
  assert_int_equal(r.n[0] + r.n[1] + r.n[2] + r.n[3], 0);
  fclose(out);
  const char *l1 = strstr(buf, "POST /api/vsvip ");
  const char *l2 = strstr(buf, "POST /api/sslkeyandcertificate ");
  const char *l3 = strstr(buf, "POST /api/virtualservice ");
  assert_non_null(l1);
  assert_non_null(l2);
  assert_non_null(l3);
  assert_true(l1 < l2 && l2 < l3);
  assert_null(strstr(buf, "SECRET"));
  assert_non_null(strstr(buf, "\"key\":\"<sensitive>\""));
  free(buf);
  /* A failed translation is refused: nothing is planned or deleted. */
  free(t->error);
  t->error = strdup("rule error");
  amc_avi_sync_key(s, t->key, t, on_result, &r);
  assert_false(r.ok);
  assert_false(r.transient);
  assert_int_equal(r.planned, 0);
  amc_avi_sync_free(s);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  amc_translation_free(t);
}

static void free_timer_cb(uv_timer_t *t) {
  amc_avi_sync_t **s = t->data;
  amc_avi_sync_free(*s);
  *s = NULL;
  uv_close((uv_handle_t *)t, NULL);
}

static void test_free_with_start_in_flight(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  amc_avi_sync_opts_t o = {.controller = "http://127.0.0.1:1",
                           .username = "u",
                           .password = "p",
                           .cluster = "c1",
                           .backoff_base_ms = 1000};
  amc_avi_sync_t *s = amc_avi_sync_new(&loop, h, &o);
  res_t st = {0};
  amc_avi_sync_start(s, on_result, &st);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &s;
  uv_timer_start(&t, free_timer_cb, 50, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_null(s);
  assert_int_equal(st.calls, 0); /* dropped without a callback */
  amc_http_close(h, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refuses_before_start),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_dry_run_plans_in_order_without_secrets),
      cmocka_unit_test(test_free_with_start_in_flight),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
