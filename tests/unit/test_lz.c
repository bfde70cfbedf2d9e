/* test_lz.c - util/lz.h: round trips with and without a dictionary,
 * matches into the dictionary and overlapping ones, long runs, and
 * malformed input refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "util/lz.h"

static void roundtrip(const char *dict, size_t dlen, const char *in, size_t n,
                      size_t *packed) {
  amc_buf_t c = AMC_BUF_INIT, d = AMC_BUF_INIT;
  amc_lz_compress(dict, dlen, in, n, &c);
  /* a prepared dictionary gives the same bytes */
  amc_lz_dict_t *pd = amc_lz_dict_new(dict, dlen);
  size_t pl;
  const void *pb = amc_lz_dict_bytes(pd, &pl);
  assert_int_equal(pl, dlen);
  if (dlen)
    assert_memory_equal(pb, dict, dlen);
  amc_buf_t c2 = AMC_BUF_INIT;
  amc_lz_compress_dict(pd, in, n, &c2);
  assert_int_equal(c2.len, c.len);
  if (c.len)
    assert_memory_equal(c2.data, c.data, c.len);
  amc_buf_free(&c2);
  amc_lz_dict_free(pd);
  assert_int_equal(amc_lz_decompress(dict, dlen, c.data, c.len, &d), 0);
  assert_int_equal(d.len, n);
  if (n)
    assert_memory_equal(d.data, in, n);
  /* the same into a buffer of the known length */
  char *to = malloc(n + 1);
  assert_int_equal(amc_lz_decompress_to(dict, dlen, c.data, c.len, to, n), 0);
  if (n)
    assert_memory_equal(to, in, n);
  /* ... and refused for any other length */
  if (n)
    assert_int_equal(amc_lz_decompress_to(dict, dlen, c.data, c.len, to, n - 1),
                     -1);
  assert_int_equal(amc_lz_decompress_to(dict, dlen, c.data, c.len, to, n + 1),
                   -1);
  free(to);
  if (packed)
    *packed = c.len;
  amc_buf_free(&c);
  amc_buf_free(&d);
}

static void test_roundtrips(void **state) {
  (void)state;
  roundtrip(NULL, 0, "", 0, NULL);
  roundtrip(NULL, 0, "a", 1, NULL);
  roundtrip(NULL, 0, "abcabcabcabcabcabcabc", 21, NULL);
  /* a run: one overlapping match copies what it is writing */
  char run[1000];
  memset(run, 'x', sizeof run);
  size_t packed;
  roundtrip(NULL, 0, run, sizeof run, &packed);
  assert_true(packed < 30);
  /* random bytes: literal runs longer than one token (128) */
  char rnd[5000];
  srand(7);
  for (size_t i = 0; i < sizeof rnd; i++)
    rnd[i] = (char)(rand() & 0xff);
  roundtrip(NULL, 0, rnd, sizeof rnd, &packed);
  assert_true(packed <= sizeof rnd + sizeof rnd / 128 + 1);
  roundtrip(rnd, 2000, rnd + 1000, 4000, NULL);
}

static void test_dictionary(void **state) {
  (void)state;
  const char *dict = "{\"name\":\"app-0/vs-0 http[0] vs0.g0.example.com\","
                     "\"pool_group_ref\":\"/api/poolgroup?name=amc--default"
                     "--istio-system--gw-0--app-0--vs-0--http0\"}";
  const char *in = "{\"name\":\"app-3/vs-37 http[0] vs37.g0.example.com\","
                   "\"pool_group_ref\":\"/api/poolgroup?name=amc--default"
                   "--istio-system--gw-0--app-3--vs-37--http0\"}";
  size_t with, without;
  roundtrip(dict, strlen(dict), in, strlen(in), &with);
  roundtrip(NULL, 0, in, strlen(in), &without);
  /* what the text shares with the dictionary costs a few bytes */
  assert_true(with < strlen(in) / 3);
  assert_true(with < without);
  /* the text equal to the dictionary: a handful of tokens */
  roundtrip(dict, strlen(dict), dict, strlen(dict), &with);
  assert_true(with < 8);
}

