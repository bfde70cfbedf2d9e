/* test_store.c - the object store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "store.h"
#include "util/buf.h"

#include "obj_json.h"

static amc_buf_t events;

static void listener(const char *kind, const char *ns, const char *name,
                     amc_store_event_t ev, void *data) {
  (*(int *)data)++;
  static const char *const names[] = {"ADDED", "MODIFIED", "DELETED"};
  amc_buf_printf(&events, "%s %s/%s/%s\n", names[ev], kind, ns ? ns : "-",
                 name);
}

static void put(amc_store_t *s, const char *kind, const char *ns,
                const char *name, const char *json, int want_changed) {
  int changed = -1;
  assert_int_equal(amc_store_put_json(s, kind, ns, name, json, strlen(json),
                                      NULL, NULL, &changed),
                   0);
  assert_int_equal(changed, want_changed);
}

static void test_put_get_delete_revisions(void **state) {
  (void)state;
  amc_store_t *s = amc_store_new();
  int n = 0;
  amc_buf_reset(&events);
  amc_store_set_listener(s, listener, &n);
  assert_int_equal(amc_store_revision(s), 0);
  put(s, "Service", "ns", "a", "{\"x\":1}", 1);
  assert_int_equal(amc_store_revision(s), 1);
  put(s, "Service", "ns", "a", "{\"x\":1}", 0); /* same bytes */
  assert_int_equal(amc_store_revision(s), 1);
  put(s, "Service", "ns", "a", "{\"x\":2}", 1);
  assert_int_equal(amc_store_revision(s), 2);
  put(s, "Namespace", NULL, "ns", "{}", 1);
  const amc_store_obj_t *o = amc_store_get(s, "Service", "ns", "a");
  assert_non_null(o);
  assert_string_equal(obj_json(o), "{\"x\":2}");
  assert_int_equal(o->revision, 2);
  assert_string_equal(o->kind, "Service");
  assert_string_equal(o->namespace_, "ns");
  assert_string_equal(o->name, "a");
  assert_null(amc_store_get(s, "Service", "ns", "b"));
  assert_null(amc_store_get(s, "Service", "other", "a"));
  assert_null(amc_store_get(s, "Pod", "ns", "a"));
  o = amc_store_get(s, "Namespace", NULL, "ns");
  assert_non_null(o);
  assert_null(o->namespace_);
  /* Kinds are interned: the same pointer for every object of a kind. */
  put(s, "Service", "ns", "z", "{}", 1);
  assert_ptr_equal(amc_store_get(s, "Service", "ns", "z")->kind,
                   amc_store_get(s, "Service", "ns", "a")->kind);
  assert_int_equal(amc_store_count(s, NULL), 3);
  assert_int_equal(amc_store_count(s, "Service"), 2);
  assert_int_equal(amc_store_count(s, "Pod"), 0);
  assert_int_equal(amc_store_delete(s, "Service", "ns", "a"), 1);
  assert_int_equal(amc_store_delete(s, "Service", "ns", "a"), 0);
  assert_int_equal(amc_store_delete(s, "Pod", "ns", "a"), 0);
  assert_null(amc_store_get(s, "Service", "ns", "a"));
  assert_int_equal(amc_store_revision(s), 5);
  assert_int_equal(n, 5);
  assert_string_equal(events.data, "ADDED Service/ns/a\n"
                                   "MODIFIED Service/ns/a\n"
                                   "ADDED Namespace/-/ns\n"
                                   "ADDED Service/ns/z\n"
                                   "DELETED Service/ns/a\n");
  const char *const *kinds;
  assert_int_equal(amc_store_kinds(s, &kinds), 2);
  assert_string_equal(kinds[0], "Namespace");
  assert_string_equal(kinds[1], "Service");
  amc_store_free(s);
}

static amc_buf_t changes;

