/* test_deps.c - the dependency index from recorded reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deps.h"
#include "util/buf.h"

/* Collects affected keys as one string "k1 k2 ...". */
static void add_key(const char *key, void *data) {
  amc_buf_t *b = data;
  if (b->len)
    amc_buf_putc(b, ' ');
  amc_buf_puts(b, key);
}

static char out[1024];

static const char *changed(amc_deps_t *d, const char *kind, const char *ns,
                           const char *name, const char *old_json,
                           const char *new_json) {
  amc_buf_t b = AMC_BUF_INIT;
  size_t n =
      amc_deps_affected(d, kind, ns, name, old_json, new_json, add_key, &b);
  snprintf(out, sizeof out, "%s", b.data ? b.data : "");
  amc_buf_free(&b);
  /* the count matches the keys reported */
  size_t words = out[0] ? 1 : 0;
  for (const char *p = out; *p; p++)
    words += *p == ' ';
  assert_int_equal(n, words);
  return out;
}

static const char *affected(amc_deps_t *d, const char *kind, const char *ns,
                            const char *name) {
  return changed(d, kind, ns, name, NULL, NULL);
}

#define R(k, ns, n)                                                            \
  ((amc_read_t){(char *)(k), (char *)(ns), (char *)(n), NULL, NULL, NULL})
/* A field-filtered list (f) or a label-filtered list (l). */
#define RF(k, ns, f, v)                                                        \
  ((amc_read_t){(char *)(k), (char *)(ns), NULL, (char *)(f), NULL,            \
                (char *)(v)})
#define RL(k, ns, l, v)                                                        \
  ((amc_read_t){(char *)(k), (char *)(ns), NULL, NULL, (char *)(l),            \
                (char *)(v)})

#define VS_GW(gw)                                                              \
  "{\"kind\":\"VirtualService\",\"spec\":{\"gateways\":[" gw "]}}"

/* Gateway A lists VirtualServices bound to it (all namespaces), B too,
 * C lists every VirtualService of "shop". A change re-queues the keys
 * whose filter value the object had before or has after. */
static void test_field_filtered_reads(void **state) {
  (void)state;
  amc_deps_t *d = amc_deps_new("Gateway");
  amc_read_t ra[] = {RF("VirtualService", NULL, "spec.gateways", "gw/a")};
  amc_read_t rb[] = {RF("VirtualService", NULL, "spec.gateways", "gw/b")};
  amc_read_t rc[] = {RF("VirtualService", "shop", "spec.gateways", "gw/c")};
  amc_deps_update(d, "Gateway/gw/a", ra, 1);
  amc_deps_update(d, "Gateway/gw/b", rb, 1);
  amc_deps_update(d, "Gateway/shop/c", rc, 1);
  const char *a = VS_GW("\"gw/a\""), *b = VS_GW("\"gw/b\""),
             *ab = VS_GW("\"x\",\"gw/a\",\"gw/b\""), *none = VS_GW("\"gw/z\""),
             *c = VS_GW("\"gw/c\"");
  /* edit in place: only A */
  assert_string_equal(changed(d, "VirtualService", "shop", "v", a, a),
                      "Gateway/gw/a");
  /* added / deleted */
  assert_string_equal(changed(d, "VirtualService", "shop", "v", NULL, b),
                      "Gateway/gw/b");
  assert_string_equal(changed(d, "VirtualService", "shop", "v", b, NULL),
                      "Gateway/gw/b");
  /* moved from A to B: both */
  assert_string_equal(changed(d, "VirtualService", "shop", "v", a, b),
                      "Gateway/gw/a Gateway/gw/b");
  assert_string_equal(changed(d, "VirtualService", "shop", "v", none, ab),
                      "Gateway/gw/a Gateway/gw/b");
  /* neither old nor new value */
  assert_string_equal(changed(d, "VirtualService", "shop", "v", none, none),
                      "");
  /* a plain string (not an array) at the path matches too */
  assert_string_equal(changed(d, "VirtualService", "shop", "v", NULL,
                              "{\"spec\":{\"gateways\":\"gw/a\"}}"),
                      "Gateway/gw/a");
  /* namespaced filtered list: only its namespace */
  assert_string_equal(changed(d, "VirtualService", "shop", "v", none, c),
                      "Gateway/shop/c");
  assert_string_equal(changed(d, "VirtualService", "other", "v", none, c), "");
  /* other kinds with the same field are not confused */
  assert_string_equal(changed(d, "DestinationRule", "shop", "v", a, a), "");
  /* after an update dropping the filter, A no longer depends on it */
  amc_read_t r0[] = {R("Secret", "gw", "s")};
  amc_deps_update(d, "Gateway/gw/a", r0, 1);
  assert_string_equal(changed(d, "VirtualService", "shop", "v", a, ab),
                      "Gateway/gw/b");
  amc_deps_free(d);
}