/* Hand-made tokens for every short literal and match (the decompressor
 * copies those as whole words when there is room): amc_lz_decompress_to
 * gives amc_lz_decompress's bytes, into a buffer of exactly the text's
 * length (ASan sees a write past it), with and without text after. */
static void test_short_tokens(void **state) {
  (void)state;
  const char *dict = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  size_t dlen = strlen(dict);
  for (size_t dist = 1; dist <= 80; dist++) {
    for (size_t len = 4; len <= 20; len++) {
      for (size_t lit = 1; lit <= 20; lit += 19) {
        for (int tail = 0; tail < 2; tail++) {
          uint8_t in[64];
          size_t n = 0;
          in[n++] = (uint8_t)(lit + 10 - 1); /* lit + 10 literal bytes */
          for (size_t i = 0; i < lit + 10; i++)
            in[n++] = (uint8_t)('0' + i % 10);
          in[n++] = (uint8_t)(0x80 | (len - 4));
          in[n++] = (uint8_t)dist;
          if (tail) {
            in[n++] = (uint8_t)(lit - 1);
            for (size_t i = 0; i < lit; i++)
              in[n++] = (uint8_t)('!' + i);
          }
          amc_buf_t want = AMC_BUF_INIT;
          if (amc_lz_decompress(dict, dlen, in, n, &want) != 0) {
            assert_true(dist > lit + 10 + dlen);
            amc_buf_free(&want);
            continue;
          }
          char *to = malloc(want.len);
          assert_int_equal(
              amc_lz_decompress_to(dict, dlen, in, n, to, want.len), 0);
          assert_memory_equal(to, want.data, want.len);
          free(to);
          amc_buf_free(&want);
        }
      }
    }
  }
}

static void test_malformed(void **state) {
  (void)state;
  amc_buf_t d = AMC_BUF_INIT;
  /* a literal run of 5 bytes with only 2 */
  assert_int_equal(amc_lz_decompress(NULL, 0,
                                     "\x04"
                                     "ab",
                                     3, &d),
                   -1);
  amc_buf_reset(&d);
  /* a match before the start (nothing written yet) */
  assert_int_equal(amc_lz_decompress(NULL, 0, "\x80\x01", 2, &d), -1);
  amc_buf_reset(&d);
  /* ... but within a dictionary it is fine */
  assert_int_equal(amc_lz_decompress("abcd", 4, "\x80\x04", 2, &d), 0);
  assert_int_equal(d.len, 4);
  assert_memory_equal(d.data, "abcd", 4);
  amc_buf_reset(&d);
  /* distance 0, and a cut distance varint */
  assert_int_equal(amc_lz_decompress("abcd", 4, "\x80\x00", 2, &d), -1);
  amc_buf_reset(&d);
  assert_int_equal(amc_lz_decompress("abcd", 4, "\x80\x84", 2, &d), -1);
  amc_buf_free(&d);
  /* amc_lz_decompress_to: the same refusals */
  char out[16];
  assert_int_equal(amc_lz_decompress_to(NULL, 0,
                                        "\x04"
                                        "ab",
                                        3, out, 5),
                   -1);
  assert_int_equal(amc_lz_decompress_to(NULL, 0, "\x80\x01", 2, out, 4), -1);
  assert_int_equal(amc_lz_decompress_to("abcd", 4, "\x80\x00", 2, out, 4), -1);
  assert_int_equal(amc_lz_decompress_to("abcd", 4, "\x80\x84", 2, out, 4), -1);
  /* a match that starts in the dictionary and runs on into the output:
   * "cd" then "cdcd" again from 2 back in dictionary || output */
  assert_int_equal(amc_lz_decompress_to("abcd", 4, "\x80\x02", 2, out, 4), 0);
  assert_memory_equal(out, "cdcd", 4);
  /* a match that runs past the known length */
  assert_int_equal(amc_lz_decompress_to("abcd", 4, "\x80\x04", 2, out, 3), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrips),
      cmocka_unit_test(test_dictionary),
      cmocka_unit_test(test_short_tokens),
      cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
