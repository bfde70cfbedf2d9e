/* test_avi_plan.c - runtime/avi/plan: ownership, refs, comparison, cache,
 * plan order, leftovers, gc, bodies. No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "avi/client.h"
#include "avi/plan.h"
#include "json.h"

static const amc_avi_owner_t own = {"c1", "admin"};

/* An object as the controller returns it, owned by amc for gateway `gw`. */
#define OWNED(gw, name, uuid)                                                  \
  "{\"created_by\":\"amc-c1\",\"markers\":[{\"key\":\"gateway\","              \
  "\"values\":[\"" gw "\"]}],\"name\":\"" name "\",\"uuid\":\"" uuid "\"}"

static lua_State *newL(void) {
  lua_State *L = luaL_newstate();
  luaL_checkstack(L, AMC_JSON_MAX_DEPTH + 32, NULL);
  return L;
}

static void push(lua_State *L, const char *json) {
  char err[200];
  if (amc_json_decode(L, json, strlen(json), err, sizeof err) != 0)
    fail_msg("bad test JSON: %s", err);
}

/* Puts a server object into the cache. */
static int put(amc_avi_cache_t *c, lua_State *L, const char *type,
               const char *json) {
  push(L, json);
  int rc = amc_avi_cache_put(c, L, &own, type, "admin");
  lua_pop(L, 1);
  return rc;
}

static amc_avi_object_t obj(const char *type, const char *name,
                            const char *json) {
  amc_avi_object_t o = {.type = (char *)type,
                        .name = (char *)name,
                        .json = (char *)json,
                        .json_len = strlen(json)};
  return o;
}

#define MARKS(gw)                                                              \
  "\"markers\":[{\"key\":\"clustername\",\"values\":[\"c1\"]},"                \
  "{\"key\":\"gateway\",\"values\":[\"" gw "\"]}]"

static void test_ownership(void **state) {
  (void)state;
  lua_State *L = newL();
  push(L, "{\"name\":\"p\",\"created_by\":\"amc-c1\"}");
  assert_true(amc_avi_owned(L, -1, &own, "pool"));
  push(L, "{\"name\":\"p\",\"created_by\":\"ako-c1\"," MARKS("ns/gw") "}");
  assert_false(amc_avi_owned(L, -1, &own, "pool")); /* markers don't count */
  push(L, "{\"name\":\"p\",\"created_by\":\"amc-c10\"}");
  assert_false(amc_avi_owned(L, -1, &own, "pool"));
  /* No created_by on vsvip: markers AND name prefix. */
  push(L, "{\"name\":\"amc--c1--ns--gw\"," MARKS("ns/gw") "}");
  assert_true(amc_avi_owned(L, -1, &own, "vsvip"));
  push(L, "{\"name\":\"someone-else\"," MARKS("ns/gw") "}");
  assert_false(amc_avi_owned(L, -1, &own, "vsvip"));
  push(L, "{\"name\":\"amc--c1--ns--gw\"}");
  assert_false(amc_avi_owned(L, -1, &own, "healthmonitor"));
  lua_close(L);
}

static void test_ref_parse(void **state) {
  (void)state;
  char t[64], n[256];
  assert_int_equal(
      amc_avi_ref_parse("/api/pool?name=a%20b", t, sizeof t, n, sizeof n), 0);
  assert_string_equal(t, "pool");
  assert_string_equal(n, "a b");
  assert_int_equal(
      amc_avi_ref_parse("/api/pool/?name=x&fields=a", t, sizeof t, n, sizeof n),
      0);
  assert_string_equal(n, "x");
  assert_int_equal(amc_avi_ref_parse("https://h:9/api/vsvip/vsvip-1#v1", t,
                                     sizeof t, n, sizeof n),
                   0);
  assert_string_equal(t, "vsvip");
  assert_string_equal(n, "v1");
  assert_int_equal(
      amc_avi_ref_parse("/api/tenant/admin", t, sizeof t, n, sizeof n), 0);
  assert_string_equal(n, "admin");
  assert_int_equal(amc_avi_ref_parse("hello", t, sizeof t, n, sizeof n), -1);
  assert_int_equal(amc_avi_ref_parse("/api/", t, sizeof t, n, sizeof n), -1);
}

static int subset(const char *d, const char *s) {
  lua_State *L = newL();
  push(L, d);
  push(L, s);
  int r = amc_avi_subset(L, -2, -1);
  assert_int_equal(lua_gettop(L), 2); /* balanced stack */
  lua_close(L);
  return r;
}