#define EPS(labels)                                                            \
  "{\"kind\":\"EndpointSlice\",\"metadata\":{\"labels\":{" labels "},"         \
  "\"name\":\"e\"}}"

static void test_label_filtered_reads(void **state) {
  (void)state;
  amc_deps_t *d = amc_deps_new("Gateway");
  amc_read_t ra[] = {
      RL("EndpointSlice", "shop", "kubernetes.io/service-name", "cart"),
      R("Service", "shop", "cart")};
  amc_read_t rb[] = {
      RL("EndpointSlice", "shop", "kubernetes.io/service-name", "pay")};
  amc_deps_update(d, "Gateway/gw/a", ra, 2);
  amc_deps_update(d, "Gateway/gw/b", rb, 1);
  const char *cart = EPS("\"kubernetes.io/service-name\":\"cart\""),
             *pay = EPS("\"kubernetes.io/service-name\":\"pay\""),
             *nolabel = EPS(""), *other = EPS("\"app\":\"cart\"");
  /* endpoints of cart change: A only */
  assert_string_equal(changed(d, "EndpointSlice", "shop", "e", cart, cart),
                      "Gateway/gw/a");
  /* label added / removed */
  assert_string_equal(changed(d, "EndpointSlice", "shop", "e", nolabel, pay),
                      "Gateway/gw/b");
  assert_string_equal(changed(d, "EndpointSlice", "shop", "e", cart, other),
                      "Gateway/gw/a");
  /* relabelled from cart to pay: both */
  assert_string_equal(changed(d, "EndpointSlice", "shop", "e", cart, pay),
                      "Gateway/gw/a Gateway/gw/b");
  /* neither; other namespace */
  assert_string_equal(changed(d, "EndpointSlice", "shop", "e", other, nolabel),
                      "");
  assert_string_equal(changed(d, "EndpointSlice", "prod", "e", cart, cart), "");
  /* without the JSON (unknown values) no filtered read matches */
  assert_string_equal(affected(d, "EndpointSlice", "shop", "e"), "");
  /* an unfiltered list of the kind still sees everything */
  amc_read_t rc[] = {R("EndpointSlice", "shop", NULL)};
  amc_deps_update(d, "Gateway/gw/c", rc, 1);
  assert_string_equal(changed(d, "EndpointSlice", "shop", "e", other, other),
                      "Gateway/gw/c");
  /* the same key with a filtered and an unfiltered read: once */
  amc_read_t rd[] = {
      RL("EndpointSlice", "shop", "kubernetes.io/service-name", "cart"),
      R("EndpointSlice", "shop", NULL)};
  amc_deps_update(d, "Gateway/gw/c", rd, 2);
  assert_string_equal(changed(d, "EndpointSlice", "shop", "e", cart, cart),
                      "Gateway/gw/a Gateway/gw/c");
  amc_deps_free(d);
}

