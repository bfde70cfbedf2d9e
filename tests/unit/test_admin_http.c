/* test_admin_http.c - the admin server on the loop: real HTTP requests from
 * a client thread (curl) while the loop thread serves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin_http.h"

typedef struct {
  char url[128];
  const char *method;
  long code;
  amc_buf_t body;
  char ctype[128];
  uv_async_t *done;
} req_t;

static size_t on_body(char *p, size_t size, size_t n, void *data) {
  amc_buf_append(data, p, size * n);
  return size * n;
}

static void *client(void *arg) {
  req_t *r = arg;
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, r->url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
  if (r->method)
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->ctype, sizeof r->ctype, "%s", ct ? ct : "");
  }
  curl_easy_cleanup(c);
  uv_async_send(r->done);
  return NULL;
}

static void on_async(uv_async_t *a) {
  uv_stop(a->loop);
}

static uv_loop_t loop;
static amc_admin_t *srv;
static amc_metrics_t *reg;
static int ready_flag;

static int ready(void *data, amc_buf_t *detail) {
  (void)data;
  amc_buf_printf(detail, "{\"rules\":{\"generation\":%d}}", ready_flag ? 1 : 0);
  return ready_flag;
}

/* One request: the loop serves until the client thread finishes. */
static void get(req_t *r, const char *path, const char *method) {
  memset(r, 0, sizeof *r);
  snprintf(r->url, sizeof r->url, "http://127.0.0.1:%d%s", amc_admin_port(srv),
           path);
  r->method = method;
  uv_async_t done;
  uv_async_init(&loop, &done, on_async);
  r->done = &done;
  pthread_t t;
  pthread_create(&t, NULL, client, r);
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(t, NULL);
  uv_close((uv_handle_t *)&done, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

static int setup(void **state) {
  (void)state;
  uv_loop_init(&loop);
  reg = amc_metrics_new();
  amc_metric_t *c = amc_metrics_counter(reg, "amc_test_total", "Test.", NULL);
  amc_metric_inc(c, NULL);
  char err[256];
  srv =
      amc_admin_start(&loop, "127.0.0.1", 0, reg, ready, NULL, err, sizeof err);
  assert_non_null(srv);
  assert_true(amc_admin_port(srv) > 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  amc_admin_close(srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  amc_metrics_free(reg);
  return 0;
}

static void test_endpoints(void **state) {
  (void)state;
  req_t r;
  get(&r, "/healthz", NULL);
  assert_int_equal(r.code, 200);
  assert_string_equal(r.body.data, "ok\n");
  amc_buf_free(&r.body);

  ready_flag = 0;
  get(&r, "/readyz", NULL);
  assert_int_equal(r.code, 503);
  assert_string_equal(r.body.data, "{\"rules\":{\"generation\":0}}\n");
  assert_string_equal(r.ctype, "application/json");
  amc_buf_free(&r.body);
  ready_flag = 1;
  get(&r, "/readyz", NULL);
  assert_int_equal(r.code, 200);
  amc_buf_free(&r.body);

  get(&r, "/metrics", NULL);
  assert_int_equal(r.code, 200);
  assert_non_null(strstr(r.ctype, "version=0.0.4"));
  assert_string_equal(r.body.data, "# HELP amc_test_total Test.\n"
                                   "# TYPE amc_test_total counter\n"
                                   "amc_test_total 1\n");
  amc_buf_free(&r.body);

  get(&r, "/nope", NULL);
  assert_int_equal(r.code, 404);
  amc_buf_free(&r.body);
  get(&r, "/metrics", "DELETE");
  assert_int_equal(r.code, 405);
  amc_buf_free(&r.body);
}

static void test_bad_address(void **state) {
  (void)state;
  char err[256];
  uv_loop_t l;
  uv_loop_init(&l);
  assert_null(
      amc_admin_start(&l, "not-an-ip", 0, reg, NULL, NULL, err, sizeof err));
  assert_string_equal(err,
                      "admin address 'not-an-ip': not an IPv4 or IPv6 address");
  assert_null(amc_admin_start(&l, "127.0.0.1", 70000, reg, NULL, NULL, err,
                              sizeof err));
  /* the port of the running server is taken */
  assert_null(amc_admin_start(&l, "127.0.0.1", amc_admin_port(srv), reg, NULL,
                              NULL, err, sizeof err));
  assert_non_null(strstr(err, "cannot listen"));
  assert_int_equal(uv_loop_close(&l), 0);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_endpoints, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_address, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
