/* test_translation.c - amc_object_cksum, amc_object_cksum64 and
 * amc_object_cksum_hex (the values are stored on AVI objects, so they are
 * pinned here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "translation.h"

/* Published 64-bit FNV-1a test vectors. */
static void test_cksum_known_values(void **state) {
  (void)state;
  char out[17];
  amc_object_cksum("", 0, out);
  assert_string_equal(out, "cbf29ce484222325");
  amc_object_cksum("a", 1, out);
  assert_string_equal(out, "af63dc4c8601ec8c");
  amc_object_cksum("foobar", 6, out);
  assert_string_equal(out, "85944171f73967e8");
  assert_true(amc_object_cksum64("foobar", 6) == 0x85944171f73967e8ull);
  amc_object_cksum_hex(0xaf63dc4c8601ec8cull, out);
  assert_string_equal(out, "af63dc4c8601ec8c");
  const char *obj = "{\"name\":\"vs-1\",\"tenant_ref\":\"/api/tenant/admin\"}";
  amc_object_cksum(obj, strlen(obj), out);
  assert_int_equal(strlen(out), 16);
}

/* The byte-at-a-time definition, for every length around the 8-byte
 * unrolling and bytes >= 0x80. */
static void test_cksum_matches_bytewise(void **state) {
  (void)state;
  unsigned char buf[100];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (unsigned char)(i * 37 + 11);
  for (size_t len = 0; len <= sizeof buf; len++) {
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
      h ^= buf[i];
      h *= 1099511628211ull;
    }
    char want[17], got[17];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)h);
    amc_object_cksum((const char *)buf, len, got);
    assert_string_equal(got, want);
    /* The number and its printing give the same. */
    assert_true(amc_object_cksum64((const char *)buf, len) == h);
    amc_object_cksum_hex(h, got);
    assert_string_equal(got, want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cksum_known_values),
      cmocka_unit_test(test_cksum_matches_bytewise),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