static void test_object_reads(void **state) {
  (void)state;
  amc_deps_t *d = amc_deps_new("Gateway");
  amc_read_t r1[] = {R("VirtualService", "shop", "cart"),
                     R("Service", "shop", "cart"),
                     R("EndpointSlice", "shop", "cart-abc")};
  amc_read_t r2[] = {R("Service", "shop", "cart"), R("Service", "shop", "pay")};
  amc_deps_update(d, "Gateway/shop/gw1", r1, 3);
  amc_deps_update(d, "Gateway/shop/gw2", r2, 2);
  assert_int_equal(amc_deps_count(d), 2);
  assert_string_equal(affected(d, "Service", "shop", "cart"),
                      "Gateway/shop/gw1 Gateway/shop/gw2");
  assert_string_equal(affected(d, "Service", "shop", "pay"),
                      "Gateway/shop/gw2");
  assert_string_equal(affected(d, "EndpointSlice", "shop", "cart-abc"),
                      "Gateway/shop/gw1");
  /* same name, other namespace or kind: nothing */
  assert_string_equal(affected(d, "Service", "other", "cart"), "");
  assert_string_equal(affected(d, "Pod", "shop", "cart"), "");
  amc_deps_free(d);
}

static void test_root_objects_map_to_own_key(void **state) {
  (void)state;
  amc_deps_t *d = amc_deps_new("Gateway");
  /* never translated: still its own key */
  assert_string_equal(affected(d, "Gateway", "istio-system", "gw"),
                      "Gateway/istio-system/gw");
  /* a gateway that another gateway read: both */
  amc_read_t r[] = {R("Gateway", "istio-system", "gw")};
  amc_deps_update(d, "Gateway/istio-system/other", r, 1);
  assert_string_equal(affected(d, "Gateway", "istio-system", "gw"),
                      "Gateway/istio-system/gw Gateway/istio-system/other");
  char k[64];
  amc_deps_key(d, "ns", "n", k, sizeof k);
  assert_string_equal(k, "Gateway/ns/n");
  amc_deps_free(d);
}

static void test_list_reads(void **state) {
  (void)state;
  amc_deps_t *d = amc_deps_new("Gateway");
  amc_read_t all[] = {R("VirtualService", NULL, NULL)};
  amc_read_t one_ns[] = {R("DestinationRule", "shop", NULL)};
  amc_deps_update(d, "Gateway/a/gw", all, 1);
  amc_deps_update(d, "Gateway/b/gw", one_ns, 1);
  /* any VirtualService anywhere, even one that did not exist when read */
  assert_string_equal(affected(d, "VirtualService", "x", "new"),
                      "Gateway/a/gw");
  assert_string_equal(affected(d, "DestinationRule", "shop", "dr"),
                      "Gateway/b/gw");
  assert_string_equal(affected(d, "DestinationRule", "other", "dr"), "");
  amc_deps_free(d);
}

static void test_update_replaces_and_remove(void **state) {
  (void)state;
  amc_deps_t *d = amc_deps_new("Gateway");
  amc_read_t r1[] = {R("Service", "ns", "old"), R("Service", "ns", "old")};
  amc_read_t r2[] = {R("Service", "ns", "new")};
  amc_deps_update(d, "Gateway/ns/gw", r1, 2); /* duplicate read once */
  assert_string_equal(affected(d, "Service", "ns", "old"), "Gateway/ns/gw");
  amc_deps_update(d, "Gateway/ns/gw", r2, 1);
  assert_string_equal(affected(d, "Service", "ns", "old"), "");
  assert_string_equal(affected(d, "Service", "ns", "new"), "Gateway/ns/gw");
  amc_deps_update(d, "Gateway/ns/gw", NULL, 0);
  assert_string_equal(affected(d, "Service", "ns", "new"), "");
  assert_int_equal(amc_deps_count(d), 1);
  amc_deps_remove(d, "Gateway/ns/gw");
  assert_int_equal(amc_deps_count(d), 0);
  amc_deps_remove(d, "Gateway/ns/unknown"); /* no-op */
  amc_deps_free(d);
}

/* Updating with the same reads again (kept as they are), with a prefix of
 * them, with one more, and reading the reads back. */
