/* test_schema_proof.c - the C proof of emitted AVI objects against the
 * compiled schema: every fact on a small schema, the golden outputs proven
 * against the real schema, and a differential check that it never proves
 * what runtime/lua/validate.lua rejects (mutations of golden objects). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "schema_proof.h"
#include "util/buf.h"

static lua_State *L;

static int setup(void **state) {
  (void)state;
  L = luaL_newstate();
  luaL_openlibs(L);
  amc_json_open(L);
  lua_setglobal(L, "json");
  luaL_newmetatable(L, AMC_JSON_ARRAY_MT);
  lua_setglobal(L, "ARRAY_MT");
  lua_pushlightuserdata(L, AMC_JSON_NULL);
  lua_setglobal(L, "NULL");
  if (luaL_dostring(L, "package.path = '" AMC_SOURCE_DIR
                       "/runtime/lua/?.lua;' .. package.path") != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  lua_close(L);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* A small schema, every fact                                                */

static const char *const small_schema =
    "return {\n"
    "  objects = { thing = 'Thing', broken = 'Broken', ghost = 'Nope' },\n"
    "  types = {\n"
    "    Thing = {\n"
    "      required = {'name'},\n"
    "      fields = {\n"
    "        name = {t = 'string'},\n"
    "        mode = {t = 'string', enum = {'M_A', 'M_B'}},\n"
    "        port = {t = 'integer', min = 1, max = 65535, special = {0, -1}},\n"
    "        ratio = {t = 'number', min = 0, max = 1},\n"
    "        on = {t = 'boolean'},\n"
    "        url = {t = 'string', ro = true},\n"
    "        refs = {t = 'array', items = 'string', max_items = 2},\n"
    "        modes = {t = 'array', enum = {'X', 'Y'}},\n"
    "        ports = {t = 'array', items = 'integer', min = 1, max = 9},\n"
    "        sub = {t = 'object', ref = 'Sub'},\n"
    "        subs = {t = 'array', ref = 'Sub'},\n"
    "        any = {t = 'object'},\n"
    "        lost = {t = 'object', ref = 'Missing'},\n"
    "        odd = {t = 'frob'},\n"
    "      },\n"
    "    },\n"
    "    Sub = { required = {'k'}, fields = { k = {t = 'string'},\n"
    "                                        v = {t = 'integer'} } },\n"
    "    Broken = { required = {'absent'}, fields = { a = {t = 'string'} } },\n"
    "  },\n"
    "}\n";