static void change_listener(const char *kind, const char *ns, const char *name,
                            amc_store_event_t ev, const char *old_json,
                            const char *new_json, void *data) {
  (void)data;
  static const char *const names[] = {"ADDED", "MODIFIED", "DELETED"};
  amc_buf_printf(&changes, "%s %s/%s/%s %s -> %s\n", names[ev], kind,
                 ns ? ns : "-", name, old_json ? old_json : "(none)",
                 new_json ? new_json : "(none)");
}

/* The change listener sees the JSON before and after (both listeners are
 * called); unchanged puts call neither. */
static void test_change_listener_old_and_new(void **state) {
  (void)state;
  amc_store_t *s = amc_store_new();
  int n = 0;
  amc_buf_reset(&changes);
  amc_store_set_listener(s, listener, &n);
  amc_store_set_change_listener(s, change_listener, NULL);
  put(s, "Service", "ns", "a", "{\"x\":1}", 1);
  put(s, "Service", "ns", "a", "{\"x\":1}", 0);
  put(s, "Service", "ns", "a", "{\"x\":2}", 1);
  assert_int_equal(amc_store_delete(s, "Service", "ns", "a"), 1);
  amc_store_set_change_listener(s, NULL, NULL);
  put(s, "Service", "ns", "b", "{}", 1);
  assert_string_equal(changes.data,
                      "ADDED Service/ns/a (none) -> {\"x\":1}\n"
                      "MODIFIED Service/ns/a {\"x\":1} -> {\"x\":2}\n"
                      "DELETED Service/ns/a {\"x\":2} -> (none)\n");
  assert_int_equal(n, 4);
  amc_buf_free(&changes);
  amc_store_free(s);
}

/* A Service-shaped object of some size (compressed against the kind's
 * first one), with `pad` extra label bytes. */
static void svc_json(char *out, size_t cap, int i, int pad, const char *app) {
  char extra[600];
  memset(extra, 'a' + i % 26, (size_t)pad);
  extra[pad] = '\0';
  snprintf(
      out, cap,
      "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{"
      "\"labels\":{\"app\":\"%s\",\"pad\":\"%s\"},\"name\":\"svc-%d\","
      "\"namespace\":\"ns\"},\"spec\":{\"ports\":[{\"name\":\"http\","
      "\"port\":80,\"targetPort\":%d}],\"selector\":{\"app\":\"svc-%d\"}}}",
      app, extra, i, 8000 + i, i);
}