static void read_back(const amc_read_t *r, void *data) {
  char *buf = data;
  size_t n = strlen(buf);
  snprintf(buf + n, 512 - n, "%s%s|%s|%s|%s|%s|%s", n ? ";" : "", r->kind,
           r->namespace_ ? r->namespace_ : "-", r->name ? r->name : "-",
           r->field ? r->field : "-", r->label ? r->label : "-",
           r->value ? r->value : "-");
}

static void test_same_reads_and_read_back(void **state) {
  (void)state;
  amc_deps_t *d = amc_deps_new("Gateway");
  amc_read_t r[] = {R("Service", "ns", "a"), R("Service", "ns", "b"),
                    RF("VirtualService", NULL, "spec.gateways", "ns/gw"),
                    RL("EndpointSlice", "ns", "app", "a"),
                    R("Pod", NULL, NULL)};
  amc_deps_update(d, "k", r, 5);
  amc_deps_update(d, "k", r, 5);
  assert_string_equal(affected(d, "Service", "ns", "b"), "k");
  assert_string_equal(affected(d, "Pod", "x", "p"), "k");
  amc_deps_update(d, "k", r, 1);
  assert_string_equal(affected(d, "Service", "ns", "b"), "");
  assert_string_equal(affected(d, "Service", "ns", "a"), "k");
  amc_deps_update(d, "k", r, 2);
  assert_string_equal(affected(d, "Service", "ns", "b"), "k");
  amc_deps_update(d, "k", r, 5);
  char got[512] = "";
  assert_int_equal(amc_deps_foreach_read(d, "k", read_back, got), 5);
  assert_string_equal(got, "Service|ns|a|-|-|-;Service|ns|b|-|-|-;"
                           "VirtualService|-|-|spec.gateways|-|ns/gw;"
                           "EndpointSlice|ns|-|-|app|a;Pod|-|-|-|-|-");
  assert_int_equal(amc_deps_foreach_read(d, "none", read_back, got), 0);
  amc_deps_free(d);
}

static void test_cluster_scoped(void **state) {
  (void)state;
  amc_deps_t *d = amc_deps_new("Gateway");
  amc_read_t r[] = {R("Namespace", NULL, "shop")};
  amc_deps_update(d, "Gateway/shop/gw", r, 1);
  assert_string_equal(affected(d, "Namespace", NULL, "shop"),
                      "Gateway/shop/gw");
  assert_string_equal(affected(d, "Namespace", "", "shop"), "Gateway/shop/gw");
  amc_deps_free(d);
}

static void count_key(const char *key, void *data) {
  (void)key;
  (*(int *)data)++;
}

static void test_many(void **state) {
  (void)state;
  amc_deps_t *d = amc_deps_new("Gateway");
  char key[64], name[64];
  for (int g = 0; g < 200; g++) {
    snprintf(key, sizeof key, "Gateway/ns/gw%d", g);
    snprintf(name, sizeof name, "svc%d", g % 10);
    amc_read_t r[] = {R("Service", "ns", name), R("Secret", "ns", "shared")};
    amc_deps_update(d, key, r, 2);
  }
  int n = 0;
  assert_int_equal(
      amc_deps_affected(d, "Secret", "ns", "shared", NULL, NULL, count_key, &n),
      200);
  n = 0;
  assert_int_equal(
      amc_deps_affected(d, "Service", "ns", "svc3", NULL, NULL, count_key, &n),
      20);
  n = 0;
  amc_deps_foreach_key(d, count_key, &n);
  assert_int_equal(n, 200);
  amc_deps_free(d);
}

/* Keys leave shared sets one by one (removed, or re-translated without the
 * read) and the rest stay; emptied sets come back when read again. */
