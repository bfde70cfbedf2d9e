/* test_grpc.c - the I/O-free parts of the gRPC client: grpc-message
 * percent-decoding, message reassembly and status names. (The network side
 * is exercised against a real gRPC C-core server by
 * tests/integration/test_mcp_*.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "grpc.h"

static void decode(const char *in, const char *want) {
  amc_buf_t b = AMC_BUF_INIT;
  amc_grpc_percent_decode(in, strlen(in), &b);
  assert_non_null(b.data);
  assert_string_equal(b.data, want);
  amc_buf_free(&b);
}

static void test_percent_decode(void **state) {
  decode("no%20such%20thing", "no such thing"); /* grpc-js */
  decode("no such thing", "no such thing");     /* C-core, raw */
  decode("50%25 done", "50% done");
  decode("caf%C3%A9", "caf\xc3\xa9");
  decode("caf%c3%a9", "caf\xc3\xa9");
  decode("", "");
  /* malformed escapes: the raw value is kept whole */
  decode("100%", "100%");
  decode("a%2", "a%2");
  decode("a%zz%20b", "a%zz%20b");
}

typedef struct {
  int n;
  size_t lens[8];
  char first[32];
} seen_t;

static int on_msg(void *ud, const uint8_t *d, size_t len) {
  seen_t *s = ud;
  if (s->n == 0)
    snprintf(s->first, sizeof s->first, "%.*s", (int)len, (const char *)d);
  s->lens[s->n++] = len;
  return 0;
}

static void test_deframe_split_and_batched(void **state) {
  /* two messages "hello" and "" and one of 3 bytes, fed byte by byte */
  const uint8_t wire[] = {0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0,  0,
                          0, 0, 0, 0, 0, 0,   0,   3,   'a', 'b', 'c'};
  seen_t s = {0};
  amc_buf_t acc = AMC_BUF_INIT;
  char err[128];
  for (size_t i = 0; i < sizeof wire; i++)
    assert_int_equal(
        amc_grpc_deframe(&acc, wire + i, 1, 1024, on_msg, &s, err, sizeof err),
        0);
  assert_int_equal(s.n, 3);
  assert_string_equal(s.first, "hello");
  assert_int_equal(s.lens[1], 0);
  assert_int_equal(s.lens[2], 3);
  assert_int_equal(acc.len, 0);
  /* all at once */
  seen_t s2 = {0};
  assert_int_equal(amc_grpc_deframe(&acc, wire, sizeof wire, 1024, on_msg, &s2,
                                    err, sizeof err),
                   0);
  assert_int_equal(s2.n, 3);
  /* a partial tail stays buffered */
  seen_t s3 = {0};
  assert_int_equal(
      amc_grpc_deframe(&acc, wire, 7, 1024, on_msg, &s3, err, sizeof err), 0);
  assert_int_equal(s3.n, 0);
  assert_int_equal(acc.len, 7);
  amc_buf_free(&acc);
}

static void test_deframe_errors(void **state) {
  amc_buf_t acc = AMC_BUF_INIT;
  seen_t s = {0};
  char err[128];
  const uint8_t compressed[] = {1, 0, 0, 0, 1, 'x'};
  assert_int_equal(amc_grpc_deframe(&acc, compressed, sizeof compressed, 1024,
                                    on_msg, &s, err, sizeof err),
                   AMC_GRPC_INTERNAL);
  assert_non_null(strstr(err, "compressed message"));
  /* the length is checked before the body arrives */
  const uint8_t big[] = {0, 0x01, 0, 0, 0};
  assert_int_equal(amc_grpc_deframe(&acc, big, sizeof big, 1024 * 1024, on_msg,
                                    &s, err, sizeof err),
                   AMC_GRPC_RESOURCE_EXHAUSTED);
  assert_string_equal(err, "message of 16777216 bytes exceeds the "
                           "1048576-byte limit");
  assert_int_equal(s.n, 0);
  amc_buf_free(&acc);
}

static void test_status_names(void **state) {
  assert_string_equal(amc_grpc_status_name(0), "OK");
  assert_string_equal(amc_grpc_status_name(14), "UNAVAILABLE");
  assert_string_equal(amc_grpc_status_name(16), "UNAUTHENTICATED");
  assert_string_equal(amc_grpc_status_name(99), "UNKNOWN");
}

static void test_bad_urls(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  amc_grpc_callbacks_t cb = {0};
  char err[256];
  const char *bad[] = {"127.0.0.1:15010", "ftp://x:1", "http://:1",
                       "http://h:port", "https://[::1:15012"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    amc_grpc_options_t o = {.url = bad[i]};
    err[0] = '\0';
    assert_null(
        amc_grpc_call_start(&loop, &o, "/a.B/C", &cb, NULL, err, sizeof err));
    assert_true(err[0] != '\0');
  }
  amc_grpc_options_t o = {.url = "http://127.0.0.1:1",
                          .token_file = "/nonexistent/token"};
  assert_null(
      amc_grpc_call_start(&loop, &o, "/a.B/C", &cb, NULL, err, sizeof err));
  assert_string_equal(err, "token file /nonexistent/token: No such file or "
                           "directory");
  o = (amc_grpc_options_t){.url = "https://127.0.0.1:1",
                           .ca_file = "/nonexistent/ca.pem"};
  assert_null(
      amc_grpc_call_start(&loop, &o, "/a.B/C", &cb, NULL, err, sizeof err));
  assert_string_equal(err, "CA file /nonexistent/ca.pem: cannot load "
                           "certificates");
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

typedef struct {
  int ended, status;
  char msg[256];
} end_t;

static void on_end(void *ud, int status, const char *message) {
  end_t *e = ud;
  e->ended++;
  e->status = status;
  snprintf(e->msg, sizeof e->msg, "%s", message);
}

static void test_connect_refused_is_unavailable(void **state) {
  /* bind a port, close it: connecting there is refused */
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_tcp_t t;
  uv_tcp_init(&loop, &t);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&t, (struct sockaddr *)&a, 0), 0);
  int alen = sizeof a;
  uv_tcp_getsockname(&t, (struct sockaddr *)&a, &alen);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
  end_t e = {0};
  amc_grpc_callbacks_t cb = {.on_end = on_end};
  amc_grpc_options_t o = {.url = url};
  char err[256];
  amc_grpc_call_t *c =
      amc_grpc_call_start(&loop, &o, "/a.B/C", &cb, &e, err, sizeof err);
  assert_non_null(c);
  while (!e.ended && uv_run(&loop, UV_RUN_ONCE))
    ;
  assert_int_equal(e.ended, 1);
  assert_int_equal(e.status, AMC_GRPC_UNAVAILABLE);
  assert_non_null(strstr(e.msg, "connection refused"));
  assert_int_equal(amc_grpc_call_send(c, (const uint8_t *)"x", 1), -1);
  amc_grpc_call_free(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(e.ended, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_percent_decode),
      cmocka_unit_test(test_deframe_split_and_batched),
      cmocka_unit_test(test_deframe_errors),
      cmocka_unit_test(test_status_names),
      cmocka_unit_test(test_bad_urls),
      cmocka_unit_test(test_connect_refused_is_unavailable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