static void test_compressed_objects(void **state) {
  (void)state;
  amc_store_t *s = amc_store_new();
  amc_buf_reset(&changes);
  amc_store_set_change_listener(s, change_listener, NULL);
  enum { N = 200 };
  static char want[N][1024];
  char name[32], rv[32];
  for (int i = 0; i < N; i++) {
    svc_json(want[i], sizeof want[i], i, i % 7, i % 2 ? "odd" : "even");
    snprintf(name, sizeof name, "svc-%d", i);
    snprintf(rv, sizeof rv, "rv-%d", i);
    assert_int_equal(amc_store_put_json(s, "Service", "ns", name, want[i],
                                        strlen(want[i]), rv, "f.yaml:1", NULL),
                     0);
  }
  /* the index is built over compressed objects */
  const char *const APP[] = {"metadata", "labels", "app"};
  const amc_store_obj_t *const *l;
  assert_int_equal(amc_store_find(s, "Service", NULL, APP, 3, "odd", &l),
                   N / 2);
  /* later objects are stored compressed: decompressed into the buffer */
  amc_buf_t b = AMC_BUF_INIT;
  const amc_store_obj_t *o = amc_store_get(s, "Service", "ns", "svc-150");
  size_t len = 0;
  const char *j = amc_store_json(o, &b, &len);
  assert_ptr_equal(j, b.data);
  assert_int_equal(len, strlen(want[150]));
  assert_string_equal(b.data, want[150]);
  /* a small object is stored as it is: a pointer into the store */
  put(s, "Service", "ns", "tiny", "{\"x\":1}", 1);
  o = amc_store_get(s, "Service", "ns", "tiny");
  j = amc_store_json(o, &b, &len);
  assert_ptr_not_equal(j, b.data);
  assert_string_equal(amc_store_json(o, &b, NULL), "{\"x\":1}");
  /* modifications: larger (a block of its own), smaller (back in the
   * entry), relabelled (moved in the index); rv and source kept apart */
  for (int i = 0; i < N; i++) {
    svc_json(want[i], sizeof want[i], i, i % 3 ? 500 : 1,
             i % 3 == 0 ? "odd" : "even");
    snprintf(name, sizeof name, "svc-%d", i);
    assert_int_equal(amc_store_put_json(s, "Service", "ns", name, want[i],
                                        strlen(want[i]), "rv-x", NULL, NULL),
                     0);
  }
  for (int i = 0; i < N; i += 2) {
    svc_json(want[i], sizeof want[i], i, 2, "odd");
    snprintf(name, sizeof name, "svc-%d", i);
    put(s, "Service", "ns", name, want[i], 1);
    put(s, "Service", "ns", name, want[i], 0);
  }
  size_t odd = 0;
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "svc-%d", i);
    o = amc_store_get(s, "Service", "ns", name);
    assert_non_null(o);
    assert_string_equal(obj_json(o), want[i]);
    assert_int_equal(o->json_len, strlen(want[i]));
    if (i % 2)
      assert_string_equal(o->resource_version, "rv-x");
    else
      assert_null(o->resource_version);
    assert_null(o->source);
    odd += i % 2 == 0 || i % 3 == 0;
  }
  assert_int_equal(amc_store_find(s, "Service", NULL, APP, 3, "odd", &l), odd);
  /* the change listener sees whole JSON before and after */
  amc_buf_reset(&changes);
  char old[1024];
  snprintf(old, sizeof old, "%s", want[9]); /* labelled odd */
  assert_int_equal(amc_store_delete(s, "Service", "ns", "svc-9"), 1);
  amc_buf_t w = AMC_BUF_INIT;
  amc_buf_printf(&w, "DELETED Service/ns/svc-9 %s -> (none)\n", old);
  assert_string_equal(changes.data, w.data);
  assert_int_equal(amc_store_find(s, "Service", NULL, APP, 3, "odd", &l),
                   odd - 1);
  amc_buf_free(&w);
  amc_buf_free(&b);
  amc_buf_free(&changes);
  amc_store_free(s);
}

/* A caller may put back what it read from the object itself: the stored
 * JSON (an object stored as is), its resourceVersion and source. */
static void test_put_back_own_fields(void **state) {
  (void)state;
  amc_store_t *s = amc_store_new();
  const char *json = "{\"x\":1}";
  assert_int_equal(amc_store_put_json(s, "Pod", "n", "p", json, strlen(json),
                                      "rv-1", "a.yaml:1", NULL),
                   0);
  const amc_store_obj_t *o = amc_store_get(s, "Pod", "n", "p");
  amc_buf_t b = AMC_BUF_INIT;
  size_t n;
  const char *j = amc_store_json(o, &b, &n);
  assert_ptr_not_equal(j, b.data); /* the store's own bytes */
  int changed = -1;
  /* same JSON, rv from the blob, a new source: the blob is rewritten */
  assert_int_equal(amc_store_put_json(s, "Pod", o->namespace_, o->name, j, n,
                                      o->resource_version, "b.yaml:2",
                                      &changed),
                   0);
  assert_int_equal(changed, 0);
  o = amc_store_get(s, "Pod", "n", "p");
  assert_string_equal(obj_json(o), "{\"x\":1}");
  assert_string_equal(o->resource_version, "rv-1");
  assert_string_equal(o->source, "b.yaml:2");
  assert_int_equal(amc_store_put_json(s, "Pod", o->namespace_, o->name, j, n,
                                      "rv-2", o->source, &changed),
                   0);
  o = amc_store_get(s, "Pod", "n", "p");
  assert_string_equal(o->resource_version, "rv-2");
  assert_string_equal(o->source, "b.yaml:2");
  assert_string_equal(obj_json(o), "{\"x\":1}");
  amc_buf_free(&b);
  amc_store_free(s);
}

