/* test_hash.c - util/hash.h: FNV-1a 64 (its values are stored on AVI
 * objects as amc-cksum markers, so they are pinned here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "util/hash.h"

/* The published FNV-1a 64 test vectors. */
static void test_known_values(void **state) {
  (void)state;
  assert_true(amc_fnv64("", 0) == 0xcbf29ce484222325ULL);
  assert_true(amc_fnv64("a", 1) == 0xaf63dc4c8601ec8cULL);
  assert_true(amc_fnv64("foobar", 6) == 0x85944171f73967e8ULL);
  assert_true(amc_fnv64_str("foobar") == 0x85944171f73967e8ULL);
  assert_true(amc_fnv64_str("") == AMC_FNV64_INIT);
}

/* One byte at a time, as the definition says. */
static uint64_t reference(const unsigned char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

/* Every length around the eight-byte steps, every split point: the
 * unrolled loop, pieces and NUL-terminated strings agree with it. */
static void test_lengths_and_pieces(void **state) {
  (void)state;
  unsigned char b[40];
  char s[41];
  for (size_t i = 0; i < sizeof b; i++) {
    b[i] = (unsigned char)(i * 37 + 200); /* high bytes too */
    s[i] = (char)(i % 90 + 33);
  }
  for (size_t n = 0; n <= sizeof b; n++) {
    uint64_t want = reference(b, n);
    assert_true(amc_fnv64(b, n) == want);
    for (size_t k = 0; k <= n; k++)
      assert_true(amc_fnv64_update(amc_fnv64(b, k), b + k, n - k) == want);
    char t[41];
    memcpy(t, s, n);
    t[n] = '\0';
    assert_true(amc_fnv64_str(t) == reference((const unsigned char *)t, n));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_values),
      cmocka_unit_test(test_lengths_and_pieces),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
