/* test_pb_lua.c - protobuf -> Lua conversion: the result, encoded as
 * canonical JSON, must be exactly what the Kubernetes JSON of the same
 * object gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/config/core/v3/base.pb-c.h"
#include "json.h"
#include "mcp/pb_lua.h"
#include "mcp/v1alpha1/resource.pb-c.h"
#include "networking/v1alpha3/destination_rule.pb-c.h"
#include "networking/v1alpha3/gateway.pb-c.h"
#include "networking/v1alpha3/virtual_service.pb-c.h"

static lua_State *L;

static int setup(void **state) {
  L = luaL_newstate();
  return 0;
}

static int teardown(void **state) {
  lua_close(L);
  return 0;
}

/* Converts `m` and returns its canonical JSON (caller frees). */
static char *convert(const ProtobufCMessage *m, const amc_pb_lua_opts_t *o) {
  char err[256] = "";
  int rc = amc_pb_lua_push(L, m, "spec", o, err, sizeof err);
  if (rc)
    fail_msg("conversion failed: %s", err);
  amc_buf_t b = AMC_BUF_INIT;
  assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
  lua_pop(L, 1);
  return amc_buf_steal(&b);
}

static void test_virtual_service_shape(void **state) {
  Istio__Networking__V1alpha3__StringMatch prefix =
      ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__INIT;
  prefix.match_type_case =
      ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_PREFIX;
  prefix.prefix = "/api";
  Istio__Networking__V1alpha3__StringMatch exact =
      ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__INIT;
  exact.match_type_case =
      ISTIO__NETWORKING__V1ALPHA3__STRING_MATCH__MATCH_TYPE_EXACT;
  exact.exact = ""; /* a oneof member appears even when empty */
  Istio__Networking__V1alpha3__HTTPMatchRequest__HeadersEntry he =
      ISTIO__NETWORKING__V1ALPHA3__HTTPMATCH_REQUEST__HEADERS_ENTRY__INIT;
  he.key = "x-user";
  he.value = &exact;
  Istio__Networking__V1alpha3__HTTPMatchRequest__HeadersEntry *hes[] = {&he};
  Istio__Networking__V1alpha3__HTTPMatchRequest match =
      ISTIO__NETWORKING__V1ALPHA3__HTTPMATCH_REQUEST__INIT;
  match.uri = &prefix;
  match.n_headers = 1;
  match.headers = hes;
  Istio__Networking__V1alpha3__HTTPMatchRequest *matches[] = {&match};

  Istio__Networking__V1alpha3__PortSelector port =
      ISTIO__NETWORKING__V1ALPHA3__PORT_SELECTOR__INIT;
  port.number = 9080;
  Istio__Networking__V1alpha3__Destination dest =
      ISTIO__NETWORKING__V1ALPHA3__DESTINATION__INIT;
  dest.host = "reviews";
  dest.port = &port;
  Istio__Networking__V1alpha3__HTTPRouteDestination rd =
      ISTIO__NETWORKING__V1ALPHA3__HTTPROUTE_DESTINATION__INIT;
  rd.destination = &dest;
  rd.weight = 100;
  Istio__Networking__V1alpha3__HTTPRouteDestination *rds[] = {&rd};

  Google__Protobuf__Duration timeout = GOOGLE__PROTOBUF__DURATION__INIT;
  timeout.seconds = 1;
  timeout.nanos = 500000000;
  Google__Protobuf__Duration per_try = GOOGLE__PROTOBUF__DURATION__INIT;
  per_try.seconds = 2;
  Google__Protobuf__BoolValue yes = GOOGLE__PROTOBUF__BOOL_VALUE__INIT;
  yes.value = 1;
  Istio__Networking__V1alpha3__HTTPRetry retry =
      ISTIO__NETWORKING__V1ALPHA3__HTTPRETRY__INIT;
  retry.attempts = 3;
  retry.per_try_timeout = &per_try;
  retry.retry_remote_localities = &yes;
  Istio__Networking__V1alpha3__Percent pct =
      ISTIO__NETWORKING__V1ALPHA3__PERCENT__INIT;
  pct.value = 12.5;

  Istio__Networking__V1alpha3__HTTPRoute route =
      ISTIO__NETWORKING__V1ALPHA3__HTTPROUTE__INIT;
  route.name = "r1";
  route.n_match = 1;
  route.match = matches;
  route.n_route = 1;
  route.route = rds;
  route.timeout = &timeout;
  route.retries = &retry;
  route.mirror_percentage = &pct;
  Istio__Networking__V1alpha3__HTTPRoute *routes[] = {&route};

  Istio__Networking__V1alpha3__HTTPRedirect redir =
      ISTIO__NETWORKING__V1ALPHA3__HTTPREDIRECT__INIT;
  redir.uri = "/new";
  redir.redirect_port_case =
      ISTIO__NETWORKING__V1ALPHA3__HTTPREDIRECT__REDIRECT_PORT_DERIVE_PORT;
  redir.derive_port =
      ISTIO__NETWORKING__V1ALPHA3__HTTPREDIRECT__REDIRECT_PORT_SELECTION__FROM_PROTOCOL_DEFAULT;
  Istio__Networking__V1alpha3__HTTPRoute route2 =
      ISTIO__NETWORKING__V1ALPHA3__HTTPROUTE__INIT;
  route2.redirect = &redir;
  Istio__Networking__V1alpha3__HTTPRoute *routes2[] = {&route, &route2};

  char *hosts[] = {"bookinfo.example.com"};
  char *gws[] = {"bookinfo/gw", "mesh"};
  Istio__Networking__V1alpha3__VirtualService vs =
      ISTIO__NETWORKING__V1ALPHA3__VIRTUAL_SERVICE__INIT;
  vs.n_hosts = 1;
  vs.hosts = hosts;
  vs.n_gateways = 2;
  vs.gateways = gws;
  vs.n_http = 2;
  vs.http = routes2;
  (void)routes;

  char *got = convert(&vs.base, NULL);
  assert_string_equal(
      got, "{\"gateways\":[\"bookinfo/gw\",\"mesh\"],"
           "\"hosts\":[\"bookinfo.example.com\"],"
           "\"http\":[{\"match\":[{\"headers\":{\"x-user\":{\"exact\":\"\"}},"
           "\"uri\":{\"prefix\":\"/api\"}}],"
           "\"mirrorPercentage\":{\"value\":12.5},\"name\":\"r1\","
           "\"retries\":{\"attempts\":3,\"perTryTimeout\":\"2s\","
           "\"retryRemoteLocalities\":true},"
           "\"route\":[{\"destination\":{\"host\":\"reviews\","
           "\"port\":{\"number\":9080}},\"weight\":100}],\"timeout\":\"1.5s\"},"
           "{\"redirect\":{\"derivePort\":\"FROM_PROTOCOL_DEFAULT\","
           "\"uri\":\"/new\"}}]}");
  free(got);
}