static void test_list_sorted_and_by_namespace(void **state) {
  (void)state;
  amc_store_t *s = amc_store_new();
  const char *ids[][2] = {{"b", "y"}, {"a", "z"}, {"b", "a"},
                          {"c", "m"}, {"a", "a"}, {"aa", "q"}};
  for (size_t i = 0; i < 6; i++)
    put(s, "Svc", ids[i][0], ids[i][1], "{}", 1);
  const amc_store_obj_t *const *l;
  size_t n = amc_store_list(s, "Svc", NULL, &l);
  assert_int_equal(n, 6);
  amc_buf_t b = AMC_BUF_INIT;
  for (size_t i = 0; i < n; i++)
    amc_buf_printf(&b, "%s/%s ", l[i]->namespace_, l[i]->name);
  assert_string_equal(b.data, "a/a a/z aa/q b/a b/y c/m ");
  amc_buf_reset(&b);
  n = amc_store_list(s, "Svc", "b", &l);
  assert_int_equal(n, 2);
  for (size_t i = 0; i < n; i++)
    amc_buf_printf(&b, "%s/%s ", l[i]->namespace_, l[i]->name);
  assert_string_equal(b.data, "b/a b/y ");
  assert_int_equal(amc_store_list(s, "Svc", "zz", &l), 0);
  assert_int_equal(amc_store_list(s, "Svc", "", &l), 0);
  assert_int_equal(amc_store_list(s, "Nope", NULL, &l), 0);
  /* Deletes keep the order; adds after a list are sorted in again. */
  assert_int_equal(amc_store_delete(s, "Svc", "aa", "q"), 1);
  put(s, "Svc", "a", "m", "{}", 1);
  amc_buf_reset(&b);
  n = amc_store_list(s, "Svc", NULL, &l);
  for (size_t i = 0; i < n; i++)
    amc_buf_printf(&b, "%s/%s ", l[i]->namespace_, l[i]->name);
  assert_string_equal(b.data, "a/a a/m a/z b/a b/y c/m ");
  /* Delete from an unsorted vector. */
  put(s, "Svc", "a", "b", "{}", 1);
  assert_int_equal(amc_store_delete(s, "Svc", "c", "m"), 1);
  amc_buf_reset(&b);
  n = amc_store_list(s, "Svc", "a", &l);
  for (size_t i = 0; i < n; i++)
    amc_buf_printf(&b, "%s/%s ", l[i]->namespace_, l[i]->name);
  assert_string_equal(b.data, "a/a a/b a/m a/z ");
  amc_buf_free(&b);
  amc_store_free(s);
}

static void test_many_objects(void **state) {
  (void)state;
  amc_store_t *s = amc_store_new();
  char ns[32], name[32];
  for (int i = 0; i < 20000; i++) {
    snprintf(ns, sizeof ns, "ns%d", i % 7);
    snprintf(name, sizeof name, "obj%05d", (i * 7919) % 20000);
    put(s, "EndpointSlice", ns, name, "{\"a\":1}", 1);
  }
  assert_int_equal(amc_store_count(s, NULL), 20000);
  const amc_store_obj_t *const *l;
  size_t n = amc_store_list(s, "EndpointSlice", NULL, &l);
  assert_int_equal(n, 20000);
  for (size_t i = 1; i < n; i++) {
    int c = strcmp(l[i - 1]->namespace_, l[i]->namespace_);
    assert_true(c < 0 || (c == 0 && strcmp(l[i - 1]->name, l[i]->name) < 0));
  }
  for (int i = 0; i < 20000; i += 2) {
    snprintf(ns, sizeof ns, "ns%d", i % 7);
    snprintf(name, sizeof name, "obj%05d", (i * 7919) % 20000);
    assert_non_null(amc_store_get(s, "EndpointSlice", ns, name));
    assert_int_equal(amc_store_delete(s, "EndpointSlice", ns, name), 1);
  }
  assert_int_equal(amc_store_count(s, "EndpointSlice"), 10000);
  amc_store_free(s);
}