static void test_subset(void **state) {
  (void)state;
  /* Server-filled fields and defaults are ignored. */
  assert_true(subset("{\"a\":1}", "{\"a\":1,\"uuid\":\"x\",\"b\":true}"));
  assert_false(subset("{\"a\":1}", "{\"a\":2}"));
  assert_false(subset("{\"a\":1}", "{}"));
  /* Integral float equals integer. */
  assert_true(subset("{\"a\":1}", "{\"a\":1.0}"));
  /* Refs compare by type and name. */
  assert_true(subset("{\"r\":\"/api/pool?name=p1\"}",
                     "{\"r\":\"https://h/api/pool/pool-9#p1\"}"));
  assert_false(subset("{\"r\":\"/api/pool?name=p1\"}",
                      "{\"r\":\"https://h/api/pool/pool-9#p2\"}"));
  assert_false(subset("{\"r\":\"/api/pool?name=p1\"}",
                      "{\"r\":\"https://h/api/poolgroup/pg-9#p1\"}"));
  /* Arrays: same length, element-wise subset, in order. */
  assert_true(subset("{\"s\":[{\"ip\":1},{\"ip\":2}]}",
                     "{\"s\":[{\"ip\":1,\"ratio\":1},{\"ip\":2,\"r\":1}]}"));
  assert_false(
      subset("{\"s\":[{\"ip\":1}]}", "{\"s\":[{\"ip\":1},{\"ip\":2}]}"));
  assert_false(subset("{\"s\":[{\"ip\":2},{\"ip\":1}]}",
                      "{\"s\":[{\"ip\":1},{\"ip\":2}]}"));
  /* A missing server list equals an empty desired one; null is "unset". */
  assert_true(subset("{\"l\":[],\"n\":null}", "{}"));
  /* Secrets the server hides match anything. */
  assert_true(subset("{\"key\":\"-----BEGIN\"}", "{\"key\":\"<sensitive>\"}"));
  assert_false(subset("{\"b\":true}", "{\"b\":false}"));
  assert_false(subset("{\"x\":\"1\"}", "{\"x\":1}"));
}

static void test_cksum_stable(void **state) {
  (void)state;
  char a[17], b[17], c[17];
  amc_avi_cksum("{\"a\":1}", 7, a);
  amc_avi_cksum("{\"a\":1}", 7, b);
  amc_avi_cksum("{\"a\":2}", 7, c);
  assert_string_equal(a, b);
  assert_string_not_equal(a, c);
  assert_int_equal(strlen(a), 16);
  /* FNV-1a 64 of "" is the offset basis. */
  amc_avi_cksum("", 0, a);
  assert_string_equal(a, "cbf29ce484222325");
}

static void test_desired_body_adds_cksum(void **state) {
  (void)state;
  lua_State *L = newL();
  const char *j = "{\"name\":\"p\"," MARKS("ns/gw") "}";
  amc_avi_step_t st = {0};
  char err[200];
  assert_int_equal(amc_avi_desired_body(L, j, strlen(j), &st, err, sizeof err),
                   0);
  char ck[17];
  amc_avi_cksum(j, strlen(j), ck);
  char expect[512];
  snprintf(expect, sizeof expect,
           "{\"markers\":[{\"key\":\"clustername\",\"values\":[\"c1\"]},"
           "{\"key\":\"gateway\",\"values\":[\"ns/gw\"]},"
           "{\"key\":\"amc-cksum\",\"values\":[\"%s\"]}],\"name\":\"p\"}",
           ck);
  assert_string_equal(st.body, expect);
  assert_string_equal(st.cksum, ck);
  amc_avi_step_free(&st);
  /* Without markers, the list is created. */
  const char *j2 = "{\"name\":\"q\"}";
  assert_int_equal(
      amc_avi_desired_body(L, j2, strlen(j2), &st, err, sizeof err), 0);
  assert_non_null(strstr(st.body, "\"markers\":[{\"key\":\"amc-cksum\""));
  amc_avi_step_free(&st);
  assert_int_equal(lua_gettop(L), 0);
  lua_close(L);
}

