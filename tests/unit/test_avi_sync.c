/* test_avi_sync.c - runtime/avi/sync: refusals before the cache is synced,
 * dry-run planning and output, freeing with work in flight (ASan checks
 * that nothing leaks), and one long-lived context against the AVI
 * simulator (a repeated sync makes no call at all; a re-read notices
 * objects lost behind its back; gc). The many faults are tested through
 * `amc sync` in tests/integration/test_avi_sync.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* ---- against avisim ---------------------------------------------------- */

static pid_t sim_pid;
static int sim_port;
static char sim_dir[] = "/tmp/amc-test-avi-sync-XXXXXX";
static char sim_portfile[128];

static int sim_start(void) {
  const char *py = getenv("AMC_PYTHON");
  const char *src = getenv("AMC_SOURCE_DIR");
  if (!py)
    py = "/usr/bin/python3";
  char script[1024];
  snprintf(script, sizeof script, "%s/tests/fakes/avi/avisim.py",
           src ? src : AMC_SOURCE_DIR);
  if (!mkdtemp(sim_dir))
    return -1;
  snprintf(sim_portfile, sizeof sim_portfile, "%s/ports.json", sim_dir);
  sim_pid = fork();
  if (sim_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execl(py, py, script, "--no-https", "--port-file", sim_portfile,
          "--password", "sim-pw", "--exit-with-parent", (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 400; i++) { /* 20 s */
    FILE *f = fopen(sim_portfile, "r");
    if (f) {
      char buf[512] = {0};
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      fclose(f);
      const char *p = n ? strstr(buf, "\"http\": ") : NULL;
      if (p && sscanf(p + 8, "%d", &sim_port) == 1)
        return 0;
    }
    usleep(50000);
  }
  return -1;
}

static void sim_stop(void) {
  if (sim_pid > 0) {
    kill(sim_pid, SIGTERM);
    waitpid(sim_pid, NULL, 0);
    sim_pid = 0;
  }
  unlink(sim_portfile);
  rmdir(sim_dir);
}

/* Runs the loop until `r->calls` reaches `n`. */
static void wait_for(uv_loop_t *loop, res_t *r, int n) {
  while (r->calls < n)
    uv_run(loop, UV_RUN_ONCE);
}

static amc_translation_t *two_pools(void) {
  amc_translation_t *t = calloc(1, sizeof *t);
  t->key = strdup("Gateway/ns/gw");
  t->n_objects = 2;
  t->objects = calloc(2, sizeof *t->objects);
  for (int i = 0; i < 2; i++) {
    char name[64], json[512];
    snprintf(name, sizeof name, "amc--c1--ns--gw--p%d", i);
    snprintf(json, sizeof json,
             "{\"created_by\":\"amc-c1\",\"markers\":[{\"key\":"
             "\"clustername\",\"values\":[\"c1\"]},{\"key\":\"gateway\","
             "\"values\":[\"ns/gw\"]}],\"name\":\"%s\",\"servers\":[{\"ip\":"
             "{\"addr\":\"10.0.0.%d\",\"type\":\"V4\"}}]}",
             name, i + 1);
    t->objects[i].type = strdup("pool");
    t->objects[i].name = strdup(name);
    t->objects[i].json = strdup(json);
    t->objects[i].json_len = strlen(json);
  }
  return t;
}

typedef struct {
  int n;
  char method[8];
  char type[32];
} seen_t;

static void observe(const char *method, const char *type, long status,
                    void *data) {
  (void)status;
  seen_t *s = data;
  s->n++;
  snprintf(s->method, sizeof s->method, "%s", method);
  snprintf(s->type, sizeof s->type, "%s", type);
}

static void reset_done(amc_http_req_t *req, const amc_http_response_t *r,
                       void *data) {
  (void)req;
  *(long *)data = r->status ? r->status : -1;
}

static void set_flag(void *data) {
  *(int *)data = 1;
}

static void test_against_the_simulator(void **state) {
  (void)state;
  if (sim_start() != 0) {
    sim_stop();
    fail_msg("avisim did not start");
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_http_t *h = amc_http_new(&loop);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", sim_port);
  amc_avi_sync_opts_t o = {.controller = url,
                           .username = "admin",
                           .password = "sim-pw",
                           .cluster = "c1",
                           .rate = 200,
                           .burst = 20};
  amc_avi_sync_t *s = amc_avi_sync_new(&loop, h, &o);
  seen_t seen = {0};
  amc_avi_sync_set_observer(s, observe, &seen);
  res_t st = {0}, r = {0};
  amc_avi_sync_start(s, on_result, &st);
  wait_for(&loop, &st, 1);
  assert_true(st.ok);
  assert_int_equal(st.n[0], 9); /* one read per owned type */
  assert_true(amc_avi_sync_synced(s));
  assert_true(amc_avi_sync_reachable(s));
  amc_translation_t *t = two_pools();

  amc_avi_sync_key(s, t->key, t, on_result, &r);
  wait_for(&loop, &r, 1);
  assert_true(r.ok);
  assert_int_equal(r.n[1], 2);
  assert_int_equal(amc_avi_sync_cached(s), 2);
  assert_string_equal(seen.method, "POST");
  assert_string_equal(seen.type, "pool");

  /* Again: not a single call. */
  int before = seen.n;
  amc_avi_sync_key(s, t->key, t, on_result, &r);
  wait_for(&loop, &r, 2);
  assert_true(r.ok);
  assert_int_equal(r.n[0] + r.n[1] + r.n[2] + r.n[3], 0);
  assert_int_equal(seen.n, before);

  /* Everything vanishes behind amc's back (and the session with it). The
   * cache does not know until a re-read. */
  char reset[96];
  snprintf(reset, sizeof reset, "http://127.0.0.1:%d/_sim/reset", sim_port);
  amc_http_opts_t ro = {.method = "POST", .url = reset, .timeout_ms = 5000};
  long reset_status = 0;
  assert_non_null(amc_http_start(h, &ro, reset_done, &reset_status));
  while (reset_status == 0)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(reset_status, 200);
  amc_avi_sync_key(s, t->key, t, on_result, &r);
  wait_for(&loop, &r, 3);
  assert_int_equal(r.n[1], 0);
  res_t st2 = {0};
  amc_avi_sync_start(s, on_result, &st2);
  assert_true(amc_avi_sync_synced(s)); /* still usable while re-reading */
  wait_for(&loop, &st2, 1);
  assert_true(st2.ok);
  assert_int_equal(amc_avi_sync_cached(s), 0);
  amc_avi_sync_key(s, t->key, t, on_result, &r);
  wait_for(&loop, &r, 4);
  assert_true(r.ok);
  assert_int_equal(r.n[1], 2); /* recreated */

  /* gc with no live key deletes both. */
  res_t g = {0};
  amc_avi_sync_gc(s, NULL, 0, on_result, &g);
  wait_for(&loop, &g, 1);
  assert_true(g.ok);
  assert_int_equal(g.n[3], 2);
  assert_int_equal(amc_avi_sync_cached(s), 0);

  int logged_out = 0;
  amc_avi_sync_logout(s, set_flag, &logged_out);
  while (!logged_out)
    uv_run(&loop, UV_RUN_ONCE);
  amc_avi_sync_free(s);
  amc_http_close(h, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  amc_translation_free(t);
  sim_stop();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refuses_before_start),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_dry_run_plans_in_order_without_secrets),
      cmocka_unit_test(test_free_with_start_in_flight),
      cmocka_unit_test(test_against_the_simulator),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