static void test_put_lua_strips_and_restores(void **state) {
  (void)state;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  amc_store_t *s = amc_store_new();
  const char *code =
      "return {apiVersion = 'v1', kind = 'Service', "
      "metadata = {name = 'a', namespace = 'ns', resourceVersion = '42', "
      "managedFields = {{manager = 'kubectl'}}, "
      "annotations = {['kubectl.kubernetes.io/last-applied-configuration'] = "
      "'{...}', keep = 'yes'}}, spec = {ports = {{port = 80}}}, "
      "status = {loadBalancer = {}}}";
  assert_int_equal(luaL_dostring(L, code), LUA_OK);
  char err[256];
  int changed = 0;
  assert_int_equal(
      amc_store_put_lua(s, L, -1, "f.yaml:3", &changed, err, sizeof err), 0);
  assert_int_equal(changed, 1);
  assert_int_equal(lua_gettop(L), 1);
  const amc_store_obj_t *o = amc_store_get(s, "Service", "ns", "a");
  assert_non_null(o);
  assert_string_equal(
      obj_json(o), "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":"
                   "{\"annotations\":{\"keep\":\"yes\"},\"name\":\"a\","
                   "\"namespace\":\"ns\",\"resourceVersion\":\"42\"},"
                   "\"spec\":{\"ports\":[{\"port\":80}]}}");
  assert_string_equal(o->resource_version, "42");
  assert_string_equal(o->source, "f.yaml:3");
  /* The caller's table is as it was. */
  lua_setglobal(L, "obj");
  assert_int_equal(
      luaL_dostring(L, "assert(obj.status and obj.metadata.managedFields and "
                       "obj.metadata.annotations['kubectl.kubernetes.io/"
                       "last-applied-configuration'] == '{...}')"),
      LUA_OK);
  /* Only a status change: not a change for the store. */
  assert_int_equal(luaL_dostring(L, "obj.status.x = 1 obj.metadata."
                                    "resourceVersion = '42' return obj"),
                   LUA_OK);
  assert_int_equal(amc_store_put_lua(s, L, -1, NULL, &changed, err, sizeof err),
                   0);
  assert_int_equal(changed, 0);
  lua_pop(L, 1);
  /* Errors name the object and the field. */
  assert_int_equal(
      luaL_dostring(L, "return {kind = 'Pod', metadata = {name = 'p', "
                       "namespace = 'n'}, spec = {f = print}}"),
      LUA_OK);
  assert_int_equal(amc_store_put_lua(s, L, -1, NULL, &changed, err, sizeof err),
                   -1);
  assert_string_equal(err, "Pod n/p: spec.f: cannot encode a function");
  lua_pop(L, 1);
  assert_int_equal(luaL_dostring(L, "return {kind = 'Pod', metadata = {}}"),
                   LUA_OK);
  assert_int_equal(amc_store_put_lua(s, L, -1, NULL, &changed, err, sizeof err),
                   -1);
  assert_string_equal(err, "Pod has no metadata.name");
  lua_pop(L, 1);
  /* A Pod keeps its status: podIP and readiness are inputs. */
  assert_int_equal(
      luaL_dostring(L, "return {kind = 'Pod', metadata = {name = 'p', "
                       "namespace = 'n'}, status = {podIP = '10.0.0.1'}}"),
      LUA_OK);
  assert_int_equal(amc_store_put_lua(s, L, -1, NULL, &changed, err, sizeof err),
                   0);
  assert_string_equal(obj_json(amc_store_get(s, "Pod", "n", "p")),
                      "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\","
                      "\"namespace\":\"n\"},\"status\":{\"podIP\":"
                      "\"10.0.0.1\"}}");
  lua_pop(L, 1);
  /* push decodes a fresh copy each time. */
  o = amc_store_get(s, "Service", "ns", "a");
  assert_int_equal(amc_store_push(L, o, err, sizeof err), 0);
  assert_int_equal(amc_store_push(L, o, err, sizeof err), 0);
  assert_false(lua_rawequal(L, -1, -2));
  lua_settop(L, 0);
  amc_store_free(s);
  lua_close(L);
}