static void test_redacted(void **state) {
  (void)state;
  lua_State *L = newL();
  const char *b =
      "{\"certificate\":{\"certificate\":\"PEM\"},\"key\":\"SECRET\","
      "\"key_passphrase\":\"PW\"," MARKS("ns/gw") ",\"name\":\"c\"}";
  char *r = amc_avi_redacted(L, "sslkeyandcertificate", b, strlen(b));
  assert_null(strstr(r, "SECRET"));
  assert_null(strstr(r, "\"PW\""));
  assert_non_null(strstr(r, "\"key\":\"<sensitive>\""));
  assert_non_null(strstr(r, "\"key\":\"clustername\"")); /* markers intact */
  assert_non_null(strstr(r, "\"certificate\":\"PEM\""));
  free(r);
  lua_close(L);
}

static void test_cache_put(void **state) {
  (void)state;
  lua_State *L = newL();
  amc_avi_cache_t c;
  amc_avi_cache_init(&c);
  assert_int_equal(put(&c, L, "pool",
                       "{\"name\":\"p\",\"uuid\":\"pool-1\",\"created_by\":"
                       "\"amc-c1\",\"tenant_ref\":\"https://h/api/tenant/"
                       "tenant-9#t1\",\"markers\":[{\"key\":\"gateway\","
                       "\"values\":[\"ns/gw\"]},{\"key\":\"amc-cksum\","
                       "\"values\":[\"00000000000000ff\"]}]}"),
                   1);
  amc_avi_entry_t *e = amc_avi_cache_get(&c, "pool", "t1", "p");
  assert_non_null(e);
  assert_string_equal(e->type, "pool");
  assert_string_equal(e->tenant, "t1");
  assert_string_equal(e->name, "p");
  char ub[AMC_AVI_UUID_BUF];
  assert_string_equal(amc_avi_entry_uuid(e, ub), "pool-1");
  assert_string_equal(amc_avi_entry_cksum(e), "00000000000000ff");
  assert_string_equal(e->gateway, "ns/gw");
  /* With our checksum the controller's copy is not kept. */
  assert_null(e->json);
  /* A checksum that is not ours (not 16 hex): compared field by field,
   * so the copy is kept. */
  assert_int_equal(put(&c, L, "pool",
                       "{\"name\":\"q\",\"created_by\":\"amc-c1\","
                       "\"markers\":[{\"key\":\"amc-cksum\","
                       "\"values\":[\"00ff\"]}]}"),
                   1);
  e = amc_avi_cache_get(&c, "pool", "admin", "q");
  assert_non_null(e);
  assert_null(amc_avi_entry_cksum(e));
  assert_null(amc_avi_entry_uuid(e, ub));
  assert_non_null(e->json);
  assert_non_null(strstr(e->json, "\"created_by\":\"amc-c1\""));
  /* Interned: one copy of the type for all entries. */
  assert_ptr_equal(e->type, amc_avi_cache_get(&c, "pool", "t1", "p")->type);
  amc_avi_cache_del(&c, "pool", "admin", "q");
  assert_null(amc_avi_cache_get(&c, "pool", "admin", "p"));
  /* Not owned: not stored. */
  assert_int_equal(put(&c, L, "pool", "{\"name\":\"x\",\"uuid\":\"pool-2\"}"),
                   0);
  assert_null(amc_avi_cache_get(&c, "pool", "admin", "x"));
  assert_int_equal(put(&c, L, "pool", "{\"uuid\":\"pool-3\"}"), -1);
  /* Child VS rank after parent. */
  assert_true(amc_avi_rank("virtualservice", 1) >
              amc_avi_rank("virtualservice", 0));
  assert_true(amc_avi_rank("vsvip", 0) < amc_avi_rank("pool", 0));
  assert_true(amc_avi_rank("pool", 0) < amc_avi_rank("poolgroup", 0));
  assert_true(amc_avi_rank("poolgroup", 0) < amc_avi_rank("httppolicyset", 0));
  assert_int_equal(amc_avi_rank("cloud", 0), -1);
  assert_int_equal(amc_avi_cache_count(&c), 1);
  amc_avi_cache_clear(&c);
  lua_close(L);
}

#define POOL(n, extra)                                                         \
  "{\"created_by\":\"amc-c1\"," MARKS("ns/gw") ",\"name\":\"" n "\"" extra "}"

/* AVI's own uuid form is kept as 16 bytes and comes back the same; any
 * other form is kept as it is. */
