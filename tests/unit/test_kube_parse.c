/* test_kube_parse.c - span JSON scanner, watch line framing and events, and
 * the backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/backoff.h"
#include "kube/kjson.h"
#include "kube/watchparse.h"

static void test_kjson_paths_and_strings(void **state) {
  (void)state;
  const char *s = " {\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":"
                  "\"a\\\"b\\u00e9\\ud83d\\ude00\",\"n\":[1,2,{\"x\":null}],"
                  "\"rv\":-12}}} ";
  amc_kjson_t d, v;
  assert_int_equal(amc_kjson_parse(s, strlen(s), &d), 0);
  assert_int_equal(amc_kjson_type(d), 'o');
  assert_int_equal(amc_kjson_path(d, "object.metadata.name", &v), 0);
  char *name = amc_kjson_strdup(v);
  assert_string_equal(name, "a\"b\xc3\xa9\xf0\x9f\x98\x80");
  free(name);
  assert_int_equal(amc_kjson_path(d, "object.metadata.rv", &v), 0);
  long long x;
  assert_int_equal(amc_kjson_int(v, &x), 0);
  assert_int_equal(x, -12);
  assert_int_equal(amc_kjson_path(d, "object.metadata.missing", &v), -1);
  assert_int_equal(amc_kjson_path(d, "object.metadata.n", &v), 0);
  size_t pos = 0;
  amc_kjson_t e;
  int count = 0;
  while (amc_kjson_array_next(v, &pos, &e) == 1)
    count++;
  assert_int_equal(count, 3);
  assert_true(amc_kjson_streq((amc_kjson_t){"\"ADDED\"", 7}, "ADDED"));
  /* Malformed input is rejected, not over-read. */
  static const char *bad[] = {"{",         "{\"a\":}", "[1,]",  "\"\\x\"",
                              "{\"a\" 1}", "01",       "\"abc", "tru",
                              "{} {}",     "[1 2]",    "-",     "1."};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    assert_int_equal(amc_kjson_parse(bad[i], strlen(bad[i]), &d), -1);
  /* Deep nesting is bounded. */
  char deep[600];
  memset(deep, '[', 300);
  memset(deep + 300, ']', 300);
  assert_int_equal(amc_kjson_parse(deep, 600, &d), -1);
  amc_buf_t b = AMC_BUF_INIT;
  amc_kjson_quote(&b, "a\"\n\\");
  assert_string_equal(b.data, "\"a\\\"\\u000a\\\\\"");
  amc_buf_free(&b);
}

typedef struct {
  int n;
  char lines[8][128];
} seen_t;

static int collect(const char *line, size_t n, void *data) {
  seen_t *s = data;
  snprintf(s->lines[s->n++], 128, "%.*s", (int)n, line);
  return 0;
}

static void test_lines_split_across_chunks(void **state) {
  (void)state;
  const char *stream = "{\"type\":\"ADDED\",\"object\":{}}\n\n{\"type\":"
                       "\"BOOKMARK\",\"object\":{}}\r\n{\"type\":\"DEL";
  /* Every split point gives the same lines. */
  for (size_t cut = 0; cut <= strlen(stream); cut++) {
    amc_watch_lines_t w;
    amc_watch_lines_init(&w);
    seen_t s = {0};
    assert_int_equal(amc_watch_lines_feed(&w, stream, cut, collect, &s), 0);
    assert_int_equal(amc_watch_lines_feed(&w, stream + cut,
                                          strlen(stream) - cut, collect, &s),
                     0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.lines[0], "{\"type\":\"ADDED\",\"object\":{}}");
    assert_string_equal(s.lines[1], "{\"type\":\"BOOKMARK\",\"object\":{}}\r");
    assert_int_equal(amc_watch_lines_pending(&w), strlen("{\"type\":\"DEL"));
    amc_watch_lines_free(&w);
  }
  /* Byte by byte. */
  amc_watch_lines_t w;
  amc_watch_lines_init(&w);
  seen_t s = {0};
  for (size_t i = 0; i < strlen(stream); i++)
    amc_watch_lines_feed(&w, stream + i, 1, collect, &s);
  assert_int_equal(s.n, 2);
  /* Too long a line is an error. */
  w.max_line = 8;
  amc_watch_lines_reset(&w);
  assert_int_equal(amc_watch_lines_feed(&w, "0123456789", 10, collect, &s), -1);
  amc_watch_lines_free(&w);
}

