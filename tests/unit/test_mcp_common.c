/* test_mcp_common.c - reconnect backoff and resource conversion to
 * canonical JSON for the MCP sinks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/mcp_common.h"
#include "mcp/mcp_sink.h"
#include "mcp/v1alpha1/resource.pb-c.h"
#include "networking/v1alpha3/service_entry.pb-c.h"

static void test_backoff_doubles_with_jitter_and_resets(void **state) {
  amc_mcp_backoff_t b;
  amc_mcp_backoff_init(&b, 100, 1000);
  uint64_t caps[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (int round = 0; round < 50; round++) {
    amc_mcp_backoff_reset(&b);
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
      uint64_t d = amc_mcp_backoff_next(&b);
      assert_true(d >= caps[i] / 2 && d <= caps[i]);
    }
  }
  /* jitter: not every draw is the same */
  int distinct = 0;
  uint64_t first = 0;
  for (int i = 0; i < 20; i++) {
    amc_mcp_backoff_reset(&b);
    uint64_t d = amc_mcp_backoff_next(&b);
    if (i == 0)
      first = d;
    else if (d != first)
      distinct = 1;
  }
  assert_true(distinct);
  amc_mcp_backoff_init(&b, 0, 0); /* defaults */
  assert_int_equal(b.initial, 500);
  assert_int_equal(b.max, 30000);
}

static void test_conv_resource_to_canonical_json(void **state) {
  amc_mcp_conv_t c;
  assert_int_equal(amc_mcp_conv_init(&c), 0);
  Istio__Networking__V1alpha3__ServiceEntry se =
      ISTIO__NETWORKING__V1ALPHA3__SERVICE_ENTRY__INIT;
  char *hosts[] = {"api.example.org"};
  se.n_hosts = 1;
  se.hosts = hosts;
  se.resolution = ISTIO__NETWORKING__V1ALPHA3__SERVICE_ENTRY__RESOLUTION__DNS;
  uint8_t body[128], buf[512];
  Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
  any.type_url = "type.googleapis.com/istio.networking.v1alpha3.ServiceEntry";
  any.value.data = body;
  any.value.len = istio__networking__v1alpha3__service_entry__pack(&se, body);
  Istio__Mcp__V1alpha1__Metadata md = ISTIO__MCP__V1ALPHA1__METADATA__INIT;
  md.name = "ext/api";
  Istio__Mcp__V1alpha1__Resource r = ISTIO__MCP__V1ALPHA1__RESOURCE__INIT;
  r.metadata = &md;
  r.body = &any;
  size_t n = istio__mcp__v1alpha1__resource__pack(&r, buf);
  amc_mcp_item_t it;
  char err[256];
  assert_int_equal(
      amc_mcp_conv_resource(&c, buf, n, NULL, 0, &it, err, sizeof err), 0);
  assert_string_equal(it.ns, "ext");
  assert_string_equal(it.name, "api");
  assert_string_equal(it.kind->kind, "ServiceEntry");
  assert_string_equal(
      it.json, "{\"apiVersion\":\"networking.istio.io/v1\","
               "\"kind\":\"ServiceEntry\",\"metadata\":{\"name\":\"api\","
               "\"namespace\":\"ext\"},\"spec\":{\"hosts\":"
               "[\"api.example.org\"],\"resolution\":\"DNS\"}}");
  assert_int_equal(it.json_len, strlen(it.json));
  amc_mcp_item_clear(&it);
  assert_int_equal(lua_gettop(c.L), 0);
  amc_mcp_conv_free(&c);
}