static void test_cache_uuid_forms(void **state) {
  (void)state;
  lua_State *L = newL();
  amc_avi_cache_t c;
  amc_avi_cache_init(&c);
  static const char *const uuids[] = {
      "virtualservice-0a1b2c3d-4e5f-4a6b-8c9d-0e1f2a3b4c5d",  /* packed */
      "virtualservice-0A1B2C3D-4E5F-4A6B-8C9D-0E1F2A3B4C5D",  /* upper */
      "pool-0a1b2c3d-4e5f-4a6b-8c9d-0e1f2a3b4c5d",            /* other type */
      "virtualservice-0a1b2c3d-4e5f-4a6b-8c9d-0e1f2a3b4c5",   /* short */
      "virtualservice-0a1b2c3d-4e5f-4a6b-8c9d-0e1f2a3b4c5dd", /* long */
      "virtualservice-0a1b2c3d-4e5f-4a6b-8c9d_0e1f2a3b4c5d",  /* not '-' */
      "virtualservice-0a1b2c3g-4e5f-4a6b-8c9d-0e1f2a3b4c5d",  /* not hex */
      "",
  };
  for (size_t i = 0; i < sizeof uuids / sizeof *uuids; i++) {
    char json[256], name[16], ub[AMC_AVI_UUID_BUF];
    snprintf(name, sizeof name, "vs%zu", i);
    snprintf(json, sizeof json,
             "{\"name\":\"%s\",\"uuid\":\"%s\",\"created_by\":\"amc-c1\"}",
             name, uuids[i]);
    assert_int_equal(put(&c, L, "virtualservice", json), 1);
    amc_avi_entry_t *e = amc_avi_cache_get(&c, "virtualservice", "admin", name);
    assert_non_null(e);
    assert_int_equal(e->uuid_form, i == 0 ? 1 : 2);
    assert_string_equal(amc_avi_entry_uuid(e, ub), uuids[i]);
  }
  amc_avi_cache_clear(&c);
  lua_close(L);
}