static void test_simple_lb_numbering_and_uint64(void **state) {
  Istio__Networking__V1alpha3__LoadBalancerSettings lb =
      ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__INIT;
  lb.lb_policy_case =
      ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__LB_POLICY_SIMPLE;
  lb.simple = 0;
  char *got = convert(&lb.base, NULL);
  assert_string_equal(got, "{\"simple\":\"UNSPECIFIED\"}");
  free(got);
  amc_pb_lua_opts_t legacy = {.simple_lb_legacy = 1};
  got = convert(&lb.base, &legacy);
  assert_string_equal(got, "{\"simple\":\"ROUND_ROBIN\"}");
  free(got);
  lb.simple = 4;
  got = convert(&lb.base, &legacy);
  assert_string_equal(got, "{\"simple\":\"ROUND_ROBIN\"}");
  free(got);
  lb.simple = 77; /* unknown numbers stay numbers */
  got = convert(&lb.base, NULL);
  assert_string_equal(got, "{\"simple\":77}");
  free(got);

  Istio__Networking__V1alpha3__LoadBalancerSettings__ConsistentHashLB ch =
      ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__INIT;
  ch.hash_key_case =
      ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__CONSISTENT_HASH_LB__HASH_KEY_USE_SOURCE_IP;
  ch.use_source_ip = 0; /* a oneof false still appears */
  ch.minimum_ring_size = 18446744073709551615ull;
  lb.lb_policy_case =
      ISTIO__NETWORKING__V1ALPHA3__LOAD_BALANCER_SETTINGS__LB_POLICY_CONSISTENT_HASH;
  lb.consistent_hash = &ch;
  got = convert(&lb.base, NULL);
  assert_string_equal(got, "{\"consistentHash\":{\"minimumRingSize\":"
                           "\"18446744073709551615\",\"useSourceIp\":false}}");
  free(got);
}

