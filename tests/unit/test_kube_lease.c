/* test_kube_lease.c - the leader-election decision logic with an injected
 * clock, and the Lease bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "kube/lease.h"

static amc_lease_record_t rec(const char *holder, long long dur,
                              const char *renew, long long transitions) {
  amc_lease_record_t r = {0};
  r.holder = (char *)holder;
  r.duration_s = dur;
  r.renew_time = (char *)renew;
  r.transitions = transitions;
  r.rv = "1";
  return r;
}

static void test_expiry_from_local_observation(void **state) {
  (void)state;
  amc_lease_observed_t obs = {0};
  /* The remote renewTime is far in the past (clock skew, or a stale
   * record): only local observation time counts. */
  amc_lease_record_t r = rec("other", 15, "2000-01-01T00:00:00.000000Z", 0);
  assert_int_equal(amc_lease_decide(&obs, &r, "me", 1000), AMC_LEASE_WAIT);
  assert_int_equal(obs.observed_ms, 1000);
  assert_int_equal(amc_lease_decide(&obs, &r, "me", 15999), AMC_LEASE_WAIT);
  assert_int_equal(amc_lease_decide(&obs, &r, "me", 16000), AMC_LEASE_TAKE);
  /* The holder renews: the record changes, the clock restarts. */
  amc_lease_record_t r2 = rec("other", 15, "2000-01-01T00:00:02.000000Z", 0);
  assert_int_equal(amc_lease_decide(&obs, &r2, "me", 17000), AMC_LEASE_WAIT);
  assert_int_equal(obs.observed_ms, 17000);
  assert_int_equal(amc_lease_decide(&obs, &r2, "me", 31999), AMC_LEASE_WAIT);
  assert_int_equal(amc_lease_decide(&obs, &r2, "me", 32000), AMC_LEASE_TAKE);
  /* The record's own duration is used. */
  amc_lease_record_t r3 = rec("other", 2, "x", 1);
  assert_int_equal(amc_lease_decide(&obs, &r3, "me", 40000), AMC_LEASE_WAIT);
  assert_int_equal(amc_lease_decide(&obs, &r3, "me", 42000), AMC_LEASE_TAKE);
  free(obs.fingerprint);
}

static void test_released_and_own(void **state) {
  (void)state;
  amc_lease_observed_t obs = {0};
  amc_lease_record_t released = rec("", 1, "x", 3);
  assert_int_equal(amc_lease_decide(&obs, &released, "me", 5), AMC_LEASE_TAKE);
  amc_lease_record_t mine = rec("me", 15, "y", 3);
  assert_int_equal(amc_lease_decide(&obs, &mine, "me", 6), AMC_LEASE_RENEW);
  free(obs.fingerprint);
}

static void test_parse_and_body(void **state) {
  (void)state;
  const char *json =
      "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
      "\"metadata\":{\"name\":\"amc\",\"namespace\":\"amc-system\","
      "\"resourceVersion\":\"77\"},\"spec\":{\"holderIdentity\":\"pod-a\","
      "\"leaseDurationSeconds\":15,\"acquireTime\":"
      "\"2026-01-02T15:04:05.000000Z\",\"renewTime\":"
      "\"2026-01-02T15:04:07.000000Z\",\"leaseTransitions\":4}}";
  amc_lease_record_t r;
  assert_int_equal(amc_lease_record_parse(json, strlen(json), &r), 0);
  assert_string_equal(r.holder, "pod-a");
  assert_string_equal(r.rv, "77");
  assert_int_equal(r.duration_s, 15);
  assert_int_equal(r.transitions, 4);
  assert_string_equal(r.acquire_time, "2026-01-02T15:04:05.000000Z");
  amc_lease_record_free(&r);
  /* No spec (a fresh object): holder "". */
  const char *bare = "{\"metadata\":{\"resourceVersion\":\"1\"}}";
  assert_int_equal(amc_lease_record_parse(bare, strlen(bare), &r), 0);
  assert_string_equal(r.holder, "");
  amc_lease_record_free(&r);
  assert_int_equal(amc_lease_record_parse("{}", 2, &r), -1);
  amc_lease_record_free(&r);

  amc_buf_t b = AMC_BUF_INIT;
  amc_lease_body(&b, "ns", "amc", "77", "pod-b", 15, "A", "R", 5);
  assert_string_equal(
      b.data, "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
              "\"metadata\":{\"name\":\"amc\",\"namespace\":\"ns\","
              "\"resourceVersion\":\"77\"},\"spec\":{\"holderIdentity\":"
              "\"pod-b\",\"leaseDurationSeconds\":15,\"acquireTime\":\"A\","
              "\"renewTime\":\"R\",\"leaseTransitions\":5}}");
  amc_buf_free(&b);
  char t[40];
  amc_lease_microtime(t, sizeof t);
  assert_int_equal(strlen(t), 27); /* 2026-01-02T15:04:05.000000Z */
  assert_int_equal(t[19], '.');
  assert_int_equal(t[26], 'Z');
}

static void test_option_constraints(void **state) {
  (void)state;
  char err[256];
  amc_lease_opts_t o = {.namespace_ = "ns",
                        .name = "amc",
                        .lease_duration_ms = 10000,
                        .renew_deadline_ms = 10000,
                        .retry_period_ms = 2000};
  assert_null(amc_lease_new(NULL, NULL, &o, err, sizeof err));
  assert_non_null(strstr(err, "lease-duration"));
  o.lease_duration_ms = 15000;
  o.renew_deadline_ms = 2000;
  assert_null(amc_lease_new(NULL, NULL, &o, err, sizeof err)); /* 2 < 2.4 */
  o.name = NULL;
  assert_null(amc_lease_new(NULL, NULL, &o, err, sizeof err));
  assert_non_null(strstr(err, "name"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_expiry_from_local_observation),
      cmocka_unit_test(test_released_and_own),
      cmocka_unit_test(test_parse_and_body),
      cmocka_unit_test(test_option_constraints),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