static void test_shared_sets_shrink(void **state) {
  (void)state;
  amc_deps_t *d = amc_deps_new("Gateway");
  char key[64];
  amc_read_t r[] = {R("Secret", "ns", "shared"), R("Service", "ns", "s")};
  amc_read_t only_svc[] = {R("Service", "ns", "s")};
  for (int g = 0; g < 9; g++) {
    snprintf(key, sizeof key, "Gateway/ns/gw%d", g);
    amc_deps_update(d, key, r, 2);
  }
  for (int g = 0; g < 9; g += 2) {
    snprintf(key, sizeof key, "Gateway/ns/gw%d", g);
    amc_deps_remove(d, key);
  }
  assert_string_equal(affected(d, "Secret", "ns", "shared"),
                      "Gateway/ns/gw1 Gateway/ns/gw3 Gateway/ns/gw5 "
                      "Gateway/ns/gw7");
  amc_deps_update(d, "Gateway/ns/gw3", only_svc, 1);
  amc_deps_update(d, "Gateway/ns/gw5", r, 2); /* re-read: still in */
  assert_string_equal(affected(d, "Secret", "ns", "shared"),
                      "Gateway/ns/gw1 Gateway/ns/gw5 Gateway/ns/gw7");
  assert_string_equal(affected(d, "Service", "ns", "s"),
                      "Gateway/ns/gw1 Gateway/ns/gw3 Gateway/ns/gw5 "
                      "Gateway/ns/gw7");
  amc_deps_remove(d, "Gateway/ns/gw1");
  amc_deps_remove(d, "Gateway/ns/gw7");
  amc_deps_update(d, "Gateway/ns/gw5", NULL, 0);
  assert_string_equal(affected(d, "Secret", "ns", "shared"), "");
  assert_string_equal(affected(d, "Service", "ns", "s"), "Gateway/ns/gw3");
  amc_deps_update(d, "Gateway/ns/gw8", r, 2);
  assert_string_equal(affected(d, "Secret", "ns", "shared"), "Gateway/ns/gw8");
  assert_int_equal(amc_deps_count(d), 3);
  amc_deps_free(d);
}

/* amc_json_string_fn for test_path_values: "value;" per call. */
static void join_value(const char *v, size_t len, void *data) {
  amc_buf_t *b = data;
  amc_buf_printf(b, "%.*s;", (int)len, v);
}

static void test_path_values(void **state) {
  (void)state;
  const char *old_json = "{\"metadata\":{\"labels\":{\"app\":\"a\"}},"
                         "\"spec\":{\"gateways\":[\"ns/g1\",\"ns/g2\"]}}";
  const char *new_json = "{\"metadata\":{\"labels\":{\"app\":\"b\"}},"
                         "\"spec\":{\"gateways\":\"ns/g3\"}}";
  amc_buf_t b = AMC_BUF_INIT;
  amc_deps_path_values("l:app", old_json, new_json, join_value, &b);
  assert_string_equal(b.data, "a;b;");
  amc_buf_reset(&b);
  amc_deps_path_values("f:spec.gateways", old_json, new_json, join_value, &b);
  assert_string_equal(b.data, "ns/g1;ns/g2;ns/g3;");
  amc_buf_reset(&b);
  amc_deps_path_values("f:spec.gateways", NULL, new_json, join_value, &b);
  assert_string_equal(b.data, "ns/g3;");
  /* paths rt.list refuses find nothing */
  static const char *const bad[] = {"f:", "f:spec..gateways", "f:.spec",
                                    "f:a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    amc_buf_reset(&b);
    amc_deps_path_values(bad[i], old_json, new_json, join_value, &b);
    assert_true(b.len == 0);
  }
  amc_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_object_reads),
      cmocka_unit_test(test_root_objects_map_to_own_key),
      cmocka_unit_test(test_list_reads),
      cmocka_unit_test(test_update_replaces_and_remove),
      cmocka_unit_test(test_shared_sets_shrink),
      cmocka_unit_test(test_cluster_scoped),
      cmocka_unit_test(test_same_reads_and_read_back),
      cmocka_unit_test(test_many),
      cmocka_unit_test(test_field_filtered_reads),
      cmocka_unit_test(test_label_filtered_reads),
      cmocka_unit_test(test_path_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