static amc_schema_proof_t *compile_text(const char *text) {
  if (luaL_dostring(L, text) != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
  amc_schema_proof_t *s = amc_schema_proof_compile(L, -1);
  lua_pop(L, 1);
  assert_non_null(s);
  return s;
}

/* The tape proof of the value at idx, whose canonical text is json[len]:
 * encoded once with a tape, then three times through one memo (the third
 * time its tables directly under the root are RAW tokens). Fails unless the
 * two answers agree and the bytes are the same; returns the answer. */
static int tape_proves(amc_schema_proof_t *s, const char *type,
                       int idx, const char *json, size_t len) {
  amc_buf_t b = AMC_BUF_INIT;
  amc_json_tape_t tape = AMC_JSON_TAPE_INIT;
  amc_json_memo_t *m = amc_json_memo_new();
  char err[256];
  assert_int_equal(amc_json_encode_tape(L, idx, &b, NULL, &tape, err,
                                        sizeof err),
                   0);
  assert_true(b.len == len && memcmp(b.data, json, len) == 0);
  int plain = amc_schema_proof_check_tape(s, type, &tape, b.data, b.len);
  for (int i = 0; i < 2; i++) { /* met twice: kept */
    amc_buf_reset(&b);
    assert_int_equal(amc_json_encode_memo(L, idx, &b, m, err, sizeof err), 0);
  }
  amc_buf_reset(&b);
  assert_int_equal(amc_json_encode_tape(L, idx, &b, m, &tape, err,
                                        sizeof err),
                   0);
  assert_true(b.len == len && memcmp(b.data, json, len) == 0);
  int raw = amc_schema_proof_check_tape(s, type, &tape, b.data, b.len);
  if (plain != raw)
    fail_msg("%s %.*s: tape proof %d, with RAW tokens %d", type, (int)len,
             json, plain, raw);
  amc_json_memo_free(m);
  amc_json_tape_free(&tape);
  amc_buf_free(&b);
  return plain;
}

/* The text proof of json; when json is canonical (decoding and encoding
 * it gives it back), the tape proof must say the same. */
static int proves(amc_schema_proof_t *s, const char *type,
                  const char *json) {
  size_t len = strlen(json);
  int p = amc_schema_proof_check(s, type, json, len);
  char err[256];
  if (amc_json_decode(L, json, len, err, sizeof err) < 0)
    return p;
  amc_buf_t b = AMC_BUF_INIT;
  if (amc_json_encode(L, -1, &b, err, sizeof err) == 0 && b.len == len &&
      memcmp(b.data, json, len) == 0) {
    int t = tape_proves(s, type, lua_gettop(L), json, len);
    if (t != p)
      fail_msg("%s %s: text proof %d, tape proof %d", type, json, p, t);
  }
  amc_buf_free(&b);
  lua_pop(L, 1);
  return p;
}

static void test_small_schema(void **state) {
  (void)state;
  amc_schema_proof_t *s = compile_text(small_schema);
  static const struct {
    const char *type, *json;
    int want;
  } cases[] = {
      {"thing", "{\"name\":\"a\"}", 1},
      {"thing", "{}", 0},                             /* required name */
      {"thing", "{\"mode\":\"M_A\"}", 0},             /* required name */
      {"pool", "{\"name\":\"a\"}", 0},                /* not a type amc emits */
      {"ghost", "{\"name\":\"a\"}", 0},               /* root type missing */
      {"broken", "{\"a\":\"x\"}", 0},                 /* required not a field */
      {"thing", "{\"name\":\"a\",\"zz\":1}", 0},      /* unknown field */
      {"thing", "{\"name\":\"a\",\"url\":\"u\"}", 0}, /* read-only */
      {"thing", "{\"name\":1}", 0},
      {"thing", "{\"name\":null}", 0},
      {"thing", "{\"mode\":\"M_B\",\"name\":\"a\"}", 1},
      {"thing", "{\"mode\":\"M_C\",\"name\":\"a\"}", 0},
      {"thing", "{\"mode\":\"M_\\u0041\",\"name\":\"a\"}", 0}, /* declined */
      {"thing", "{\"name\":\"a\",\"port\":65535}", 1},
      {"thing", "{\"name\":\"a\",\"port\":1}", 1},
      {"thing", "{\"name\":\"a\",\"port\":0}", 1},  /* special */
      {"thing", "{\"name\":\"a\",\"port\":-1}", 1}, /* special */
      {"thing", "{\"name\":\"a\",\"port\":-2}", 0},
      {"thing", "{\"name\":\"a\",\"port\":8-0}", 0}, /* not canonical */
      {"thing", "{\"name\":\"a\",\"port\":-}", 0},
      {"thing", "{\"name\":\"a\",\"port\":-0}", 1},
      {"thing", "{\"name\":\"a\",\"port\":65536}", 0},
      {"thing", "{\"name\":\"a\",\"port\":1.5}", 0},
      {"thing", "{\"name\":\"a\",\"port\":\"80\"}", 0},
      {"thing", "{\"name\":\"a\",\"port\":99999999999999999999}", 0},
      {"thing", "{\"name\":\"a\",\"ratio\":0.5}", 1},
      {"thing", "{\"name\":\"a\",\"ratio\":1}", 1},
      {"thing", "{\"name\":\"a\",\"ratio\":1.5}", 0},
      {"thing", "{\"name\":\"a\",\"ratio\":-1e-07}", 0},
      {"thing", "{\"name\":\"a\",\"on\":true}", 1},
      {"thing", "{\"name\":\"a\",\"on\":false}", 1},
      {"thing", "{\"name\":\"a\",\"on\":\"true\"}", 0},
      {"thing", "{\"name\":\"a\",\"refs\":[\"x\",\"y\"]}", 1},
      {"thing", "{\"name\":\"a\",\"refs\":[\"x\",\"y\",\"z\"]}", 0},
      {"thing", "{\"name\":\"a\",\"refs\":[]}", 1},
      {"thing", "{\"name\":\"a\",\"refs\":{}}", 1}, /* the empty table */
      {"thing", "{\"name\":\"a\",\"refs\":[1]}", 0},
      {"thing", "{\"name\":\"a\",\"refs\":\"x\"}", 0},
      {"thing", "{\"modes\":[\"X\",\"Y\"],\"name\":\"a\"}", 1},
      {"thing", "{\"modes\":[\"Z\"],\"name\":\"a\"}", 0},
      {"thing", "{\"name\":\"a\",\"ports\":[1,9]}", 1},
      {"thing", "{\"name\":\"a\",\"ports\":[10]}", 0},
      {"thing", "{\"name\":\"a\",\"sub\":{\"k\":\"x\",\"v\":2}}", 1},
      {"thing", "{\"name\":\"a\",\"sub\":{\"v\":2}}", 0}, /* Sub.k */
      {"thing", "{\"name\":\"a\",\"sub\":{}}", 0},
      {"thing", "{\"name\":\"a\",\"sub\":[]}", 0},
      {"thing", "{\"name\":\"a\",\"sub\":[{\"k\":\"x\"}]}", 0},
      {"thing", "{\"name\":\"a\",\"subs\":[{\"k\":\"x\"},{\"k\":\"y\"}]}", 1},
      {"thing", "{\"name\":\"a\",\"subs\":[{\"k\":\"x\"},{\"v\":1}]}", 0},
      {"thing", "{\"name\":\"a\",\"subs\":[[]]}", 0},
      {"thing", "{\"name\":\"a\",\"subs\":[\"x\"]}", 0},
      {"thing", "{\"any\":{\"x\":[1,{\"y\":null}]},\"name\":\"a\"}", 1},
      {"thing", "{\"any\":[],\"name\":\"a\"}", 1},
      {"thing", "{\"any\":[1],\"name\":\"a\"}", 0},
      {"thing", "{\"lost\":{},\"name\":\"a\"}", 0},
      {"thing", "{\"name\":\"a\",\"odd\":1}", 0},
      {"thing", "{\"name\":\"a\"} ", 0}, /* trailing bytes */
      {"thing", "{\"name\":\"a\"", 0},
      {"thing", "[]", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = proves(s, cases[i].type, cases[i].json);
    if (got != cases[i].want)
      fail_msg("%s %s: proved %d, want %d", cases[i].type, cases[i].json, got,
               cases[i].want);
  }
  amc_schema_proof_free(s);
}

/* Field lookup (a hash of a few bytes and the length) on a type with many
 * fields alike but for a byte or the length: each is found, and no near
 * miss is taken for a field. */
static void test_field_lookup(void **state) {
  (void)state;
  amc_schema_proof_t *s = compile_text(
      "local f = {}\n"
      "for i = 0, 299 do\n"
      "  f[string.format('f%03d_ref', i)] = {t = 'integer'}\n"
      "  f[string.format('f_%d', i)] = {t = 'string'}\n"
      "end\n"
      "f.a = {t = 'boolean'}\n"
      "f.ab = {t = 'boolean'}\n"
      "f.abcdefghijkl = {t = 'boolean'}\n"
      "f['a_long_field_name_of_a_kind_avi_uses_ref'] = {t = 'boolean'}\n"
      "return { objects = { many = 'Many', one = 'One' }, types = {\n"
      "  Many = { fields = f },\n"
      "  One = { fields = { x = {t = 'string'} } } } }\n");
  char json[128];
  for (int i = 0; i < 300; i++) {
    snprintf(json, sizeof json, "{\"f%03d_ref\":%d}", i, i);
    if (!proves(s, "many", json))
      fail_msg("not proved: %s", json);
    snprintf(json, sizeof json, "{\"f_%d\":\"v\"}", i);
    if (!proves(s, "many", json))
      fail_msg("not proved: %s", json);
    snprintf(json, sizeof json, "{\"f_%d\":%d}", i, i); /* wrong type */
    if (proves(s, "many", json))
      fail_msg("proved: %s", json);
  }
  static const char *const yes[] = {
      "{\"a\":true}",
      "{\"ab\":false}",
      "{\"a\":true,\"ab\":true,\"f000_ref\":1,\"f_0\":\"x\"}",
      "{\"a_long_field_name_of_a_kind_avi_uses_ref\":true}",
      "{\"abcdefghijkl\":true}",
  };
  static const char *const no[] = {
      "{\"\":true}",
      "{\"b\":true}",
      "{\"abc\":true}",
      "{\"f300_ref\":1}",
      "{\"f000_re\":1}",
      "{\"f000_refs\":1}",
      "{\"f0000_ref\":1}",
      "{\"f_300\":\"x\"}",
      "{\"f_\":\"x\"}",
      "{\"F_1\":\"x\"}",
      "{\"f_1 \":\"x\"}",
      "{\"g_1\":\"x\"}",
      "{\"a_long_field_name_of_a_kind_avi_uses_reg\":true}",
      /* same length as a field, one byte off (start, middle, end) */
      "{\"f000_rxf\":1}",
      "{\"f00x_ref\":1}",
      "{\"f000_reg\":1}",
      "{\"f_1x0\":\"x\"}",
      "{\"f_10x\":\"x\"}",
      "{\"x_100\":\"x\"}",
      "{\"f_x\":\"x\"}",
      "{\"fx1\":\"x\"}",
      "{\"x_1\":\"x\"}",
      "{\"ax\":true}",
      "{\"xb\":true}",
      "{\"abcdefghixkl\":true}", /* (a byte the hash skips) */
      "{\"abcdefgxijkl\":true}",
      "{\"a\":true,\"zz\":true}",
  };
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
    if (!proves(s, "many", yes[i]))
      fail_msg("not proved: %s", yes[i]);
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
    if (proves(s, "many", no[i]))
      fail_msg("proved: %s", no[i]);
  assert_int_equal(proves(s, "one", "{\"x\":\"v\"}"), 1);
  assert_int_equal(proves(s, "one", "{\"y\":\"v\"}"), 0);
  assert_int_equal(proves(s, "one", "{\"\":\"v\"}"), 0);
  amc_schema_proof_free(s);
}

static void test_not_a_schema(void **state) {
  (void)state;
  lua_newtable(L);
  assert_null(amc_schema_proof_compile(L, -1));
  lua_pushinteger(L, 1);
  assert_null(amc_schema_proof_compile(L, -1));
  lua_pop(L, 2);
  assert_int_equal(amc_schema_proof_check(NULL, "pool", "{}", 2), 0);
}

/* ------------------------------------------------------------------------ */
/* The real schema: golden outputs, and mutations of them                    */

typedef struct {
  amc_schema_proof_t *s;
  size_t checked, proved, rejected;
  char *wrong; /* the first object proved that validate.lua rejects */
} diff_t;

static diff_t D;

/* check(type, obj): encodes obj, proves it and runs validate.object. */
static int l_check(lua_State *L1) {
  const char *type = luaL_checkstring(L1, 1);
  amc_buf_t b = AMC_BUF_INIT;
  char err[256];
  if (amc_json_encode(L1, 2, &b, err, sizeof err) < 0) {
    amc_buf_free(&b);
    return 0; /* not emittable at all */
  }
  int p = amc_schema_proof_check(D.s, type, b.data, b.len);
  int t = tape_proves(D.s, type, 2, b.data, b.len);
  if (t != p)
    fail_msg("%s %s: text proof %d, tape proof %d", type, b.data, p, t);
  lua_getglobal(L1, "validate");
  lua_getfield(L1, -1, "object");
  lua_pushvalue(L1, 1);
  lua_pushvalue(L1, 2);
  lua_call(L1, 2, 2);
  int ok = lua_toboolean(L1, -2);
  D.checked++;
  D.proved += p;
  D.rejected += !ok;
  if (p && !ok && !D.wrong) {
    amc_buf_printf(&b, " (%s)", lua_tostring(L1, -1));
    D.wrong = strdup(b.data);
  }
  lua_pop(L1, 3);
  lua_pushboolean(L1, p);
  amc_buf_free(&b);
  return 1;
}

static const char *const mutate_lua =
    "local type_, obj = ...\n"
    "local candidates = { NULL, 'x', 'HTTP', 'SENSITIVE', 0, -1, 1, 80,\n"
    "  70000, 1.5, true, {}, setmetatable({}, ARRAY_MT), {1}, {'a'},\n"
    "  { k = 'v' }, { {} } }\n"
    "local function walk(t)\n"
    "  local keys = {}\n"
    "  for k in pairs(t) do keys[#keys + 1] = k end\n"
    "  for _, k in ipairs(keys) do\n"
    "    local old = t[k]\n"
    "    for _, c in ipairs(candidates) do\n"
    "      t[k] = c\n"
    "      check(type_, obj)\n"
    "    end\n"
    "    if math.type(k) ~= 'integer' then\n"
    "      t[k] = nil\n"
    "      check(type_, obj)\n"
    "    end\n"
    "    t[k] = old\n"
    "    if type(old) == 'table' then walk(old) end\n"
    "  end\n"
    "  if #t > 0 then\n"
    "    for i = 1, 3 do t[#t + 1] = t[1] end\n"
    "    check(type_, obj)\n"
    "    for i = 1, 3 do t[#t] = nil end\n"
    "  elseif next(t) ~= nil then\n"
    "    t.zz_unknown = 1\n"
    "    check(type_, obj)\n"
    "    t.zz_unknown = nil\n"
    "  end\n"
    "end\n"
    "walk(obj)\n";

/* Calls fn(type, object) for every object in the golden expected.json
 * files (the first `max_cases` cases, 0: all). */
static void each_golden(size_t max_cases, void (*fn)(const char *, int)) {
  const char *dir = AMC_SOURCE_DIR "/tests/golden/cases";
  DIR *d = opendir(dir);
  assert_non_null(d);
  char *names[256];
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d)) && n < 256) {
    if (de->d_name[0] != '.')
      names[n++] = strdup(de->d_name);
  }
  closedir(d);
  for (size_t i = 0; i < n; i++) {
    for (size_t j = i + 1; j < n; j++) {
      if (strcmp(names[j], names[i]) < 0) {
        char *t = names[i];
        names[i] = names[j];
        names[j] = t;
      }
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (max_cases && i >= max_cases)
      break;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/expected.json", dir, names[i]);
    amc_buf_t b = AMC_BUF_INIT;
    if (amc_buf_read_file(&b, path) < 0) {
      amc_buf_free(&b);
      continue;
    }
    char err[256];
    if (amc_json_decode(L, b.data, b.len, err, sizeof err) < 0)
      fail_msg("%s: %s", path, err);
    amc_buf_free(&b);
    int top = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, top)) {
      const char *type = lua_tostring(L, -2);
      if (strcmp(type, "diagnostics") != 0) {
        lua_Integer m = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer k = 1; k <= m; k++) {
          lua_rawgeti(L, -1, k);
          fn(type, lua_gettop(L));
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
    lua_settop(L, top - 1);
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
}

static void load_real(void) {
  if (luaL_dostring(L, "validate = require('validate')\n"
                       "return (require('avi_schema'))") != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
  memset(&D, 0, sizeof D);
  D.s = amc_schema_proof_compile(L, -1);
  assert_non_null(D.s);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_check);
  lua_setglobal(L, "check");
}

static void golden_proved(const char *type, int obj) {
  lua_getglobal(L, "check");
  lua_pushstring(L, type);
  lua_pushvalue(L, obj);
  lua_call(L, 2, 1);
  if (!lua_toboolean(L, -1)) {
    amc_buf_t b = AMC_BUF_INIT;
    char err[256];
    amc_json_encode(L, obj, &b, err, sizeof err);
    fail_msg("golden %s not proved: %s", type, b.data);
  }
  lua_pop(L, 1);
}

/* Every object the golden cases emit is proved (so translations do not
 * fall back to validate.lua), and validate.lua agrees. */
static void test_golden_objects_proved(void **state) {
  (void)state;
  load_real();
  each_golden(0, golden_proved);
  assert_true(D.checked > 50);
  assert_int_equal(D.proved, D.checked);
  assert_int_equal(D.rejected, 0);
  amc_schema_proof_free(D.s);
}

static void mutate(const char *type, int obj) {
  if (luaL_loadstring(L, mutate_lua) != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
  lua_pushstring(L, type);
  lua_pushvalue(L, obj);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
}

/* Never proves what validate.lua rejects. */
static void test_mutations_never_wrongly_proved(void **state) {
  (void)state;
  load_real();
  each_golden(4, mutate);
  if (D.wrong)
    fail_msg("proved, but validate.lua rejects: %s", D.wrong);
  /* The mutations exercised both answers. */
  assert_true(D.checked > 1000);
  assert_true(D.rejected > D.checked / 4);
  assert_true(D.proved > D.checked / 10);
  amc_schema_proof_free(D.s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_small_schema),
      cmocka_unit_test(test_field_lookup),
      cmocka_unit_test(test_not_a_schema),
      cmocka_unit_test(test_golden_objects_proved),
      cmocka_unit_test(test_mutations_never_wrongly_proved),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