static void test_durations_and_wrappers(void **state) {
  struct {
    int64_t s;
    int32_t n;
    const char *want;
  } cases[] = {
      {0, 0, "0s"},           {30, 0, "30s"},
      {1, 500000000, "1.5s"}, {0, 250000000, "0.25s"},
      {0, 1, "0.000000001s"}, {-1, -500000000, "-1.5s"},
      {86400, 0, "86400s"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
    d.seconds = cases[i].s;
    d.nanos = cases[i].n;
    Istio__Networking__V1alpha3__HTTPRoute r =
        ISTIO__NETWORKING__V1ALPHA3__HTTPROUTE__INIT;
    r.timeout = &d;
    char *got = convert(&r.base, NULL);
    char want[80];
    snprintf(want, sizeof want, "{\"timeout\":\"%s\"}", cases[i].want);
    assert_string_equal(got, want);
    free(got);
  }
  Google__Protobuf__UInt32Value u = GOOGLE__PROTOBUF__UINT32_VALUE__INIT;
  u.value = 0; /* a present wrapper keeps its zero */
  Istio__Networking__V1alpha3__OutlierDetection od =
      ISTIO__NETWORKING__V1ALPHA3__OUTLIER_DETECTION__INIT;
  od.consecutive_5xx_errors = &u;
  od.max_ejection_percent = 0; /* proto3 default: left out */
  char *got = convert(&od.base, NULL);
  assert_string_equal(got, "{\"consecutive5xxErrors\":0}");
  free(got);
}

static void test_struct_value_and_arrays(void **state) {
  /* Node.metadata is a Struct: {"GENERATOR":"api","N":1.5,"L":[true,null],
   * "E":{}} */
  Google__Protobuf__Value vs = GOOGLE__PROTOBUF__VALUE__INIT;
  vs.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
  vs.string_value = "api";
  Google__Protobuf__Value vn = GOOGLE__PROTOBUF__VALUE__INIT;
  vn.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
  vn.number_value = 1.5;
  Google__Protobuf__Value vb = GOOGLE__PROTOBUF__VALUE__INIT;
  vb.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
  vb.bool_value = 1;
  Google__Protobuf__Value vnull = GOOGLE__PROTOBUF__VALUE__INIT;
  vnull.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
  Google__Protobuf__Value *items[] = {&vb, &vnull};
  Google__Protobuf__ListValue lv = GOOGLE__PROTOBUF__LIST_VALUE__INIT;
  lv.n_values = 2;
  lv.values = items;
  Google__Protobuf__Value vl = GOOGLE__PROTOBUF__VALUE__INIT;
  vl.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
  vl.list_value = &lv;
  Google__Protobuf__Struct empty = GOOGLE__PROTOBUF__STRUCT__INIT;
  Google__Protobuf__Value ve = GOOGLE__PROTOBUF__VALUE__INIT;
  ve.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
  ve.struct_value = &empty;
  Google__Protobuf__Struct__FieldsEntry e1 =
      GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
  e1.key = "GENERATOR";
  e1.value = &vs;
  Google__Protobuf__Struct__FieldsEntry e2 =
      GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
  e2.key = "N";
  e2.value = &vn;
  Google__Protobuf__Struct__FieldsEntry e3 =
      GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
  e3.key = "L";
  e3.value = &vl;
  Google__Protobuf__Struct__FieldsEntry e4 =
      GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
  e4.key = "E";
  e4.value = &ve;
  Google__Protobuf__Struct__FieldsEntry *fields[] = {&e1, &e2, &e3, &e4};
  Google__Protobuf__Struct st = GOOGLE__PROTOBUF__STRUCT__INIT;
  st.n_fields = 4;
  st.fields = fields;
  Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
  node.id = "router~1.2.3.4~a.b~b.svc.cluster.local";
  node.metadata = &st;
  char *got = convert(&node.base, NULL);
  assert_string_equal(got, "{\"id\":\"router~1.2.3.4~a.b~b.svc.cluster.local\","
                           "\"metadata\":{\"E\":{},\"GENERATOR\":\"api\","
                           "\"L\":[true,null],\"N\":1.5}}");
  free(got);

  /* arrays carry the array metatable, so an empty-but-present list would
   * still encode as [] */
  char *hosts[] = {"a"};
  Istio__Networking__V1alpha3__Server srv =
      ISTIO__NETWORKING__V1ALPHA3__SERVER__INIT;
  srv.n_hosts = 1;
  srv.hosts = hosts;
  char err[128];
  assert_int_equal(amc_pb_lua_push(L, &srv.base, "spec", NULL, err, sizeof err),
                   0);
  lua_getfield(L, -1, "hosts");
  assert_true(lua_getmetatable(L, -1));
  luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
  assert_true(lua_rawequal(L, -1, -2));
  lua_settop(L, 0);
}

static void test_any_unknown_is_reported(void **state) {
  /* Resource.body is an Any: known -> fields + @type, unknown -> @type and
   * a warning, never an error. */
  uint8_t gwbytes[64];
  char *hosts[] = {"x.example.com"};
  Istio__Networking__V1alpha3__Server srv =
      ISTIO__NETWORKING__V1ALPHA3__SERVER__INIT;
  srv.n_hosts = 1;
  srv.hosts = hosts;
  Istio__Networking__V1alpha3__Server *srvs[] = {&srv};
  Istio__Networking__V1alpha3__Gateway gw =
      ISTIO__NETWORKING__V1ALPHA3__GATEWAY__INIT;
  gw.n_servers = 1;
  gw.servers = srvs;
  size_t n = istio__networking__v1alpha3__gateway__pack(&gw, gwbytes);
  Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
  any.type_url = "type.googleapis.com/istio.networking.v1alpha3.Gateway";
  any.value.data = gwbytes;
  any.value.len = n;
  Istio__Mcp__V1alpha1__Resource r = ISTIO__MCP__V1ALPHA1__RESOURCE__INIT;
  r.body = &any;
  char *got = convert(&r.base, NULL);
  assert_string_equal(got, "{\"body\":{\"@type\":\"type.googleapis.com/"
                           "istio.networking.v1alpha3.Gateway\","
                           "\"servers\":[{\"hosts\":[\"x.example.com\"]}]}}");
  free(got);

  any.type_url = "type.googleapis.com/example.Unknown";
  amc_buf_t warn = AMC_BUF_INIT;
  amc_pb_lua_opts_t o = {.warn = &warn};
  got = convert(&r.base, &o);
  assert_string_equal(
      got, "{\"body\":{\"@type\":\"type.googleapis.com/example.Unknown\"}}");
  assert_non_null(strstr(warn.data, "spec.body: Any of unknown type "
                                    "'type.googleapis.com/example.Unknown'"));
  free(got);
  amc_buf_free(&warn);

  /* a known type with undecodable bytes is an error naming the path */
  any.type_url = "type.googleapis.com/istio.networking.v1alpha3.Gateway";
  uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff};
  any.value.data = junk;
  any.value.len = sizeof junk;
  char err[256];
  int top = lua_gettop(L);
  assert_int_equal(amc_pb_lua_push(L, &r.base, "spec", NULL, err, sizeof err),
                   -1);
  assert_int_equal(lua_gettop(L), top);
  assert_string_equal(err, "spec.body: cannot decode Any of type "
                           "istio.networking.v1alpha3.Gateway");
}

