/* test_strmap.c - amc_strmap_t (util/strmap.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strmap.h"

static void test_put_get_del(void **state) {
  (void)state;
  amc_strmap_t m = AMC_STRMAP_INIT;
  int a = 1, b = 2;
  void *old = &a;
  assert_null(amc_strmap_get(&m, "x"));
  assert_null(amc_strmap_del(&m, "x"));
  amc_strmap_entry_t *e = amc_strmap_put(&m, "x", &a, &old);
  assert_null(old);
  assert_string_equal(e->key, "x");
  assert_ptr_equal(amc_strmap_get(&m, "x"), &a);
  assert_ptr_equal(amc_strmap_find(&m, "x"), e);
  amc_strmap_put(&m, "x", &b, &old);
  assert_ptr_equal(old, &a);
  assert_int_equal(m.count, 1);
  assert_ptr_equal(amc_strmap_del(&m, "x"), &b);
  assert_null(amc_strmap_get(&m, "x"));
  assert_int_equal(m.count, 0);
  amc_strmap_clear(&m, NULL);
}

static int count_visit(const char *key, void *value, void *data) {
  (void)key;
  (void)value;
  (*(size_t *)data)++;
  return 0;
}

/* Deletes every odd-numbered entry while visiting. */
static int drop_odd(const char *key, void *value, void *data) {
  (void)value;
  (void)data;
  return atoi(strrchr(key, '-') + 1) % 2;
}

/* The string-valued use the reflectors and the status writer make of it:
 * many keys (several doublings), replace, delete, visit, clear. */
static void test_string_values(void **state) {
  (void)state;
  amc_strmap_t m = AMC_STRMAP_INIT;
  char k[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(k, sizeof k, "ns/obj-%d", i);
    amc_strmap_set_str(&m, k, "1");
  }
  amc_strmap_set_str(&m, "ns/obj-7", "2");
  amc_strmap_set_str(&m, "ns/obj-8", "");
  assert_int_equal(m.count, 1000);
  assert_string_equal(amc_strmap_get(&m, "ns/obj-7"), "2");
  assert_string_equal(amc_strmap_get(&m, "ns/obj-8"), "");
  assert_string_equal(amc_strmap_get(&m, "ns/obj-999"), "1");
  char *v = amc_strmap_del(&m, "ns/obj-7");
  assert_string_equal(v, "2");
  free(v);
  assert_null(amc_strmap_del(&m, "ns/obj-7"));
  assert_null(amc_strmap_get(&m, "ns/obj-7"));
  size_t n = 0;
  amc_strmap_foreach(&m, count_visit, &n);
  assert_int_equal(n, 999);
  amc_strmap_clear(&m, free);
  assert_null(amc_strmap_get(&m, "ns/obj-1"));
  assert_int_equal(m.count, 0);
  /* Reusable after clear. */
  amc_strmap_set_str(&m, "a", "b");
  assert_string_equal(amc_strmap_get(&m, "a"), "b");
  amc_strmap_clear(&m, free);
}

static int free_if_odd(const char *key, void *value, void *data) {
  int odd = drop_odd(key, value, data);
  if (odd)
    free(value);
  return odd;
}

static void test_foreach_delete_visited(void **state) {
  (void)state;
  amc_strmap_t m = AMC_STRMAP_INIT;
  char k[32];
  for (int i = 0; i < 100; i++) {
    snprintf(k, sizeof k, "k-%d", i);
    amc_strmap_set_str(&m, k, k);
  }
  amc_strmap_foreach(&m, free_if_odd, NULL);
  assert_int_equal(m.count, 50);
  assert_null(amc_strmap_get(&m, "k-3"));
  assert_string_equal(amc_strmap_get(&m, "k-4"), "k-4");
  amc_strmap_clear(&m, free);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_get_del),
      cmocka_unit_test(test_string_values),
      cmocka_unit_test(test_foreach_delete_visited),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
