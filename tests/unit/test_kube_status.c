/* test_kube_status.c - status bodies, transition times and the change
 * fingerprint; discovery and the Secret filter of the source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kjson.h"
#include "kube/kube_source.h"
#include "kube/status.h"

typedef struct {
  amc_buf_t body, next, fp;
} out_t;

static void build(const amc_kube_status_t *st, const char *prev,
                  const char *now, out_t *o) {
  memset(o, 0, sizeof *o);
  amc_kube_status_body(st, prev, now, &o->body, &o->next, &o->fp);
}

static void out_free(out_t *o) {
  amc_buf_free(&o->body);
  amc_buf_free(&o->next);
  amc_buf_free(&o->fp);
}

static void test_ok_body(void **state) {
  (void)state;
  amc_kube_status_t st = {
      .accepted = 1, .programmed = 1, .observed_generation = 3};
  out_t o;
  build(&st, NULL, "T1", &o);
  assert_string_equal(
      o.body.data,
      "{\"status\":{\"conditions\":[{\"lastTransitionTime\":\"T1\","
      "\"message\":\"\",\"observedGeneration\":3,\"reason\":\"Accepted\","
      "\"status\":\"True\",\"type\":\"Accepted\"},{\"lastTransitionTime\":"
      "\"T1\",\"message\":\"\",\"observedGeneration\":3,\"reason\":"
      "\"Programmed\",\"status\":\"True\",\"type\":\"Programmed\"}],"
      "\"observedGeneration\":3,\"validationMessages\":[]}}");
  assert_string_equal(o.next.data, "Accepted=True@T1;Programmed=True@T1");
  amc_kjson_t v;
  assert_int_equal(amc_kjson_parse(o.body.data, o.body.len, &v), 0);
  out_free(&o);
}

static void test_transition_time_kept_until_flip(void **state) {
  (void)state;
  amc_kube_status_t ok = {.accepted = 1, .programmed = 1};
  out_t a, b, c;
  build(&ok, NULL, "T1", &a);
  /* Same statuses later: times kept, fingerprint equal (no write). */
  build(&ok, a.next.data, "T2", &b);
  assert_string_equal(b.next.data, a.next.data);
  assert_string_equal(b.fp.data, a.fp.data);
  assert_null(strstr(b.body.data, "T2"));
  /* Programmed flips: only its time changes; the fingerprint differs. */
  amc_kube_status_t bad = {.accepted = 1,
                           .programmed = 0,
                           .programmed_message = "AVI: pool p1: 400 bad"};
  build(&bad, b.next.data, "T3", &c);
  assert_string_equal(c.next.data, "Accepted=True@T1;Programmed=False@T3");
  assert_string_not_equal(c.fp.data, b.fp.data);
  assert_non_null(strstr(c.body.data, "\"reason\":\"ProgrammingFailed\""));
  assert_non_null(strstr(c.body.data, "AVI: pool p1: 400 bad"));
  out_free(&a);
  out_free(&b);
  out_free(&c);
}

static void test_errors_and_warnings(void **state) {
  (void)state;
  const char *warn[] = {"fault injection is not supported", "CORS \"x\"", NULL};
  amc_kube_status_t st = {.accepted = 0,
                          .accepted_message = "rule error: line 3",
                          .programmed = 0,
                          .warnings = warn};
  out_t o, o2;
  build(&st, NULL, "T", &o);
  assert_non_null(strstr(o.body.data, "\"reason\":\"Invalid\""));
  assert_non_null(strstr(o.body.data, "\"reason\":\"Pending\""));
  assert_non_null(strstr(o.body.data, "\"description\":\"CORS \\\"x\\\"\""));
  assert_non_null(strstr(o.body.data, "\"level\":\"WARNING\""));
  /* A different warning is a change. */
  const char *warn2[] = {"fault injection is not supported", NULL};
  st.warnings = warn2;
  build(&st, o.next.data, "T", &o2);
  assert_string_not_equal(o.fp.data, o2.fp.data);
  out_free(&o);
  out_free(&o2);
}

static void test_discovery(void **state) {
  (void)state;
  const char *all =
      "{\"kind\":\"APIGroupList\",\"groups\":[{\"name\":\"discovery.k8s.io\","
      "\"versions\":[{\"groupVersion\":\"discovery.k8s.io/v1\",\"version\":"
      "\"v1\"}]},{\"name\":\"networking.istio.io\",\"versions\":["
      "{\"groupVersion\":\"networking.istio.io/v1alpha3\",\"version\":"
      "\"v1alpha3\"},{\"groupVersion\":\"networking.istio.io/v1\","
      "\"version\":\"v1\"},{\"groupVersion\":\"networking.istio.io/v1beta1\","
      "\"version\":\"v1beta1\"}]}]}";
  int slices = 0;
  assert_string_equal(amc_kube_discover(all, strlen(all), &slices), "v1");
  assert_int_equal(slices, 1);
  const char *old = "{\"groups\":[{\"name\":\"networking.istio.io\","
                    "\"versions\":[{\"version\":\"v1alpha3\"},{\"version\":"
                    "\"v1beta1\"}]}]}";
  assert_string_equal(amc_kube_discover(old, strlen(old), &slices), "v1beta1");
  assert_int_equal(slices, 0);
  const char *none = "{\"groups\":[]}";
  assert_null(amc_kube_discover(none, strlen(none), &slices));
  assert_null(amc_kube_discover("nope", 4, &slices));
}

static int is_tls(const char *json) {
  amc_kjson_t v;
  assert_int_equal(amc_kjson_parse(json, strlen(json), &v), 0);
  return amc_kube_secret_is_tls(v);
}

static void test_secret_filter(void **state) {
  (void)state;
  assert_true(is_tls("{\"type\":\"kubernetes.io/tls\",\"data\":{}}"));
  assert_true(is_tls("{\"type\":\"Opaque\",\"data\":{\"cert\":\"\","
                     "\"key\":\"\"}}"));
  assert_true(is_tls("{\"data\":{\"tls.crt\":\"\",\"tls.key\":\"\"}}"));
  assert_false(is_tls("{\"type\":\"Opaque\",\"data\":{\"cert\":\"\"}}"));
  assert_false(is_tls("{\"type\":\"kubernetes.io/service-account-token\"}"));
  unsigned bits;
  assert_int_equal(amc_kube_resources_parse("gateways,secrets", &bits), 0);
  assert_int_equal(bits, AMC_KUBE_GATEWAYS | AMC_KUBE_SECRETS);
  assert_int_equal(amc_kube_resources_parse("gateways,bogus", &bits), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ok_body),
      cmocka_unit_test(test_transition_time_kept_until_flip),
      cmocka_unit_test(test_errors_and_warnings),
      cmocka_unit_test(test_discovery),
      cmocka_unit_test(test_secret_filter),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