static void test_parse_url(void **state) {
  struct {
    const char *in;
    amc_mcp_mode_t mode;
    const char *out;
  } ok[] = {
      {"mcp://istio-galley.istio-system.svc:9901", AMC_MCP_LEGACY,
       "http://istio-galley.istio-system.svc:9901"},
      {"mcps://g:9901", AMC_MCP_LEGACY, "https://g:9901"},
      {"xds://istiod.istio-system.svc:15010", AMC_MCP_XDS,
       "http://istiod.istio-system.svc:15010"},
      {"xdss://istiod.istio-system.svc:15012", AMC_MCP_XDS,
       "https://istiod.istio-system.svc:15012"},
      {"https://[::1]:15012", AMC_MCP_XDS, "https://[::1]:15012"},
      {"grpc://h:1", AMC_MCP_XDS, "http://h:1"},
  };
  char url[256], err[256];
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    amc_mcp_mode_t m = 99;
    assert_int_equal(amc_mcp_parse_url(ok[i].in, AMC_MCP_XDS, &m, url,
                                       sizeof url, err, sizeof err),
                     0);
    assert_int_equal(m, ok[i].mode);
    assert_string_equal(url, ok[i].out);
  }
  amc_mcp_mode_t m;
  assert_int_equal(amc_mcp_parse_url("tcp://h:1", AMC_MCP_XDS, &m, url,
                                     sizeof url, err, sizeof err),
                   -1);
  assert_non_null(strstr(err, "'tcp://h:1'"));
}

static void test_options_from_env(void **state) {
  amc_mcp_options_t o;
  amc_mcp_mode_t m;
  amc_mcp_env_buf_t b;
  char err[256];
  unsetenv("ISTIO_ENABLED");
  assert_int_equal(amc_mcp_options_from_env(&o, &m, &b, err, sizeof err), 0);
  setenv("ISTIO_ENABLED", "True", 1);
  unsetenv("MCP_URL");
  assert_int_equal(amc_mcp_options_from_env(&o, &m, &b, err, sizeof err), -1);
  assert_string_equal(err, "ISTIO_ENABLED is set but MCP_URL is empty");
  setenv("MCP_URL", "xdss://istiod.istio-system.svc:15012", 1);
  setenv("MCP_CA_FILE", "/etc/ca.pem", 1);
  setenv("MCP_TOKEN_FILE", "/etc/tok", 1);
  setenv("POD_NAMESPACE", "istio-system", 1);
  assert_int_equal(amc_mcp_options_from_env(&o, &m, &b, err, sizeof err), 1);
  assert_int_equal(m, AMC_MCP_XDS);
  assert_string_equal(o.url, "https://istiod.istio-system.svc:15012");
  assert_string_equal(o.ca_file, "/etc/ca.pem");
  assert_string_equal(o.token_file, "/etc/tok");
  assert_string_equal(o.node_namespace, "istio-system");
  setenv("MCP_URL", "http://galley:9901", 1);
  setenv("MCP_PROTOCOL", "bogus", 1);
  assert_int_equal(amc_mcp_options_from_env(&o, &m, &b, err, sizeof err), -1);
  setenv("MCP_PROTOCOL", "legacy", 1);
  assert_int_equal(amc_mcp_options_from_env(&o, &m, &b, err, sizeof err), 1);
  assert_int_equal(m, AMC_MCP_LEGACY);
  assert_int_equal(o.delta, 0);
  /* MCP_DELTA: xDS only, a clear error otherwise. */
  setenv("MCP_DELTA", "true", 1);
  assert_int_equal(amc_mcp_options_from_env(&o, &m, &b, err, sizeof err), -1);
  assert_non_null(strstr(err, "MCP_DELTA=true needs MCP over xDS"));
  setenv("MCP_URL", "xds://istiod:15010", 1);
  assert_int_equal(amc_mcp_options_from_env(&o, &m, &b, err, sizeof err), 1);
  assert_int_equal(m, AMC_MCP_XDS);
  assert_int_equal(o.delta, 1);
  setenv("MCP_DELTA", "false", 1);
  assert_int_equal(amc_mcp_options_from_env(&o, &m, &b, err, sizeof err), 1);
  assert_int_equal(o.delta, 0);
  setenv("MCP_DELTA", "yes please", 1);
  assert_int_equal(amc_mcp_options_from_env(&o, &m, &b, err, sizeof err), -1);
  assert_string_equal(err, "MCP_DELTA 'yes please': expected true or false");
  unsetenv("MCP_DELTA");
  unsetenv("MCP_PROTOCOL");
  unsetenv("ISTIO_ENABLED");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backoff_doubles_with_jitter_and_resets),
      cmocka_unit_test(test_conv_resource_to_canonical_json),
      cmocka_unit_test(test_parse_url),
      cmocka_unit_test(test_options_from_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