static void test_plan_order_and_leftovers(void **state) {
  (void)state;
  lua_State *L = newL();
  amc_avi_cache_t c;
  amc_avi_cache_init(&c);
  amc_avi_object_t objs[] = {
      obj("virtualservice", "amc--c1--child",
          "{\"created_by\":\"amc-c1\"," MARKS(
              "ns/gw") ",\"name\":\"amc--c1--"
                       "child\",\"type\":\"VS_TYPE_VH_CHILD\"}"),
      obj("virtualservice", "amc--c1--parent",
          "{\"created_by\":\"amc-c1\"," MARKS(
              "ns/gw") ",\"name\":\"amc--c1--"
                       "parent\",\"type\":\"VS_TYPE_VH_PARENT\"}"),
      obj("pool", "p1", POOL("p1", "")),
      obj("poolgroup", "pg1", POOL("pg1", "")),
      obj("vsvip", "amc--c1--vip",
          "{" MARKS("ns/gw") ",\"name\":\"amc--c1--vip\"}"),
      obj("httppolicyset", "ps", POOL("ps", "")),
  };
  amc_avi_plan_t p;
  char err[300];
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", objs, 6, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 6);
  const char *order[] = {"vsvip",         "pool",           "poolgroup",
                         "httppolicyset", "virtualservice", "virtualservice"};
  for (size_t i = 0; i < 6; i++) {
    assert_int_equal(p.steps[i].op, AMC_AVI_POST);
    assert_string_equal(p.steps[i].type, order[i]);
  }
  assert_string_equal(p.steps[4].name, "amc--c1--parent");
  assert_string_equal(p.steps[5].name, "amc--c1--child");
  amc_avi_plan_free(&p);

  /* Now the controller has p1 (same checksum), pg1 (other checksum), an
   * old pool and an old child VS of this key, and a pool of another key. */
  char ck[17], b[1024];
  amc_avi_cksum(objs[2].json, objs[2].json_len, ck);
  snprintf(b, sizeof b,
           "{\"created_by\":\"amc-c1\",\"markers\":[{\"key\":\"gateway\","
           "\"values\":[\"ns/gw\"]},{\"key\":\"amc-cksum\",\"values\":"
           "[\"%s\"]}],\"name\":\"p1\",\"uuid\":\"pool-1\"}",
           ck);
  put(&c, L, "pool", b);
  put(&c, L, "poolgroup",
      "{\"created_by\":\"amc-c1\",\"markers\":[{\"key\":\"gateway\","
      "\"values\":[\"ns/gw\"]},{\"key\":\"amc-cksum\",\"values\":[\"0\"]}],"
      "\"name\":\"pg1\",\"uuid\":\"pg-1\"}");
  put(&c, L, "pool",
      "{\"created_by\":\"amc-c1\",\"markers\":[{\"key\":\"gateway\","
      "\"values\":[\"ns/gw\"]}],\"name\":\"old\",\"uuid\":\"pool-9\"}");
  put(&c, L, "virtualservice",
      "{\"created_by\":\"amc-c1\",\"markers\":[{\"key\":\"gateway\","
      "\"values\":[\"ns/gw\"]}],\"name\":\"oldchild\",\"uuid\":\"vs-9\","
      "\"type\":\"VS_TYPE_VH_CHILD\"}");
  put(&c, L, "pool",
      "{\"created_by\":\"amc-c1\",\"markers\":[{\"key\":\"gateway\","
      "\"values\":[\"ns/other\"]}],\"name\":\"theirs\",\"uuid\":\"pool-7\"}");
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", objs, 6, &p,
                                    err, sizeof err),
                   0);
  /* p1 unchanged: no step. pg1: PUT. old child VS then old pool deleted,
   * after every create/update. The other key's pool is left alone. */
  assert_int_equal(p.n, 7);
  assert_string_equal(p.steps[0].type, "vsvip");
  assert_int_equal(p.steps[1].op, AMC_AVI_PUT);
  assert_string_equal(p.steps[1].type, "poolgroup");
  assert_string_equal(p.steps[1].uuid, "pg-1");
  assert_int_equal(p.steps[5].op, AMC_AVI_DELETE);
  assert_string_equal(p.steps[5].uuid, "vs-9");
  assert_int_equal(p.steps[6].op, AMC_AVI_DELETE);
  assert_string_equal(p.steps[6].uuid, "pool-9");
  amc_avi_plan_free(&p);

  /* The key is gone: delete its objects, referrers first. */
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", NULL, 0, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 4);
  assert_string_equal(p.steps[0].type, "virtualservice");
  assert_string_equal(p.steps[1].type, "poolgroup");
  assert_string_equal(p.steps[2].type, "pool");
  assert_string_equal(p.steps[3].type, "pool");
  for (size_t i = 0; i < p.n; i++)
    assert_string_not_equal(p.steps[i].name, "theirs");
  amc_avi_plan_free(&p);

  /* gc: keep live keys' objects, delete the rest. */
  const char *live[] = {"Gateway/ns/gw"};
  assert_int_equal(amc_avi_plan_gc(&c, live, 1, &p), 0);
  assert_int_equal(p.n, 1);
  assert_string_equal(p.steps[0].name, "theirs");
  amc_avi_plan_free(&p);
  assert_int_equal(amc_avi_plan_gc(&c, NULL, 0, &p), 0);
  assert_int_equal(p.n, 5);
  amc_avi_plan_free(&p);
  assert_int_equal(lua_gettop(L), 0);
  amc_avi_cache_clear(&c);
  lua_close(L);
}

/* A key's leftovers come from the cache's per-gateway index: it follows
 * an object that moves to another gateway, a delete and a re-put. */
static void test_leftovers_follow_the_gateway_index(void **state) {
  (void)state;
  lua_State *L = newL();
  amc_avi_cache_t c;
  amc_avi_cache_init(&c);
  amc_avi_plan_t p;
  char err[300];
  put(&c, L, "pool", OWNED("ns/a", "p1", "pool-1"));
  put(&c, L, "pool", OWNED("ns/a", "p2", "pool-2"));
  put(&c, L, "pool", OWNED("ns/b", "p3", "pool-3"));
  /* p2 now belongs to b (the controller's copy says so) */
  put(&c, L, "pool", OWNED("ns/b", "p2", "pool-2"));
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/a", NULL, 0, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 1);
  assert_string_equal(p.steps[0].uuid, "pool-1");
  amc_avi_plan_free(&p);
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/b", NULL, 0, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 2);
  amc_avi_plan_free(&p);
  /* deleted, and no longer owned (a put without our mark drops it) */
  amc_avi_cache_del(&c, "pool", "admin", "p1");
  put(&c, L, "pool", "{\"name\":\"p3\",\"uuid\":\"pool-3\"}");
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/a", NULL, 0, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 0);
  amc_avi_plan_free(&p);
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/b", NULL, 0, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 1);
  assert_string_equal(p.steps[0].uuid, "pool-2");
  amc_avi_plan_free(&p);
  /* cleared: nothing left for anyone; the cache is reusable */
  amc_avi_cache_clear(&c);
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/b", NULL, 0, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 0);
  amc_avi_plan_free(&p);
  put(&c, L, "pool", OWNED("ns/b", "p4", "pool-4"));
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/b", NULL, 0, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 1);
  assert_string_equal(p.steps[0].uuid, "pool-4");
  amc_avi_plan_free(&p);
  assert_int_equal(lua_gettop(L), 0);
  amc_avi_cache_clear(&c);
  lua_close(L);
}