/* "ns/name ns/name ..." of a find's result. */
static const char *found(amc_store_t *s, const char *kind, const char *ns,
                         const char *const *path, size_t depth,
                         const char *value) {
  static amc_buf_t b;
  amc_buf_reset(&b);
  amc_buf_puts(&b, "");
  const amc_store_obj_t *const *l;
  size_t n = amc_store_find(s, kind, ns, path, depth, value, &l);
  for (size_t i = 0; i < n; i++)
    amc_buf_printf(&b, "%s%s/%s", i ? " " : "",
                   l[i]->namespace_ ? l[i]->namespace_ : "-", l[i]->name);
  return b.data;
}

static const char *const GWS[] = {"spec", "gateways"};

static void test_find_by_field(void **state) {
  (void)state;
  amc_store_t *s = amc_store_new();
  put(s, "VirtualService", "b", "v1",
      "{\"spec\":{\"gateways\":[\"gw\",\"istio-system/gw\",\"gw\"]}}", 1);
  put(s, "VirtualService", "a", "v2",
      "{\"spec\":{\"gateways\":[\"istio-system/gw\"],\"hosts\":[\"x\"]}}", 1);
  put(s, "VirtualService", "a", "v1", "{\"spec\":{\"gateways\":\"gw\"}}", 1);
  put(s, "VirtualService", "a", "v0", "{\"spec\":{\"gateways\":[1,{}]}}", 1);
  put(s, "VirtualService", "a", "v3", "{\"spec\":{}}", 1);
  put(s, "VirtualService", "a", "v4", "{\"spec\":[\"gw\"]}", 1);
  put(s, "Gateway", "a", "gw", "{\"spec\":{\"gateways\":[\"gw\"]}}", 1);
  /* strings and string elements of arrays match, sorted, once each */
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 2, "gw"),
                      "a/v1 b/v1");
  assert_string_equal(
      found(s, "VirtualService", NULL, GWS, 2, "istio-system/gw"), "a/v2 b/v1");
  assert_string_equal(found(s, "VirtualService", "b", GWS, 2, "gw"), "b/v1");
  assert_string_equal(found(s, "VirtualService", "c", GWS, 2, "gw"), "");
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 2, "1"), "");
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 2, "g"), "");
  assert_string_equal(found(s, "Pod", NULL, GWS, 2, "gw"), "");
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 0, "gw"), "");

  /* kept current: add (out of order), modify, delete */
  put(s, "VirtualService", "a", "v0", "{\"spec\":{\"gateways\":[\"gw\"]}}", 1);
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 2, "gw"),
                      "a/v0 a/v1 b/v1");
  put(s, "VirtualService", "a", "v1", "{\"spec\":{\"gateways\":[\"o\"]}}", 1);
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 2, "gw"),
                      "a/v0 b/v1");
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 2, "o"), "a/v1");
  put(s, "VirtualService", "a", "v1",
      "{\"other\":1,\"spec\":{\"gateways\":[\"o\"]}}", 1);
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 2, "o"), "a/v1");
  put(s, "VirtualService", "0", "v9", "{\"spec\":{\"gateways\":[\"o\"]}}", 1);
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 2, "o"),
                      "0/v9 a/v1");
  assert_int_equal(amc_store_delete(s, "VirtualService", "b", "v1"), 1);
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 2, "gw"), "a/v0");
  assert_string_equal(
      found(s, "VirtualService", NULL, GWS, 2, "istio-system/gw"), "a/v2");
  assert_int_equal(amc_store_delete(s, "VirtualService", "a", "v0"), 1);
  assert_string_equal(found(s, "VirtualService", NULL, GWS, 2, "gw"), "");
  amc_store_free(s);
}