static void test_events(void **state) {
  (void)state;
  amc_watch_event_t ev;
  char err[128];
  const char *added = "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Service\","
                      "\"metadata\":{\"name\":\"s\",\"namespace\":\"ns\","
                      "\"resourceVersion\":\"42\"}}}";
  assert_int_equal(
      amc_watch_event_parse(added, strlen(added), &ev, err, sizeof err), 0);
  assert_int_equal(ev.type, AMC_WATCH_MODIFIED);
  char *ns, *name, *rv;
  assert_int_equal(amc_kube_object_meta(ev.object, &ns, &name, &rv), 0);
  assert_string_equal(ns, "ns");
  assert_string_equal(name, "s");
  assert_string_equal(rv, "42");
  free(ns);
  free(name);
  free(rv);
  const char *gone = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\","
                     "\"status\":\"Failure\",\"reason\":\"Expired\",\"code\":"
                     "410,\"message\":\"too old resource version: 1 (5)\"}}";
  assert_int_equal(
      amc_watch_event_parse(gone, strlen(gone), &ev, err, sizeof err), 0);
  assert_int_equal(ev.type, AMC_WATCH_ERROR);
  assert_int_equal(ev.code, 410);
  const char *gone2 = "{\"type\":\"ERROR\",\"object\":{\"reason\":\"Gone\"}}";
  assert_int_equal(
      amc_watch_event_parse(gone2, strlen(gone2), &ev, err, sizeof err), 0);
  assert_int_equal(ev.code, 410);
  const char *bm = "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":"
                   "{\"resourceVersion\":\"99\"}}}";
  assert_int_equal(amc_watch_event_parse(bm, strlen(bm), &ev, err, sizeof err),
                   0);
  assert_int_equal(amc_kube_object_meta(ev.object, NULL, NULL, &rv), 0);
  assert_string_equal(rv, "99");
  free(rv);
  /* A bookmark has no name: asking for one fails. */
  assert_int_equal(amc_kube_object_meta(ev.object, &ns, &name, &rv), -1);
  assert_null(rv);
  static const char *bad[] = {"[]", "{\"type\":\"NOPE\",\"object\":{}}",
                              "{\"object\":{}}", "{\"type\":\"ADDED\"}",
                              "{\"type\":\"ADDED\",\"object\":{"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    assert_int_equal(
        amc_watch_event_parse(bad[i], strlen(bad[i]), &ev, err, sizeof err),
        -1);
}

static double fixed_rand(void *d) {
  return *(double *)d;
}

static void test_backoff(void **state) {
  (void)state;
  amc_backoff_t b;
  amc_backoff_init(&b, 100, 1000, 0.5);
  double r = 0;
  b.rand01 = fixed_rand;
  b.rand_data = &r;
  assert_int_equal(amc_backoff_next(&b), 100);
  assert_int_equal(amc_backoff_next(&b), 200);
  assert_int_equal(amc_backoff_next(&b), 400);
  assert_int_equal(amc_backoff_next(&b), 800);
  assert_int_equal(amc_backoff_next(&b), 1000);
  assert_int_equal(amc_backoff_next(&b), 1000);
  r = 0.999;
  uint64_t j = amc_backoff_next(&b);
  assert_true(j > 1000 && j < 1500); /* jitter adds at most 50 % */
  amc_backoff_reset(&b);
  r = 0;
  assert_int_equal(amc_backoff_next(&b), 100);
  /* Many failures never overflow. */
  for (int i = 0; i < 200; i++)
    amc_backoff_next(&b);
  assert_int_equal(amc_backoff_next(&b), 1000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kjson_paths_and_strings),
      cmocka_unit_test(test_lines_split_across_chunks),
      cmocka_unit_test(test_events),
      cmocka_unit_test(test_backoff),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