/* The uuids of a plan's steps, sorted, comma-separated, into buf. */
static const char *plan_uuids(const amc_avi_plan_t *p, char *buf, size_t len) {
  const char *u[16];
  size_t n = p->n < 16 ? p->n : 16;
  for (size_t i = 0; i < n; i++)
    u[i] = p->steps[i].uuid;
  for (size_t i = 1; i < n; i++) /* (insertion sort: a handful) */
    for (size_t j = i; j > 0 && strcmp(u[j - 1], u[j]) > 0; j--) {
      const char *t = u[j];
      u[j] = u[j - 1];
      u[j - 1] = t;
    }
  buf[0] = '\0';
  for (size_t i = 0; i < n; i++)
    snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? "," : "", u[i]);
  return buf;
}

/* The per-gateway index is a list through the entries: removing its
 * first, a middle and its last entry, and replacing one, keep exactly
 * the others (leftovers of a plan that wants nothing). */
static void test_gateway_index_unlinks(void **state) {
  (void)state;
  lua_State *L = newL();
  amc_avi_cache_t c;
  amc_avi_cache_init(&c);
  amc_avi_plan_t p;
  char err[300], got[256];
  put(&c, L, "pool", OWNED("ns/a", "p1", "pool-1")); /* last in the list */
  put(&c, L, "pool", OWNED("ns/a", "p2", "pool-2"));
  put(&c, L, "pool", OWNED("ns/a", "p3", "pool-3"));
  put(&c, L, "pool", OWNED("ns/a", "p4", "pool-4"));
  put(&c, L, "pool", OWNED("ns/a", "p5", "pool-5")); /* first */
  put(&c, L, "pool", OWNED("ns/b", "q1", "pool-6"));
  amc_avi_cache_del(&c, "pool", "admin", "p3");
  amc_avi_cache_del(&c, "pool", "admin", "p5");
  amc_avi_cache_del(&c, "pool", "admin", "p1");
  put(&c, L, "pool", OWNED("ns/a", "p4", "pool-7")); /* replaced */
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/a", NULL, 0, &p,
                                    err, sizeof err),
                   0);
  assert_string_equal(plan_uuids(&p, got, sizeof got), "pool-2,pool-7");
  amc_avi_plan_free(&p);
  /* the last ones go: the gateway has no list any more; b is untouched */
  amc_avi_cache_del(&c, "pool", "admin", "p2");
  amc_avi_cache_del(&c, "pool", "admin", "p4");
  assert_int_equal(c.by_gateway.count, 1);
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/a", NULL, 0, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 0);
  amc_avi_plan_free(&p);
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/b", NULL, 0, &p,
                                    err, sizeof err),
                   0);
  assert_string_equal(plan_uuids(&p, got, sizeof got), "pool-6");
  amc_avi_plan_free(&p);
  assert_int_equal(lua_gettop(L), 0);
  amc_avi_cache_clear(&c);
  lua_close(L);
}

static void test_plan_subset_fallback(void **state) {
  (void)state;
  lua_State *L = newL();
  amc_avi_cache_t c;
  amc_avi_cache_init(&c);
  /* Owned, no checksum (not written by amc's sync): field compare. */
  put(&c, L, "pool",
      "{\"created_by\":\"amc-c1\",\"markers\":[{\"key\":\"clustername\","
      "\"values\":[\"c1\"]},{\"key\":\"gateway\",\"values\":[\"ns/gw\"]}],"
      "\"name\":\"p1\",\"uuid\":\"pool-1\",\"lb_algorithm\":\"X\","
      "\"health_monitor_refs\":[\"https://h/api/healthmonitor/hm-1#hm\"]}");
  amc_avi_object_t same = obj(
      "pool", "p1",
      "{\"created_by\":\"amc-c1\"," MARKS(
          "ns/gw") ",\"name\":\"p1\","
                   "\"health_monitor_refs\":[\"/api/healthmonitor?name=hm\"]}");
  amc_avi_plan_t p;
  char err[300];
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", &same, 1, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 0);
  amc_avi_object_t diff = obj("pool", "p1",
                              "{\"created_by\":\"amc-c1\"," MARKS(
                                  "ns/gw") ",\"name\":\"p1\","
                                           "\"health_monitor_refs\":[\"/api/"
                                           "healthmonitor?name=other\"]}");
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", &diff, 1, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 1);
  assert_int_equal(p.steps[0].op, AMC_AVI_PUT);
  amc_avi_plan_free(&p);
  amc_avi_cache_clear(&c);
  lua_close(L);
}

