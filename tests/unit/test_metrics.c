/* test_metrics.c - registry and Prometheus text exposition (exact bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static void test_counter_gauge_exposition(void **state) {
  (void)state;
  amc_metrics_t *reg = amc_metrics_new();
  amc_metric_t *req =
      amc_metrics_counter(reg, "amc_avi_requests_total", "AVI REST requests.",
                          (const char *[]){"method", "type", "code", NULL});
  amc_metric_t *gen =
      amc_metrics_gauge(reg, "amc_rules_generation", "Active rules.", NULL);
  assert_non_null(req);
  assert_null(amc_metrics_gauge(reg, "amc_rules_generation", "dup", NULL));
  amc_metric_inc(req, (const char *[]){"PUT", "pool", "200"});
  amc_metric_inc(req, (const char *[]){"PUT", "pool", "200"});
  amc_metric_inc(req, (const char *[]){"GET", "pool", "200"});
  amc_metric_add(req, (const char *[]){"GET", "pool", "200"}, -5); /* ignored */
  amc_metric_set(gen, NULL, 3);
  amc_metric_set(gen, NULL, 4);
  assert_true(amc_metric_value(req, (const char *[]){"PUT", "pool", "200"}) ==
              2);
  amc_buf_t b = AMC_BUF_INIT;
  amc_metrics_render(reg, &b);
  assert_string_equal(
      b.data,
      "# HELP amc_avi_requests_total AVI REST requests.\n"
      "# TYPE amc_avi_requests_total counter\n"
      "amc_avi_requests_total{method=\"GET\",type=\"pool\",code=\"200\"} 1\n"
      "amc_avi_requests_total{method=\"PUT\",type=\"pool\",code=\"200\"} 2\n"
      "# HELP amc_rules_generation Active rules.\n"
      "# TYPE amc_rules_generation gauge\n"
      "amc_rules_generation 4\n");
  amc_buf_free(&b);
  amc_metrics_free(reg);
}

static void test_escaping_and_numbers(void **state) {
  (void)state;
  amc_metrics_t *reg = amc_metrics_new();
  amc_metric_t *g = amc_metrics_gauge(reg, "g", "Help with \\ and\nnewline.",
                                      (const char *[]){"v", NULL});
  amc_metric_set(g, (const char *[]){"a\"b\\c\nd"}, 0.25);
  amc_metric_set(g, (const char *[]){"inf"}, INFINITY);
  amc_metric_set(g, (const char *[]){"neg"}, -3);
  amc_metric_set(g, (const char *[]){"third"}, 1.0 / 3);
  amc_buf_t b = AMC_BUF_INIT;
  amc_metrics_render(reg, &b);
  assert_string_equal(b.data, "# HELP g Help with \\\\ and\\nnewline.\n"
                              "# TYPE g gauge\n"
                              "g{v=\"a\\\"b\\\\c\\nd\"} 0.25\n"
                              "g{v=\"inf\"} +Inf\n"
                              "g{v=\"neg\"} -3\n"
                              "g{v=\"third\"} 0.3333333333333333\n");
  amc_buf_free(&b);
  /* reset drops series */
  amc_metric_reset(g);
  amc_metrics_render(reg, &b);
  assert_string_equal(b.data, "# HELP g Help with \\\\ and\\nnewline.\n"
                              "# TYPE g gauge\n");
  amc_buf_free(&b);
  amc_metrics_free(reg);
}

static void test_histogram(void **state) {
  (void)state;
  amc_metrics_t *reg = amc_metrics_new();
  const double bounds[] = {0.001, 0.01, 0.1};
  amc_metric_t *h = amc_metrics_histogram(
      reg, "amc_reconcile_duration_seconds", "Reconcile time.",
      (const char *[]){"result", NULL}, bounds, 3);
  amc_metric_observe(h, (const char *[]){"ok"}, 0.0005);
  amc_metric_observe(h, (const char *[]){"ok"}, 0.001); /* le is inclusive */
  amc_metric_observe(h, (const char *[]){"ok"}, 0.05);
  amc_metric_observe(h, (const char *[]){"ok"}, 2);
  assert_true(amc_metric_value(h, (const char *[]){"ok"}) == 4);
  amc_buf_t b = AMC_BUF_INIT;
  amc_metrics_render(reg, &b);
  assert_string_equal(
      b.data,
      "# HELP amc_reconcile_duration_seconds Reconcile time.\n"
      "# TYPE amc_reconcile_duration_seconds histogram\n"
      "amc_reconcile_duration_seconds_bucket{result=\"ok\",le=\"0.001\"} 2\n"
      "amc_reconcile_duration_seconds_bucket{result=\"ok\",le=\"0.01\"} 2\n"
      "amc_reconcile_duration_seconds_bucket{result=\"ok\",le=\"0.1\"} 3\n"
      "amc_reconcile_duration_seconds_bucket{result=\"ok\",le=\"+Inf\"} 4\n"
      "amc_reconcile_duration_seconds_sum{result=\"ok\"} 2.0515\n"
      "amc_reconcile_duration_seconds_count{result=\"ok\"} 4\n");
  amc_buf_free(&b);
  amc_metrics_free(reg);
}

static void collect(amc_metrics_t *reg, void *data) {
  (void)reg;
  amc_metric_set(data, NULL, 42);
}

static void test_collect_hook(void **state) {
  (void)state;
  amc_metrics_t *reg = amc_metrics_new();
  amc_metric_t *g = amc_metrics_gauge(reg, "amc_queue_depth", "Keys.", NULL);
  amc_metrics_set_collect(reg, collect, g);
  amc_buf_t b = AMC_BUF_INIT;
  amc_metrics_render(reg, &b);
  assert_non_null(strstr(b.data, "\namc_queue_depth 42\n"));
  amc_buf_free(&b);
  amc_metrics_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counter_gauge_exposition),
      cmocka_unit_test(test_escaping_and_numbers),
      cmocka_unit_test(test_histogram),
      cmocka_unit_test(test_collect_hook),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