static void test_invalid_utf8_names_the_field(void **state) {
  char bad[] = {'o', 'k', (char)0xC3, 0};
  char *hosts[] = {"fine", bad};
  Istio__Networking__V1alpha3__Server srv =
      ISTIO__NETWORKING__V1ALPHA3__SERVER__INIT;
  srv.n_hosts = 2;
  srv.hosts = hosts;
  Istio__Networking__V1alpha3__Server *srvs[] = {&srv};
  Istio__Networking__V1alpha3__Gateway gw =
      ISTIO__NETWORKING__V1ALPHA3__GATEWAY__INIT;
  gw.n_servers = 1;
  gw.servers = srvs;
  char err[256];
  assert_int_equal(amc_pb_lua_push(L, &gw.base, "spec", NULL, err, sizeof err),
                   -1);
  assert_string_equal(err, "spec.servers[0].hosts[1]: string is not valid "
                           "UTF-8");
  assert_int_equal(lua_gettop(L), 0);
}

static size_t pack_resource_label(const char *name, uint8_t *out, int with_ts,
                                  const char *label) {
  Istio__Networking__V1alpha3__Gateway gw =
      ISTIO__NETWORKING__V1ALPHA3__GATEWAY__INIT;
  Istio__Networking__V1alpha3__Gateway__SelectorEntry sel =
      ISTIO__NETWORKING__V1ALPHA3__GATEWAY__SELECTOR_ENTRY__INIT;
  sel.key = "istio";
  sel.value = "ingressgateway";
  Istio__Networking__V1alpha3__Gateway__SelectorEntry *sels[] = {&sel};
  gw.n_selector = 1;
  gw.selector = sels;
  uint8_t body[128];
  size_t bl = istio__networking__v1alpha3__gateway__pack(&gw, body);
  Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
  any.type_url = "type.googleapis.com/istio.networking.v1alpha3.Gateway";
  any.value.data = body;
  any.value.len = bl;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  ts.seconds = 1714557600; /* 2024-05-01T10:00:00Z */
  ts.nanos = 120000000;
  Istio__Mcp__V1alpha1__Metadata__LabelsEntry lab =
      ISTIO__MCP__V1ALPHA1__METADATA__LABELS_ENTRY__INIT;
  lab.key = "app";
  lab.value = (char *)label;
  Istio__Mcp__V1alpha1__Metadata__LabelsEntry *labs[] = {&lab};
  Istio__Mcp__V1alpha1__Metadata md = ISTIO__MCP__V1ALPHA1__METADATA__INIT;
  md.name = (char *)name;
  md.version = "42";
  md.n_labels = 1;
  md.labels = labs;
  if (with_ts)
    md.create_time = &ts;
  Istio__Mcp__V1alpha1__Resource r = ISTIO__MCP__V1ALPHA1__RESOURCE__INIT;
  r.metadata = &md;
  r.body = &any;
  return istio__mcp__v1alpha1__resource__pack(&r, out);
}