/* Gateway ns/gw's cache: pool p1 with checksum aa (pool-1) and a
 * leftover pool "old" (pool-9); returns p1 as an unchanged object (a memo
 * replay: json NULL). */
static amc_avi_object_t cache_p1_and_leftover(amc_avi_cache_t *c,
                                              lua_State *L) {
  put(c, L, "pool",
      "{\"created_by\":\"amc-c1\",\"markers\":[{\"key\":\"gateway\","
      "\"values\":[\"ns/gw\"]},{\"key\":\"amc-cksum\",\"values\":"
      "[\"00000000000000aa\"]}],\"name\":\"p1\",\"uuid\":\"pool-1\"}");
  put(c, L, "pool",
      "{\"created_by\":\"amc-c1\",\"markers\":[{\"key\":\"gateway\","
      "\"values\":[\"ns/gw\"]}],\"name\":\"old\",\"uuid\":\"pool-9\"}");
  amc_avi_object_t u = {.type = "pool",
                        .name = "p1",
                        .cksum = "00000000000000aa",
                        .tenant_ref = "/api/tenant?name=admin"};
  return u;
}

/* Unchanged objects (translation.h: json NULL, a memo replay): nothing to
 * do when the cache holds them with their checksum for this key; a plan
 * error otherwise (the controller then translates in full). Leftovers are
 * still found. */
static void test_plan_unchanged(void **state) {
  (void)state;
  lua_State *L = newL();
  amc_avi_cache_t c;
  amc_avi_cache_init(&c);
  amc_avi_object_t u = cache_p1_and_leftover(&c, L);
  assert_int_equal(amc_avi_unchanged_held(&c, &own, "Gateway/ns/gw", &u), 1);
  assert_int_equal(amc_avi_unchanged_held(&c, &own, "Gateway/ns/other", &u), 0);
  amc_avi_plan_t p;
  char err[300];
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", &u, 1, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 1); /* only the leftover's delete */
  assert_int_equal(p.steps[0].op, AMC_AVI_DELETE);
  assert_string_equal(p.steps[0].uuid, "pool-9");
  amc_avi_plan_free(&p);
  /* A full object whose checksum the cache has: nothing to do either
   * (without decoding it); another checksum: a PUT. */
  amc_avi_object_t full = obj("pool", "p1",
                              "{\"name\":\"p1\",\"tenant_ref\":"
                              "\"/api/tenant?name=admin\"}");
  snprintf(full.cksum, sizeof full.cksum, "00000000000000aa");
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", &full, 1, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 1);
  assert_int_equal(p.steps[0].op, AMC_AVI_DELETE);
  amc_avi_plan_free(&p);
  snprintf(full.cksum, sizeof full.cksum, "00000000000000cc");
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", &full, 1, &p,
                                    err, sizeof err),
                   0);
  assert_int_equal(p.n, 2);
  assert_int_equal(p.steps[0].op, AMC_AVI_PUT);
  assert_string_equal(p.steps[0].name, "p1");
  amc_avi_plan_free(&p);
  amc_avi_object_t other = u;
  snprintf(other.cksum, sizeof other.cksum, "00000000000000bb");
  assert_int_equal(amc_avi_unchanged_held(&c, &own, "Gateway/ns/gw", &other),
                   0);
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", &other, 1, &p,
                                    err, sizeof err),
                   -1);
  assert_non_null(strstr(err, "full translation"));
  amc_avi_object_t gone = u;
  gone.name = "p2";
  assert_int_equal(amc_avi_unchanged_held(&c, &own, "Gateway/ns/gw", &gone), 0);
  amc_avi_cache_clear(&c);
  lua_close(L);
}