static void test_find_labels_and_escapes(void **state) {
  (void)state;
  amc_store_t *s = amc_store_new();
  static const char *const svc[] = {"metadata", "labels",
                                    "kubernetes.io/service-name"};
  put(s, "EndpointSlice", "ns", "a-1",
      "{\"metadata\":{\"labels\":{\"kubernetes.io/service-name\":\"a\"},"
      "\"name\":\"a-1\"}}",
      1);
  put(s, "EndpointSlice", "ns", "b-1",
      "{\"metadata\":{\"labels\":{\"kubernetes.io/service-name\":\"b\\\"q\\\\"
      "\\u00e9\\ud83d\\ude00\"},\"name\":\"b-1\"}}",
      1);
  put(s, "EndpointSlice", "ns", "c-1",
      "{\"metadata\":{\"labels\":{\"kubernetes.io\":{\"service-name\":"
      "\"a\"}}}}",
      1);
  assert_string_equal(found(s, "EndpointSlice", "ns", svc, 3, "a"), "ns/a-1");
  assert_string_equal(
      found(s, "EndpointSlice", "ns", svc, 3, "b\"q\\\xc3\xa9\xf0\x9f\x98\x80"),
      "ns/b-1");
  amc_store_free(s);
}

/* A field index agrees with a scan after random puts and deletes, and
 * survives being dropped when rules ask for many paths. */
/* Random puts and deletes of objects with values from nvals ("v0"...),
 * checked against a scan after each: few values make large buckets, many
 * make buckets of one object (kept inline) that grow and shrink. */
static void find_random(int nvals) {
  amc_store_t *s = amc_store_new();
  char vals[64][16];
  for (int i = 0; i < nvals; i++)
    snprintf(vals[i], sizeof vals[i], "v%d", i);
  srand(7);
  char json[200], name[16], ns[4];
  for (int round = 0; round < 2000; round++) {
    snprintf(name, sizeof name, "o%d", rand() % 40);
    snprintf(ns, sizeof ns, "n%d", rand() % 3);
    if (rand() % 5 == 0) {
      amc_store_delete(s, "K", ns, name);
    } else {
      int a = rand() % nvals, b = rand() % (nvals + 1);
      snprintf(json, sizeof json, "{\"spec\":{\"v\":[\"%s\",\"%s\"]}}", vals[a],
               b < nvals ? vals[b] : "z");
      amc_store_put_json(s, "K", ns, name, json, strlen(json), NULL, NULL,
                         NULL);
    }
    if (round % 50 == 0) { /* other paths: the index may be dropped */
      for (int i = 0; i < 20; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", (round / 50 + i) % 30);
        const char *path[] = {"spec", key};
        const amc_store_obj_t *const *l;
        amc_store_find(s, "K", NULL, path, 2, "v0", &l);
      }
    }
    static const char *const V[] = {"spec", "v"};
    const char *want_ns = round % 2 ? "n1" : NULL;
    const char *v = vals[round % nvals];
    amc_buf_t want = AMC_BUF_INIT;
    amc_buf_puts(&want, "");
    const amc_store_obj_t *const *all;
    size_t n = amc_store_list(s, "K", want_ns, &all);
    char needle[16];
    snprintf(needle, sizeof needle, "\"%s\"", v);
    for (size_t i = 0, k = 0; i < n; i++) {
      if (strstr(obj_json(all[i]), needle))
        amc_buf_printf(&want, "%s%s/%s", k++ ? " " : "", all[i]->namespace_,
                       all[i]->name);
    }
    assert_string_equal(found(s, "K", want_ns, V, 2, v), want.data);
    amc_buf_free(&want);
  }
  amc_store_free(s);
}

static void test_find_random(void **state) {
  (void)state;
  find_random(3);
  find_random(60);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_get_delete_revisions),
      cmocka_unit_test(test_change_listener_old_and_new),
      cmocka_unit_test(test_compressed_objects),
      cmocka_unit_test(test_put_back_own_fields),
      cmocka_unit_test(test_list_sorted_and_by_namespace),
      cmocka_unit_test(test_many_objects),
      cmocka_unit_test(test_put_lua_strips_and_restores),
      cmocka_unit_test(test_find_by_field),
      cmocka_unit_test(test_find_labels_and_escapes),
      cmocka_unit_test(test_find_random),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  amc_buf_free(&events);
  return rc;
}