static size_t pack_resource(const char *name, uint8_t *out, int with_ts) {
  return pack_resource_label(name, out, with_ts, "shop");
}

static void test_mcp_resource_kubernetes_shape(void **state) {
  uint8_t buf[512];
  size_t n = pack_resource("shop/web-gw", buf, 1);
  const amc_pb_kind_t *k = NULL;
  char ns[254], name[254], err[512];
  assert_int_equal(
      amc_pb_lua_push_mcp_resource(L, buf, n, amc_pb_kind_by_name("Gateway"),
                                   NULL, &k, ns, name, err, sizeof err),
      0);
  assert_string_equal(k->kind, "Gateway");
  assert_string_equal(ns, "shop");
  assert_string_equal(name, "web-gw");
  amc_buf_t b = AMC_BUF_INIT;
  assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
  assert_string_equal(
      b.data, "{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"Gateway\","
              "\"metadata\":{\"creationTimestamp\":\"2024-05-01T10:00:00.12Z\","
              "\"labels\":{\"app\":\"shop\"},\"name\":\"web-gw\","
              "\"namespace\":\"shop\",\"resourceVersion\":\"42\"},"
              "\"spec\":{\"selector\":{\"istio\":\"ingressgateway\"}}}");
  amc_buf_free(&b);
  lua_settop(L, 0);

  /* wrong kind for the subscription, bad names, junk */
  assert_int_equal(amc_pb_lua_push_mcp_resource(
                       L, buf, n, amc_pb_kind_by_name("VirtualService"), NULL,
                       &k, ns, name, err, sizeof err),
                   -1);
  assert_string_equal(err, "shop/web-gw: body type 'type.googleapis.com/"
                           "istio.networking.v1alpha3.Gateway' does not "
                           "match the subscribed type");
  const char *bad_names[] = {"web-gw", "Shop/web",  "shop/",
                             "/web",   "shop/we_b", "-shop/web"};
  for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
    n = pack_resource(bad_names[i], buf, 0);
    assert_int_equal(amc_pb_lua_push_mcp_resource(L, buf, n, NULL, NULL, &k, ns,
                                                  name, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "metadata.name must be"));
  }
  char badlabel[] = {'s', (char)0xff, 0};
  n = pack_resource_label("shop/web", buf, 0, badlabel);
  assert_int_equal(amc_pb_lua_push_mcp_resource(L, buf, n, NULL, NULL, &k, ns,
                                                name, err, sizeof err),
                   -1);
  assert_string_equal(err,
                      "shop/web: metadata.labels: an entry is not valid UTF-8");
  uint8_t junk[] = {0x0a, 0x05, 0x01};
  assert_int_equal(amc_pb_lua_push_mcp_resource(L, junk, sizeof junk, NULL,
                                                NULL, &k, ns, name, err,
                                                sizeof err),
                   -1);
  assert_string_equal(err, "cannot decode istio.mcp.v1alpha1.Resource");
  assert_int_equal(lua_gettop(L), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_virtual_service_shape),
      cmocka_unit_test(test_simple_lb_numbering_and_uint64),
      cmocka_unit_test(test_durations_and_wrappers),
      cmocka_unit_test(test_struct_value_and_arrays),
      cmocka_unit_test(test_any_unknown_is_reported),
      cmocka_unit_test(test_invalid_utf8_names_the_field),
      cmocka_unit_test(test_mcp_resource_kubernetes_shape),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
