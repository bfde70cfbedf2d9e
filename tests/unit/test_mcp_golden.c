/* test_mcp_golden.c - the golden check across sources: the same Istio
 * objects as fs:// YAML (tests/fakes/mcp/fixtures/), as Kubernetes JSON
 * (golden/fixtures.json) and as MCP protobuf (golden/<kind>-<ns>-<name>.pb,
 * encoded by python3-protobuf; regenerate with tests/fakes/mcp/make_golden.py)
 * must be byte-identical canonical JSON in the store - which is all the rules
 * (and so `amc translate`) ever see. The protobuf path goes through the MCP
 * store adapter, as in `amc run`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"
#include "mcp/mcp_store.h"
#include "store.h"
#include "util/buf.h"

#include "obj_json.h"

#define FIXDIR AMC_SOURCE_DIR "/tests/fakes/mcp/"

static int put_cb(lua_State *L, const char *source, void *data, char *err,
                  size_t errlen) {
  return amc_store_put_lua(data, L, -1, source, NULL, err, errlen);
}

static amc_store_t *load(lua_State *L, const char *path) {
  amc_store_t *s = amc_store_new();
  char err[512];
  if (amc_loader_load_path(L, path, NULL, put_cb, s, err, sizeof err) < 0)
    fail_msg("%s", err);
  return s;
}

static amc_store_t *load_pb(void) {
  amc_store_t *s = amc_store_new();
  amc_mcp_store_t ms;
  amc_mcp_store_init(&ms, s);
  const amc_mcp_ops_t *ops = amc_mcp_store_ops();
  amc_mcp_conv_t conv;
  assert_int_equal(amc_mcp_conv_init(&conv), 0);
  DIR *d = opendir(FIXDIR "golden");
  assert_non_null(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l < 4 || strcmp(e->d_name + l - 3, ".pb"))
      continue;
    char path[1024];
    snprintf(path, sizeof path, FIXDIR "golden/%s", e->d_name);
    amc_buf_t b = AMC_BUF_INIT;
    assert_int_equal(amc_buf_read_file(&b, path), 0);
    amc_mcp_item_t it;
    char err[512];
    if (amc_mcp_conv_resource(&conv, (const uint8_t *)b.data, b.len, NULL, 0,
                              &it, err, sizeof err) < 0)
      fail_msg("%s: %s", path, err);
    amc_mcp_object_t o = amc_mcp_item_object(&it);
    ops->on_upsert(&ms, it.kind->kind, &o);
    amc_mcp_item_clear(&it);
    amc_buf_free(&b);
    n++;
  }
  closedir(d);
  amc_mcp_conv_free(&conv);
  assert_int_equal(n, 4);
  return s;
}

static void same(amc_store_t *a, amc_store_t *b, const char *what) {
  const char *kinds[] = {"Gateway", "VirtualService", "DestinationRule",
                         "ServiceEntry"};
  size_t total = 0;
  for (size_t k = 0; k < 4; k++) {
    const amc_store_obj_t *const *la, *const *lb;
    size_t na = amc_store_list(a, kinds[k], NULL, &la);
    size_t nb = amc_store_list(b, kinds[k], NULL, &lb);
    if (na != nb)
      fail_msg("%s: %zu vs %zu %s objects", what, na, nb, kinds[k]);
    for (size_t i = 0; i < na; i++) {
      if (strcmp(la[i]->name, lb[i]->name) ||
          la[i]->json_len != lb[i]->json_len ||
          strcmp(obj_json(la[i]), obj_json(lb[i])))
        fail_msg("%s: %s %s differs:\n%s\n%s", what, kinds[k], la[i]->name,
                 obj_json(la[i]), obj_json(lb[i]));
      assert_string_equal(la[i]->resource_version, lb[i]->resource_version);
    }
    total += na;
  }
  assert_int_equal(total, 4);
}

static void test_yaml_json_and_protobuf_agree(void **state) {
  lua_State *L = luaL_newstate();
  amc_store_t *yaml = load(L, FIXDIR "fixtures");
  amc_store_t *json = load(L, FIXDIR "golden/fixtures.json");
  amc_store_t *pb = load_pb();
  same(yaml, json, "YAML vs Kubernetes JSON");
  same(yaml, pb, "YAML vs MCP protobuf");
  amc_store_free(yaml);
  amc_store_free(json);
  amc_store_free(pb);
  lua_close(L);
}

static int synced_calls;
static void count_synced(void *data) {
  (*(int *)data)++;
}

static void test_store_adapter_replace_and_delete(void **state) {
  amc_store_t *s = amc_store_new();
  /* an object of the same kind from another source is never touched */
  const char *other = "{\"kind\":\"Gateway\"}";
  assert_int_equal(amc_store_put_json(s, "Gateway", "ns", "from-kube", other,
                                      strlen(other), "1", "kube", NULL),
                   0);
  amc_mcp_store_t ms;
  amc_mcp_store_init(&ms, s);
  const amc_mcp_ops_t *ops = amc_mcp_store_ops();
  amc_mcp_object_t set1[] = {{"ns", "a", "{\"a\":1}", 7, "5"},
                             {"ns", "b", "{\"b\":1}", 7, NULL}};
  ops->on_replace(&ms, "Gateway", set1, 2);
  assert_int_equal(amc_store_count(s, "Gateway"), 3);
  assert_int_equal(ms.changes, 2);
  assert_string_equal(amc_store_get(s, "Gateway", "ns", "a")->resource_version,
                      "5");
  /* same set again: nothing changes */
  ops->on_replace(&ms, "Gateway", set1, 2);
  assert_int_equal(ms.changes, 2);
  /* b gone, a changed */
  amc_mcp_object_t set2[] = {{"ns", "a", "{\"a\":2}", 7, "6"}};
  ops->on_replace(&ms, "Gateway", set2, 1);
  assert_int_equal(ms.changes, 4);
  assert_null(amc_store_get(s, "Gateway", "ns", "b"));
  assert_non_null(amc_store_get(s, "Gateway", "ns", "from-kube"));
  /* empty set deletes only what MCP put */
  ops->on_replace(&ms, "Gateway", NULL, 0);
  assert_int_equal(amc_store_count(s, "Gateway"), 1);
  ops->on_delete(&ms, "Gateway", "ns", "from-kube");
  assert_int_equal(amc_store_count(s, "Gateway"), 1);
  ops->on_upsert(&ms, "Gateway", &set2[0]);
  ops->on_delete(&ms, "Gateway", "ns", "a");
  assert_int_equal(amc_store_count(s, "Gateway"), 1);
  assert_false(amc_mcp_store_synced(&ms));
  ms.on_synced_all = count_synced;
  ms.data = &synced_calls;
  const char *kinds[] = {"Gateway", "VirtualService", "DestinationRule",
                         "ServiceEntry"};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(synced_calls, 0);
    ops->on_synced(&ms, kinds[i]);
  }
  assert_true(amc_mcp_store_synced(&ms));
  assert_int_equal(synced_calls, 1);
  ops->on_synced(&ms, kinds[0]); /* after a reconnect: not again */
  assert_int_equal(synced_calls, 1);
  amc_store_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_yaml_json_and_protobuf_agree),
      cmocka_unit_test(test_store_adapter_replace_and_delete),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
