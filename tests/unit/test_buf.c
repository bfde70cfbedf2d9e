/* test_buf.c - amc_buf_t. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

static void test_append_and_printf(void **state) {
  (void)state;
  amc_buf_t b = AMC_BUF_INIT;
  amc_buf_puts(&b, "hello");
  amc_buf_putc(&b, ' ');
  amc_buf_printf(&b, "%d-%s", 42, "x");
  assert_string_equal(b.data, "hello 42-x");
  assert_int_equal(b.len, 10);
  amc_buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  for (int i = 0; i < 10000; i++)
    amc_buf_putc(&b, 'a');
  assert_int_equal(b.len, 10000);
  char *s = amc_buf_steal(&b);
  assert_null(b.data);
  assert_int_equal(strlen(s), 10000);
  free(s);
}

static void test_read_missing_file(void **state) {
  (void)state;
  amc_buf_t b = AMC_BUF_INIT;
  assert_true(amc_buf_read_file(&b, "/nonexistent/amc") < 0);
  amc_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_append_and_printf),
      cmocka_unit_test(test_read_missing_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