/* A plan marks the gateway's entries it wants (no map of every object);
 * the marks are gone when it returns, after a success or a failure, so the
 * next plan finds every leftover. A second object of the same name is an
 * error for the gateway's own entries too. */
static void test_plan_marks_cleared(void **state) {
  (void)state;
  lua_State *L = newL();
  amc_avi_cache_t c;
  amc_avi_cache_init(&c);
  amc_avi_object_t u = cache_p1_and_leftover(&c, L);
  amc_avi_object_t two[] = {u, u};
  amc_avi_plan_t p;
  char err[300];
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", two, 2, &p,
                                    err, sizeof err),
                   -1);
  assert_string_equal(err,
                      "pool p1: two objects with this name in tenant admin");
  for (int round = 0; round < 2; round++) {
    /* nothing wanted: both are leftovers */
    assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", NULL, 0, &p,
                                      err, sizeof err),
                     0);
    assert_int_equal(p.n, 2);
    amc_avi_plan_free(&p);
    /* p1 wanted: only the old one */
    assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", &u, 1, &p,
                                      err, sizeof err),
                     0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.steps[0].uuid, "pool-9");
    amc_avi_plan_free(&p);
  }
  amc_avi_cache_clear(&c);
  lua_close(L);
}

static void test_plan_errors(void **state) {
  (void)state;
  lua_State *L = newL();
  amc_avi_cache_t c;
  amc_avi_cache_init(&c);
  amc_avi_plan_t p;
  char err[300];
  amc_avi_object_t bad[] = {obj("pool", "p", "{\"name\":\"q\"}")};
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", bad, 1, &p,
                                    err, sizeof err),
                   -1);
  assert_string_equal(err, "pool p: the object's name field does not match");
  amc_avi_object_t dup[] = {obj("pool", "p", "{\"name\":\"p\"}"),
                            obj("pool", "p", "{\"name\":\"p\"}")};
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", dup, 2, &p,
                                    err, sizeof err),
                   -1);
  assert_string_equal(err,
                      "pool p: two objects with this name in tenant admin");
  amc_avi_object_t typ[] = {obj("cloud", "c", "{\"name\":\"c\"}")};
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", typ, 1, &p,
                                    err, sizeof err),
                   -1);
  assert_string_equal(err, "cloud c: amc does not sync objects of type cloud");
  amc_avi_object_t js[] = {obj("pool", "p", "{\"name\":")};
  assert_int_equal(amc_avi_plan_key(L, &c, &own, "Gateway/ns/gw", js, 1, &p,
                                    err, sizeof err),
                   -1);
  assert_non_null(strstr(err, "pool p: line 1"));
  assert_int_equal(lua_gettop(L), 0);
  lua_close(L);
}

static void test_classify(void **state) {
  (void)state;
  assert_true(amc_avi_classify(0, "Connection refused"));
  assert_true(amc_avi_classify(503, ""));
  assert_false(amc_avi_classify(500, "Import error: bad common_name"));
  assert_true(amc_avi_classify(429, ""));
  assert_true(amc_avi_classify(409, ""));
  assert_true(amc_avi_classify(400, "Pool object not found!"));
  assert_true(amc_avi_classify(
      403, "Cannot delete, object is referred by: ['Pool p']"));
  assert_true(amc_avi_classify(403, "Tenant 't' does not exist!"));
  assert_false(
      amc_avi_classify(400, "{\"name\": \"This field is required.\"}"));
  assert_false(amc_avi_classify(403, "Cannot modify system default object"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ownership),
      cmocka_unit_test(test_plan_unchanged),
      cmocka_unit_test(test_ref_parse),
      cmocka_unit_test(test_subset),
      cmocka_unit_test(test_cksum_stable),
      cmocka_unit_test(test_desired_body_adds_cksum),
      cmocka_unit_test(test_redacted),
      cmocka_unit_test(test_cache_put),
      cmocka_unit_test(test_cache_uuid_forms),
      cmocka_unit_test(test_plan_order_and_leftovers),
      cmocka_unit_test(test_leftovers_follow_the_gateway_index),
      cmocka_unit_test(test_gateway_index_unlinks),
      cmocka_unit_test(test_plan_marks_cleared),
      cmocka_unit_test(test_plan_subset_fallback),
      cmocka_unit_test(test_plan_errors),
      cmocka_unit_test(test_classify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
