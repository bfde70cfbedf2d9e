/* test_json.c - JSON decoding into Lua and canonical encoding. */
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

static lua_State *L;

static int setup(void **state) {
  (void)state;
  L = luaL_newstate();
  luaL_openlibs(L);
  amc_json_open(L);
  lua_setglobal(L, "json");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  lua_close(L);
  return 0;
}

/* Decodes `in`, re-encodes canonically, and checks the bytes. */
static void roundtrip(const char *in, const char *want) {
  char err[256] = "";
  int top = lua_gettop(L);
  int rc = amc_json_decode(L, in, strlen(in), err, sizeof err);
  if (rc != 0)
    fail_msg("decode(%s): %s", in, err);
  assert_int_equal(lua_gettop(L), top + 1);
  amc_buf_t b = AMC_BUF_INIT;
  rc = amc_json_encode(L, -1, &b, err, sizeof err);
  if (rc != 0)
    fail_msg("encode(%s): %s", in, err);
  assert_string_equal(b.data, want);
  assert_int_equal(lua_gettop(L), top + 1);
  lua_pop(L, 1);
  amc_buf_free(&b);
}

/* Decoding `in` must fail with exactly `want`. */
static void decode_error(const char *in, size_t len, const char *want) {
  char err[256] = "";
  int top = lua_gettop(L);
  int rc = amc_json_decode(L, in, len, err, sizeof err);
  assert_int_equal(rc, -1);
  assert_string_equal(err, want);
  assert_int_equal(lua_gettop(L), top);
}

/* Runs Lua `code` that returns one value, encodes it, expects `want`
 * (or, if want starts with "!", an error equal to the rest). */
static void encode_lua(const char *code, const char *want) {
  int top = lua_gettop(L);
  if (luaL_dostring(L, code) != LUA_OK)
    fail_msg("lua: %s", lua_tostring(L, -1));
  amc_buf_t b = AMC_BUF_INIT;
  char err[1024] = "";
  int rc = amc_json_encode(L, -1, &b, err, sizeof err);
  if (want[0] == '!') {
    assert_int_equal(rc, -1);
    assert_string_equal(err, want + 1);
  } else {
    if (rc != 0)
      fail_msg("encode: %s", err);
    assert_string_equal(b.data, want);
  }
  assert_int_equal(lua_gettop(L), top + 1);
  lua_settop(L, top);
  amc_buf_free(&b);
}

static void test_roundtrip_basic(void **state) {
  (void)state;
  roundtrip("{}", "{}");
  roundtrip("[]", "[]");
  roundtrip("  {\"a\" : [ 1 , 2 , {} , [] ] }\n", "{\"a\":[1,2,{},[]]}");
  roundtrip("null", "null");
  roundtrip("true", "true");
  roundtrip("[false,null,\"x\"]", "[false,null,\"x\"]");
  roundtrip("\"a/b\"", "\"a/b\"");
  roundtrip("\"\\/\"", "\"/\"");
  roundtrip("{\"k\":{\"n\":null,\"e\":[],\"o\":{}}}",
            "{\"k\":{\"e\":[],\"n\":null,\"o\":{}}}");
}

static void test_canonical_key_order(void **state) {
  (void)state;
  roundtrip("{\"b\":1,\"a\":2,\"aa\":3,\"B\":4,\"\":5,\"\\u00e9\":6}",
            "{\"\":5,\"B\":4,\"a\":2,\"aa\":3,\"b\":1,\"\xc3\xa9\":6}");
  /* Same value, keys inserted in different orders: same bytes. */
  encode_lua("local t = {} for i = 1, 50 do t['k'..i] = i end return t",
             "{\"k1\":1,\"k10\":10,\"k11\":11,\"k12\":12,"
             "\"k13\":13,\"k14\":14,\"k15\":15,\"k16\":16,"
             "\"k17\":17,\"k18\":18,\"k19\":19,\"k2\":2,"
             "\"k20\":20,\"k21\":21,\"k22\":22,\"k23\":23,"
             "\"k24\":24,\"k25\":25,\"k26\":26,\"k27\":27,"
             "\"k28\":28,\"k29\":29,\"k3\":3,\"k30\":30,"
             "\"k31\":31,\"k32\":32,\"k33\":33,\"k34\":34,"
             "\"k35\":35,\"k36\":36,\"k37\":37,\"k38\":38,"
             "\"k39\":39,\"k4\":4,\"k40\":40,\"k41\":41,"
             "\"k42\":42,\"k43\":43,\"k44\":44,\"k45\":45,"
             "\"k46\":46,\"k47\":47,\"k48\":48,\"k49\":49,"
             "\"k5\":5,\"k50\":50,\"k6\":6,\"k7\":7,\"k8\":8,"
             "\"k9\":9}");
}

static void test_empty_array_vs_object(void **state) {
  (void)state;
  /* Decoded [] carries the array metatable; a plain {} is an object. */
  char err[256];
  assert_int_equal(amc_json_decode(L, "[]", 2, err, sizeof err), 0);
  assert_true(lua_getmetatable(L, -1));
  luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
  assert_true(lua_rawequal(L, -1, -2));
  lua_pop(L, 3);
  encode_lua("return {}", "{}");
  encode_lua("return setmetatable({}, json.array_mt)", "[]");
  encode_lua("return {1, 2, 3}", "[1,2,3]");
  encode_lua("return {a = setmetatable({}, json.array_mt), b = {}}",
             "{\"a\":[],\"b\":{}}");
  /* Elements in the hash part, met out of order by lua_next. */
  encode_lua("return {[3] = 'c', [1] = 'a', [2] = 'b'}", "[\"a\",\"b\",\"c\"]");
  encode_lua("return {x = setmetatable({[7] = 7, [5] = 5, [3] = 3, [1] = 1, "
             "[6] = 6, [4] = 4, [2] = 2}, json.array_mt)}",
             "{\"x\":[1,2,3,4,5,6,7]}");
  encode_lua("local t = setmetatable({}, json.array_mt) "
             "for i = 40, 1, -1 do t[i] = i % 7 end return {x = t}",
             "{\"x\":[1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,0,1,2,3,4,5,6,"
             "0,1,2,3,4,5,6,0,1,2,3,4,5]}");
  encode_lua("local t = {} for i = 1, 40 do t[i] = {i} end t[41] = 'z' "
             "return t",
             "[[1],[2],[3],[4],[5],[6],[7],[8],[9],[10],[11],[12],[13],[14],"
             "[15],[16],[17],[18],[19],[20],[21],[22],[23],[24],[25],[26],"
             "[27],[28],[29],[30],[31],[32],[33],[34],[35],[36],[37],[38],"
             "[39],[40],\"z\"]");
  encode_lua("local t = {1, 2} t[4] = 4 return {a = t}",
             "!a: cannot encode an array with holes or non-index keys");
  encode_lua("local t = {} t[2] = 2 t[0] = 0 t[1] = 1 return t",
             "!cannot encode a table mixing string keys with other keys "
             "(object keys must be strings)");
}

static void test_numbers(void **state) {
  (void)state;
  roundtrip("[0,-0,1,-1,42,1.5,-2.25,0.1,1e2,1.0,1E-2,2.5e+3]",
            "[0,0,1,-1,42,1.5,-2.25,0.1,100,1,0.01,2500]");
  roundtrip("9223372036854775807", "9223372036854775807");
  roundtrip("-9223372036854775808", "-9223372036854775808");
  /* Beyond int64: a float, in the shortest form that round-trips. */
  roundtrip("9223372036854775808", "9.223372036854776e+18");
  roundtrip("123456789012345678901234567890", "1.2345678901234568e+29");
  roundtrip("1e300", "1e+300");
  roundtrip("0.30000000000000004", "0.30000000000000004");
  roundtrip("3.141592653589793", "3.141592653589793");

  /* Integer / float types as Lua sees them. */
  assert_int_equal(
      luaL_dostring(L, "local t = json.decode('[80, 80.5, 1e2, "
                       "12345678901234567, 99999999999999999999]')\n"
                       "assert(math.type(t[1]) == 'integer')\n"
                       "assert(math.type(t[2]) == 'float')\n"
                       "assert(math.type(t[3]) == 'integer' and t[3] == 100)\n"
                       "assert(t[4] == 12345678901234567)\n"
                       "assert(math.type(t[5]) == 'float')\n"),
      LUA_OK);

  encode_lua("return 1/3", "0.3333333333333333");
  encode_lua("return 2.0^53", "9007199254740992");
  encode_lua("return -0.0", "0");
  encode_lua("return math.maxinteger", "9223372036854775807");
  encode_lua("return math.mininteger", "-9223372036854775808");
  /* Every digit count, both signs, as printf writes them; into a fresh
   * buffer (the growing path) and after text (in place). */
  for (int k = 0; k <= 19; k++) {
    uint64_t p = 1;
    for (int j = 0; j < k; j++)
      p *= 10;
    const int64_t vals[] = {(int64_t)p - 1, (int64_t)p, (int64_t)p + 1,
                            (int64_t)(p / 2 + 37)};
    for (size_t j = 0; j < 4; j++) {
      for (int sign = -1; sign <= 1; sign += 2) {
        int64_t v =
            k == 19 && j ? (sign < 0 ? INT64_MIN : INT64_MAX) : vals[j] * sign;
        char want[64];
        snprintf(want, sizeof want, "%lld", (long long)v);
        for (int pre = 0; pre < 2; pre++) {
          amc_buf_t b = AMC_BUF_INIT;
          if (pre)
            amc_buf_puts(&b, "[1,");
          lua_pushinteger(L, v);
          char err[64];
          assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
          lua_pop(L, 1);
          assert_string_equal(b.data + (pre ? 3 : 0), want);
          amc_buf_free(&b);
        }
      }
    }
  }
  encode_lua("return 0/0", "!cannot encode NaN");
  encode_lua("return {x = {1/0}}", "!x[0]: cannot encode infinity");
}

static void test_strings_and_unicode(void **state) {
  (void)state;
  roundtrip("\"\\u00e9\\u20ac\"", "\"\xc3\xa9\xe2\x82\xac\"");
  /* Surrogate pair -> U+1F600 (4 bytes). */
  roundtrip("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"");
  roundtrip("\"\\uD83D\\uDE00\"", "\"\xf0\x9f\x98\x80\"");
  /* Raw UTF-8 passes through unchanged. */
  roundtrip("\"h\xc3\xa9llo \xf0\x9f\x98\x80\"",
            "\"h\xc3\xa9llo \xf0\x9f\x98\x80\"");
  /* Escaping on output: quotes, backslash, control characters only. */
  roundtrip("\"\\\"\\\\\\n\\t\\r\\b\\f\\u0001\\u001f\\u007f\"",
            "\"\\\"\\\\\\n\\t\\r\\b\\f\\u0001\\u001f\x7f\"");
  /* Embedded NUL survives. */
  roundtrip("\"a\\u0000b\"", "\"a\\u0000b\"");
  encode_lua("return 'a\\0b'", "\"a\\u0000b\"");
}

/* The expected canonical encoding of s (valid UTF-8) as a JSON string. */
static void escape_ref(const char *s, size_t n, amc_buf_t *o) {
  amc_buf_putc(o, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    switch (c) {
    case '"':
      amc_buf_puts(o, "\\\"");
      break;
    case '\\':
      amc_buf_puts(o, "\\\\");
      break;
    case '\n':
      amc_buf_puts(o, "\\n");
      break;
    case '\r':
      amc_buf_puts(o, "\\r");
      break;
    case '\t':
      amc_buf_puts(o, "\\t");
      break;
    case '\b':
      amc_buf_puts(o, "\\b");
      break;
    case '\f':
      amc_buf_puts(o, "\\f");
      break;
    default:
      if (c < 0x20)
        amc_buf_printf(o, "\\u%04x", c);
      else
        amc_buf_putc(o, (char)c);
    }
  }
  amc_buf_putc(o, '"');
}

/* Strings of every length up to 40 with a byte to escape (or a UTF-8
 * sequence, or an invalid byte) at every position, as values and as keys,
 * encoded into a buffer with room (the one-pass copy) and into an empty
 * one; each must match escape_ref, and decode back to the same bytes. */
static void test_string_escapes_every_position(void **state) {
  (void)state;
  static const char *const specials[] = {
      "", "\"", "\\", "\n", "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xff", "\0"};
  char s[64];
  for (size_t len = 0; len <= 40; len++) {
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
      size_t sl = specials[k][0] ? strlen(specials[k]) : (k == 9 ? 1 : 0);
      for (size_t at = 0; at + sl <= len || (sl == 0 && at == 0); at++) {
        for (size_t i = 0; i < len; i++)
          s[i] = (char)('a' + (i * 7 + len) % 26);
        memcpy(s + at, specials[k], sl);
        int bad = k == 8;
        for (int as_key = 0; as_key < 2; as_key++) {
          for (int room = 0; room < 2; room++) {
            amc_buf_t want = AMC_BUF_INIT, got = AMC_BUF_INIT;
            if (as_key)
              amc_buf_putc(&want, '{');
            escape_ref(s, len, &want);
            if (as_key)
              amc_buf_puts(&want, ":1}");
            if (as_key)
              lua_createtable(L, 0, 1);
            lua_pushlstring(L, s, len);
            if (as_key) {
              lua_pushinteger(L, 1);
              lua_rawset(L, -3);
            }
            if (room) {
              amc_buf_reserve(&got, 256);
              memset(got.data, '#', got.cap);
            }
            char err[256] = "";
            int rc = amc_json_encode(L, -1, &got, err, sizeof err);
            lua_pop(L, 1);
            if (bad) {
              assert_int_equal(rc, -1);
              assert_non_null(strstr(err, "invalid UTF-8 in string"));
            } else {
              if (rc != 0)
                fail_msg("len %zu special %zu at %zu: %s", len, k, at, err);
              assert_int_equal(got.len, want.len);
              assert_memory_equal(got.data, want.data, want.len + 1);
              /* and back */
              assert_int_equal(
                  amc_json_decode(L, got.data, got.len, err, sizeof err), 0);
              if (as_key) {
                lua_pushnil(L);
                assert_true(lua_next(L, -2));
                lua_pop(L, 1);
              }
              size_t n;
              const char *back = lua_tolstring(L, -1, &n);
              assert_int_equal(n, len);
              assert_memory_equal(back, s, len);
              lua_settop(L, 0);
            }
            amc_buf_free(&want);
            amc_buf_free(&got);
          }
        }
        if (sl == 0)
          break;
      }
    }
  }
}

static void test_invalid_utf8(void **state) {
  (void)state;
  decode_error("\"\xff\"", 3, "line 1, column 2: invalid UTF-8 in string");
  decode_error("\"\xc0\xaf\"", 4, "line 1, column 2: invalid UTF-8 in string");
  decode_error("\"\xed\xa0\x80\"", 5,
               "line 1, column 2: invalid UTF-8 in string");
  decode_error("\"ab\xf4\x90\x80\x80\"", 8,
               "line 1, column 4: invalid UTF-8 in string");
  decode_error("\"\xe2\x82\"", 4, "line 1, column 2: invalid UTF-8 in string");
  decode_error("\"\\ud83d\"", 8,
               "line 1, column 2: unpaired UTF-16 surrogate in \\u escape");
  decode_error("\"\\ude00x\"", 9,
               "line 1, column 2: unpaired UTF-16 surrogate in \\u escape");
  decode_error("\"\\ud83d\\u0041\"", 14,
               "line 1, column 2: unpaired UTF-16 surrogate in \\u escape");
  /* Keys too (the key cache takes plain keys only, general decoder
   * included). */
  decode_error("{\"ok\":1,\"k\xff\":1}", 14,
               "line 1, column 11: invalid UTF-8 in string");
  decode_error("{\"ok\":1,\"k\x01\":1}", 14,
               "line 1, column 11: control character U+0001 in string (must "
               "be escaped)");
  decode_error("{\"k\":1,\"\\u006b\":2}", 18,
               "line 1, column 8: duplicate key \"k\"");
  encode_lua("return {name = 'bad\\xff'}", "!name: invalid UTF-8 in string");
  /* In a key: the path names the key. */
  encode_lua("return {a = {['k\\xff'] = 1, b = 2}}",
             "!a.k\xff: invalid UTF-8 in string");
}

static void test_syntax_errors(void **state) {
  (void)state;
  const char *in = "{\n  \"a\": tru\n}";
  decode_error(in, strlen(in),
               "line 2, column 8: invalid literal (expected 'true')");
  decode_error("", 0, "line 1, column 1: unexpected end of input");
  decode_error("   ", 3, "line 1, column 4: unexpected end of input");
  decode_error("{} x", 4,
               "line 1, column 4: unexpected content after the JSON value");
  decode_error("[1,]", 4, "line 1, column 4: unexpected character ']'");
  decode_error("{\"a\":1,}", 8,
               "line 1, column 8: object key (a string) expected");
  decode_error("{\"a\" 1}", 7,
               "line 1, column 6: ':' expected after object key");
  decode_error("[1 2]", 5, "line 1, column 4: ',' or ']' expected in array");
  decode_error("{\"a\":1 \"b\":2}", 13,
               "line 1, column 8: ',' or '}' expected in object");
  decode_error("\"abc", 4, "line 1, column 1: unterminated string");
  decode_error("\"a\nb\"", 5,
               "line 1, column 3: control character U+000A in string "
               "(must be escaped)");
  decode_error("\"\\x\"", 4, "line 1, column 2: invalid escape '\\x'");
  decode_error("\"\\u12g4\"", 8, "line 1, column 2: invalid \\u escape");
  decode_error("01", 2, "line 1, column 1: invalid number (leading zero)");
  decode_error("1.", 2,
               "line 1, column 1: invalid number (digit expected after '.')");
  decode_error("1e", 2,
               "line 1, column 1: invalid number (digit expected in exponent)");
  decode_error("-", 1, "line 1, column 1: invalid number");
  decode_error("1e999", 5, "line 1, column 1: number out of range");
  decode_error("{\"a\":1,\"a\":2}", 13,
               "line 1, column 8: duplicate key \"a\"");
  decode_error("[\n\n  {\"x\": [1, 2,\n    @]}]", 24,
               "line 4, column 5: unexpected character '@'");
  decode_error("\x01", 1, "line 1, column 1: unexpected byte 0x01");
  decode_error("[1", 2, "line 1, column 3: unexpected end of input in array");
}

static void test_depth_limit(void **state) {
  (void)state;
  char buf[2 * (AMC_JSON_MAX_DEPTH + 1) + 1];
  int n = AMC_JSON_MAX_DEPTH;
  for (int i = 0; i < n; i++) {
    buf[i] = '[';
    buf[n + i] = ']';
  }
  buf[2 * n] = 0;
  char err[256];
  assert_int_equal(amc_json_decode(L, buf, strlen(buf), err, sizeof err), 0);
  amc_buf_t b = AMC_BUF_INIT;
  assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
  assert_string_equal(b.data, buf);
  amc_buf_free(&b);
  lua_pop(L, 1);
  n = AMC_JSON_MAX_DEPTH + 1;
  for (int i = 0; i < n; i++) {
    buf[i] = '[';
    buf[n + i] = ']';
  }
  buf[2 * n] = 0;
  decode_error(buf, strlen(buf), "line 1, column 129: nesting deeper than 128");
  /* Deep input never blows the C stack: the limit applies first. */
  size_t big = 100000;
  char *deep = malloc(big);
  memset(deep, '[', big);
  decode_error(deep, big, "line 1, column 129: nesting deeper than 128");
  free(deep);
  encode_lua("local t = {} local c = t for i = 1, 200 do c.x = {} c = c.x end "
             "return t",
             "!x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x."
             "x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x."
             "x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x."
             "x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x: "
             "nesting deeper than 128");
}

static void test_encode_errors_name_path(void **state) {
  (void)state;
  encode_lua("return {spec = {servers = {{port = 1}, {port = 2}, "
             "{port = function() end}}}}",
             "!spec.servers[2].port: cannot encode a function");
  encode_lua("local t = {a = {}} t.a.b = t return t",
             "!a.b: cannot encode a cycle (table contains itself)");
  /* Named where the table first repeats, even through arrays and with
   * an error after it; the same with a deep value before the cycle. */
  encode_lua("local t = {} t[1] = {t} return {a = t}",
             "!a[0][0]: cannot encode a cycle (table contains itself)");
  encode_lua("local t = {} t.a = t t.b = function() end return t",
             "!a: cannot encode a cycle (table contains itself)");
  encode_lua("local t = {} t.x = t return {t}",
             "![0].x: cannot encode a cycle (table contains itself)");
  char want[300] = "!z";
  for (int i = 0; i < 101; i++)
    strcat(want, ".y");
  strcat(want, ": cannot encode a cycle (table contains itself)");
  encode_lua("local t = {z = {}} local c = t.z for i = 1, 100 do "
             "c.y = {} c = c.y end c.y = t.z return t",
             want);
  encode_lua("return {a = {1, 2, x = 3}}",
             "!a: cannot encode a table mixing string keys with other keys "
             "(object keys must be strings)");
  encode_lua("return {a = {[1] = 1, [3] = 3}}",
             "!a: cannot encode an array with holes or non-index keys");
  encode_lua("return {[true] = 1}",
             "!cannot encode a table mixing string keys with other keys "
             "(object keys must be strings)");
  encode_lua("return {a = {[1.5] = 1}}",
             "!a: cannot encode a table mixing string keys with other keys "
             "(object keys must be strings)");
  encode_lua("return setmetatable({x = 1}, json.array_mt)",
             "!cannot encode an array with holes or non-index keys");
  encode_lua("return {co = coroutine.create(function() end)}",
             "!co: cannot encode a thread");
  /* The same table referenced twice (not a cycle) is fine. */
  encode_lua("local s = {1} return {a = s, b = s}", "{\"a\":[1],\"b\":[1]}");
}

static void test_pretty(void **state) {
  (void)state;
  encode_lua("return {b = {1, {c = 'x'}}, a = {}, e = json.array_mt and "
             "setmetatable({}, json.array_mt), n = json.null}",
             "{\"a\":{},\"b\":[1,{\"c\":\"x\"}],\"e\":[],\"n\":null}");
  assert_int_equal(
      luaL_dostring(L, "return {b = {1, {c = 'x'}}, a = {}, "
                       "e = setmetatable({}, json.array_mt), n = json.null}"),
      LUA_OK);
  amc_buf_t b = AMC_BUF_INIT;
  char err[256];
  assert_int_equal(amc_json_encode_pretty(L, -1, &b, err, sizeof err), 0);
  assert_string_equal(b.data, "{\n"
                              "  \"a\": {},\n"
                              "  \"b\": [\n"
                              "    1,\n"
                              "    {\n"
                              "      \"c\": \"x\"\n"
                              "    }\n"
                              "  ],\n"
                              "  \"e\": [],\n"
                              "  \"n\": null\n"
                              "}\n");
  lua_pop(L, 1);
  amc_buf_free(&b);
}

/* Re-indenting canonical text gives exactly the pretty encoder's bytes. */
static void test_pretty_canonical(void **state) {
  (void)state;
  static const char *const values[] = {
      "return {b = {1, {c = 'x,y:{z}[]'}}, a = {}, e = "
      "setmetatable({}, json.array_mt), n = json.null, q = 'say \"hi\" \\\\'}",
      "return {}",
      "return setmetatable({}, json.array_mt)",
      "return 'plain'",
      "return {{{{1}}}, {x = {y = {}}}}",
      "return {['k:e,y'] = {['\"'] = '\\\\\"'}}",
  };
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    assert_int_equal(luaL_dostring(L, values[i]), LUA_OK);
    amc_buf_t c = AMC_BUF_INIT, p = AMC_BUF_INIT, r = AMC_BUF_INIT;
    char err[256];
    assert_int_equal(amc_json_encode(L, -1, &c, err, sizeof err), 0);
    assert_int_equal(amc_json_encode_pretty(L, -1, &p, err, sizeof err), 0);
    assert_int_equal(amc_json_pretty_canonical(c.data, c.len, &r), 0);
    assert_string_equal(r.data, p.data);
    lua_pop(L, 1);
    amc_buf_free(&c);
    amc_buf_free(&p);
    amc_buf_free(&r);
  }
  amc_buf_t r = AMC_BUF_INIT;
  assert_int_equal(amc_json_pretty_canonical("{\"a\":[1}", 9, &r), -1);
  amc_buf_free(&r);
}

static void test_lua_module(void **state) {
  (void)state;
  const char *code =
      "local v = json.decode('{\"a\":[1,null,{}],\"b\":[]}')\n"
      "assert(v.a[2] == json.null)\n"
      "assert(getmetatable(v.b) == json.array_mt)\n"
      "assert(json.encode(v) == '{\"a\":[1,null,{}],\"b\":[]}')\n"
      "assert(json.pretty({x = 1}) == '{\\n  \"x\": 1\\n}\\n')\n"
      "local ok, err = pcall(json.decode, '{')\n"
      "assert(not ok and err:find('json.decode: line 1, column 2: "
      "unexpected end of input in object', 1, true), err)\n"
      "ok, err = pcall(json.encode, {f = print})\n"
      "assert(not ok and err:find('f: cannot encode a function', 1, true), "
      "err)\n";
  if (luaL_dostring(L, code) != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
}

/* A decoded object is independent: mutating it changes nothing else, and
 * decoding again gives fresh tables. */
static void test_decode_fresh_tables(void **state) {
  (void)state;
  const char *code = "local s = '{\"m\":{\"x\":1}}'\n"
                     "local a, b = json.decode(s), json.decode(s)\n"
                     "a.m.x = 2\n"
                     "assert(b.m.x == 1 and a.m ~= b.m)\n";
  if (luaL_dostring(L, code) != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
}

/* The canonical-input decoder gives the same values and still reports
 * syntax errors. */
/* The canonical decoder's key (and string value) cache: keys and values
 * of every length that differ from a cached one in a single byte must
 * come out as themselves. */
static void test_decode_canonical_key_cache(void **state) {
  (void)state;
  char key[48], json[128], err[256];
  for (size_t n = 1; n <= 40; n++) {
    for (size_t i = 0; i < n; i++)
      key[i] = (char)('a' + (i * 5 + n) % 26);
    for (size_t at = 0; at < n; at++) {
      for (int round = 0; round < 2; round++) {
        char was = key[at];
        if (round)
          key[at] = (char)(was == 'z' ? 'a' : was + 1);
        int len = snprintf(json, sizeof json, "{\"%.*s\":\"%.*s\"}", (int)n,
                           key, (int)n, key);
        assert_int_equal(
            amc_json_decode_canonical(L, json, (size_t)len, err, sizeof err),
            0);
        lua_pushnil(L);
        assert_true(lua_next(L, -2));
        size_t kl, vl;
        const char *k = lua_tolstring(L, -2, &kl);
        assert_int_equal(kl, n);
        assert_memory_equal(k, key, n);
        const char *v = lua_tolstring(L, -1, &vl); /* the value cache's */
        assert_int_equal(vl, n);
        assert_memory_equal(v, key, n);
        lua_settop(L, 0);
        key[at] = was;
      }
    }
  }
}

/* Deep and wide at once: every level keeps 31 members pending on the Lua
 * stack (and arrays 63 elements) when the next level opens, so the stack
 * room the decoder reserves must keep up (ASan sees an overrun). */
static void test_decode_deep_and_wide(void **state) {
  (void)state;
  amc_buf_t in = AMC_BUF_INIT, want = AMC_BUF_INIT;
  int depth = 120;
  for (int lvl = 0; lvl < depth; lvl++) {
    if (lvl % 2) {
      amc_buf_putc(&in, '[');
      for (int i = 0; i < 63; i++)
        amc_buf_printf(&in, "%d,", i);
    } else {
      amc_buf_putc(&in, '{');
      for (int i = 0; i < 31; i++)
        amc_buf_printf(&in, "\"k%02d\":%d,", i, i);
      amc_buf_puts(&in, "\"z\":");
    }
  }
  amc_buf_puts(&in, "true");
  for (int lvl = depth - 1; lvl >= 0; lvl--)
    amc_buf_putc(&in, lvl % 2 ? ']' : '}');
  for (int canonical = 0; canonical < 2; canonical++) {
    char err[256];
    int rc = canonical ? amc_json_decode_canonical(L, in.data, in.len, err,
                                                   sizeof err)
                       : amc_json_decode(L, in.data, in.len, err, sizeof err);
    if (rc != 0)
      fail_msg("decode: %s", err);
    amc_buf_reset(&want);
    assert_int_equal(amc_json_encode(L, -1, &want, err, sizeof err), 0);
    assert_string_equal(want.data, in.data);
    lua_settop(L, 0);
  }
  amc_buf_free(&in);
  amc_buf_free(&want);
}

static void test_decode_canonical(void **state) {
  (void)state;
  const char *in = "{\"a\":[1,2.5,\"\xc3\xa9\",null,{}],\"b\":[]}";
  char err[256];
  assert_int_equal(
      amc_json_decode_canonical(L, in, strlen(in), err, sizeof err), 0);
  amc_buf_t b = AMC_BUF_INIT;
  assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
  assert_string_equal(b.data, in);
  lua_pop(L, 1);
  amc_buf_free(&b);
  assert_int_equal(amc_json_decode_canonical(L, "{\"a\":}", 6, err, sizeof err),
                   -1);
  assert_string_equal(err, "line 1, column 6: unexpected character '}'");
}

/* amc_json_push_canonical (no protected call of its own) decodes as
 * amc_json_decode_canonical, escapes and all; a syntax error leaves the
 * stack as it was and names the position. */
static int push_canonical_in_lua(lua_State *S) {
  size_t n;
  const char *s = lua_tolstring(S, 1, &n);
  char err[256];
  if (amc_json_push_canonical(S, s, n, err, sizeof err) < 0) {
    if (lua_gettop(S) != 1)
      return luaL_error(S, "stack changed on error");
    lua_pushnil(S);
    lua_pushstring(S, err);
    return 2;
  }
  return 1;
}

static void test_push_canonical(void **state) {
  (void)state;
  const char *in = "{\"a\":[1,2.5,\"q\\\"\\\\\\u00e9x\",null,{}],"
                   "\"b\":[],\"c\":{\"d\":true}}";
  const char *want = "{\"a\":[1,2.5,\"q\\\"\\\\\xc3\xa9x\",null,{}],"
                     "\"b\":[],\"c\":{\"d\":true}}";
  int top = lua_gettop(L);
  lua_pushcfunction(L, push_canonical_in_lua);
  lua_pushstring(L, in);
  assert_int_equal(lua_pcall(L, 1, 2, 0), LUA_OK);
  assert_true(lua_istable(L, -2));
  amc_buf_t b = AMC_BUF_INIT;
  char err[256];
  assert_int_equal(amc_json_encode(L, -2, &b, err, sizeof err), 0);
  assert_string_equal(b.data, want);
  amc_buf_free(&b);
  lua_settop(L, top);
  lua_pushcfunction(L, push_canonical_in_lua);
  lua_pushstring(L, "{\"a\":[1,}");
  assert_int_equal(lua_pcall(L, 1, 2, 0), LUA_OK);
  assert_true(lua_isnil(L, -2));
  assert_string_equal(lua_tostring(L, -1),
                      "line 1, column 9: unexpected character '}'");
  lua_settop(L, top);
}

/* Same values, Lua types (integer or float), metatables and pairs()
 * order, recursively: a Lua function left as global `json_same`. */
static void define_json_same(void) {
  const char *code =
      "local function keys(t)\n"
      "  local r = {}\n"
      "  for k in pairs(t) do r[#r + 1] = k end\n"
      "  return r\n"
      "end\n"
      "local function same(a, b)\n"
      "  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then\n"
      "    return false\n"
      "  end\n"
      "  if type(a) ~= 'table' then return a == b end\n"
      "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
      "  local ka, kb = keys(a), keys(b)\n"
      "  if #ka ~= #kb then return false end\n"
      "  for i = 1, #ka do\n"
      "    if ka[i] ~= kb[i] or not same(a[ka[i]], b[ka[i]]) then\n"
      "      return false\n"
      "    end\n"
      "  end\n"
      "  return true\n"
      "end\n"
      "json_same = same\n";
  if (luaL_dostring(L, code) != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
}

/* The canonical decoders (a fast path for the encoder's output, the
 * general decoder for anything else) give exactly the general decoder's
 * values, and its errors. */
static void test_decode_canonical_same_as_general(void **state) {
  (void)state;
  define_json_same();
  amc_buf_t deep = AMC_BUF_INIT, too_deep = AMC_BUF_INIT;
  for (int i = 0; i < AMC_JSON_MAX_DEPTH; i++)
    amc_buf_puts(&deep, i % 2 ? "{\"k\":" : "[");
  amc_buf_puts(&deep, "-12");
  for (int i = AMC_JSON_MAX_DEPTH - 1; i >= 0; i--)
    amc_buf_putc(&deep, i % 2 ? '}' : ']');
  amc_buf_printf(&too_deep, "[%s]", deep.data);
  const char *valid[] = {
      "{\"a\":\"x\\u00e9\\ud83d\\ude00\\n\\\"\\\\\\/\",\"b\":-0,\"c\":-0.0,"
      "\"d\":1.0,\"e\":1e3,\"f\":12345678901234567890,"
      "\"g\":-9223372036854775808,\"h\":9223372036854775807,"
      "\"i\":123456789012345678,\"j\":-1234567890123456789,\"k\":0.5,"
      "\"l\":[],\"m\":{},\"n\":null,\"o\":true,\"p\":false,"
      "\"q\":[[],[{}],[null,1,\"s\",-7,1E-2,2e+2]],\"r\":\"\xc3\xa9\","
      "\"\\u0053\":\"key with an escape\",\"\xc3\xa9\":\"key >= 0x80\","
      "\"\":\"empty key\",\"s\":\"\",\"t\":9223372036854775808,"
      "\"u\":-9223372036854775809,\"v\":0,\"w\":-1,\"x\":100000000000000000}",
      "[1,2,3]",
      "\"top\"",
      "-5",
      "3.25",
      "null",
      "true",
      "{\"z\":1,\"y\":2,\"x\":3,\"w\":4,\"v\":5,\"u\":6,\"t\":7,\"s\":8,"
      "\"r\":9,\"q\":10,\"p\":11,\"o\":12,\"n\":13}",
      " { \"a\" : [ 1 , 2 ] , \"b\":{\"c\" :null} } ", /* not canonical */
      "{\"a\":1}\n",
      deep.data,
  };
  char err[256], err2[256];
  for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
    const char *in = valid[i];
    lua_getglobal(L, "json_same");
    if (amc_json_decode(L, in, strlen(in), err, sizeof err) != 0)
      fail_msg("decode(%s): %s", in, err);
    for (int way = 0; way < 2; way++) {
      int top = lua_gettop(L);
      if (way == 0) {
        if (amc_json_decode_canonical(L, in, strlen(in), err, sizeof err))
          fail_msg("decode_canonical(%s): %s", in, err);
      } else {
        lua_pushcfunction(L, push_canonical_in_lua);
        lua_pushstring(L, in);
        assert_int_equal(lua_pcall(L, 1, 2, 0), LUA_OK);
        lua_pop(L, 1);
      }
      assert_int_equal(lua_gettop(L), top + 1);
      lua_pushvalue(L, -3);
      lua_pushvalue(L, -3);
      lua_pushvalue(L, -3);
      assert_int_equal(lua_pcall(L, 2, 1, 0), LUA_OK);
      if (!lua_toboolean(L, -1))
        fail_msg("canonical decode %d differs: %s", way, in);
      lua_pop(L, 2);
    }
    lua_pop(L, 2);
  }
  const char *invalid[] = {
      "{\"a\":01}",
      "{\"a\":1.}",
      "{\"a\":tru}",
      "{\"a\":\"x",
      "{\"a\":1}x",
      "[1,]",
      "{\"a\":1,}",
      "{\"a\"1}",
      "{\"a\":\"\x01\"}",
      "{\"a\":-}",
      "{\"a\":1e}",
      "{\"a\":\"\\x\"}",
      "{\"a\":\"\\ud800\"}",
      "[",
      "",
      "{\"a\":[1 2]}",
      "{\"a\":1e999}",
      "{1:2}",
      "nul",
      too_deep.data,
  };
  for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
    const char *in = invalid[i];
    int top = lua_gettop(L);
    assert_int_equal(amc_json_decode(L, in, strlen(in), err, sizeof err), -1);
    assert_int_equal(
        amc_json_decode_canonical(L, in, strlen(in), err2, sizeof err2), -1);
    assert_string_equal(err2, err);
    assert_int_equal(lua_gettop(L), top);
    lua_pushcfunction(L, push_canonical_in_lua);
    lua_pushstring(L, in);
    assert_int_equal(lua_pcall(L, 1, 2, 0), LUA_OK);
    assert_true(lua_isnil(L, -2));
    assert_string_equal(lua_tostring(L, -1), err);
    lua_settop(L, top);
  }
  amc_buf_free(&deep);
  amc_buf_free(&too_deep);
}

/* The encoder remembers quoted keys by their string's address: keys that
 * need escapes, long keys, and a key whose string died (its address may be
 * reused by another string after a collection) still come out right. */
static void test_encode_key_cache(void **state) {
  (void)state;
  for (int round = 0; round < 200; round++) {
    char code[400];
    snprintf(code, sizeof code,
             "local k = 'k' .. %d\n"
             "return { [k] = 1, ['q\\\"k'] = 2, ['a\\nb'] = 3,\n"
             "  [string.rep('L', 40)] = 4, name = 'n', x%d = 5 }",
             round, round % 7);
    if (luaL_dostring(L, code) != LUA_OK)
      fail_msg("%s", lua_tostring(L, -1));
    amc_buf_t b = AMC_BUF_INIT, want = AMC_BUF_INIT;
    char err[256];
    assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
    amc_buf_printf(&want,
                   "{\"%s\":4,\"%s\":3,\"k%d\":1,\"name\":\"n\","
                   "\"q\\\"k\":2,\"x%d\":5}",
                   "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL", "a\\nb", round,
                   round % 7);
    assert_string_equal(b.data, want.data);
    amc_buf_free(&b);
    amc_buf_free(&want);
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT); /* the keys' strings die */
  }
}

/* Keys at the cache's length limit, after another key (the cached copy
 * then starts with the comma), encoded again from the cache: each byte of
 * the quoted form, the colon too (a 30-byte key lost its colon to
 * whatever the buffer held: found by fuzz_yaml). */
static void test_encode_key_cache_longest(void **state) {
  (void)state;
  for (int len = 26; len <= 34; len++) {
    char code[200], want[200];
    snprintf(code, sizeof code,
             "K = K or {}; K[%d] = K[%d] or string.rep('k', %d)\n"
             "return { a = 1, [K[%d]] = 2 }",
             len, len, len, len);
    snprintf(want, sizeof want, "{\"a\":1,\"%.*s\":2}", len,
             "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk");
    for (int again = 0; again < 3; again++) {
      amc_buf_t b = AMC_BUF_INIT;
      /* a buffer with room: the cached copy takes its fixed-size path */
      amc_buf_reserve(&b, 4096);
      memset(b.data, 0, 4096);
      if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
      char err[256];
      assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
      assert_int_equal(b.len, strlen(want));
      assert_memory_equal(b.data, want, b.len);
      amc_buf_free(&b);
      lua_pop(L, 1);
    }
  }
}

/* Containers longer than the decoder's chunk (built on the stack, then
 * grown) and the encoder's stack batch; keys through the key cache (short,
 * repeated, colliding), past it (long) and escaped. */
static void test_large_containers(void **state) {
  (void)state;
  amc_buf_t in = AMC_BUF_INIT, want = AMC_BUF_INIT, arr = AMC_BUF_INIT;
  amc_buf_putc(&arr, '[');
  for (int i = 0; i < 150; i++)
    amc_buf_printf(&arr, "%s%d", i ? "," : "", i * 7 - 300);
  amc_buf_putc(&arr, ']');
  /* Keys k000..k099 in reverse order in, sorted out. */
  amc_buf_putc(&in, '{');
  for (int i = 99; i >= 0; i--)
    amc_buf_printf(&in, "%s\"k%03d\":%s", i < 99 ? "," : "", i,
                   i % 10 ? "1" : arr.data);
  amc_buf_puts(&in, ",\"a_key_longer_than_the_cache_holds_0123456789\":"
                    "{\"k001\":2,\"k\\u0030\":3}}");
  amc_buf_puts(&want, "{\"a_key_longer_than_the_cache_holds_0123456789\":"
                      "{\"k0\":3,\"k001\":2}");
  for (int i = 0; i < 100; i++)
    amc_buf_printf(&want, ",\"k%03d\":%s", i, i % 10 ? "1" : arr.data);
  amc_buf_putc(&want, '}');
  char err[256];
  for (int canonical = 0; canonical < 2; canonical++) {
    for (int round = 0; round < 2; round++) { /* the second hits the cache */
      int rc = canonical ? amc_json_decode_canonical(L, in.data, in.len, err,
                                                     sizeof err)
                         : amc_json_decode(L, in.data, in.len, err, sizeof err);
      if (rc != 0)
        fail_msg("decode: %s", err);
      amc_buf_t b = AMC_BUF_INIT;
      assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
      assert_string_equal(b.data, want.data);
      lua_getfield(L, -1, "k050");
      assert_int_equal(lua_rawlen(L, -1), 150);
      lua_rawgeti(L, -1, 150);
      assert_int_equal(lua_tointeger(L, -1), 149 * 7 - 300);
      lua_pop(L, 3);
      amc_buf_free(&b);
    }
  }
  /* A duplicate key after the first chunk of members is still found. */
  amc_buf_reset(&in);
  amc_buf_putc(&in, '{');
  for (int i = 0; i < 80; i++)
    amc_buf_printf(&in, "%s\"k%d\":%d", i ? "," : "", i, i);
  amc_buf_puts(&in, ",\"k3\":0}");
  assert_int_equal(amc_json_decode(L, in.data, in.len, err, sizeof err), -1);
  if (!strstr(err, "duplicate key \"k3\""))
    fail_msg("got: %s", err);
  amc_buf_free(&in);
  amc_buf_free(&want);
  amc_buf_free(&arr);
}

/* Memory exhaustion while decoding is an error return, not a crash. */
static size_t mem_limit, mem_used;
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (!ptr)
    osize = 0;
  if (nsize == 0) {
    mem_used -= osize;
    free(ptr);
    return NULL;
  }
  if (nsize > osize && mem_used + (nsize - osize) > mem_limit)
    return NULL;
  void *p = realloc(ptr, nsize);
  if (p)
    mem_used = mem_used - osize + nsize;
  return p;
}

static void test_decode_out_of_memory(void **state) {
  (void)state;
  mem_limit = 1 << 20;
  mem_used = 0;
  lua_State *S = lua_newstate(limited_alloc, NULL);
  assert_non_null(S);
  amc_buf_t b = AMC_BUF_INIT;
  amc_buf_putc(&b, '[');
  for (int i = 0; i < 100000; i++)
    amc_buf_printf(&b, "%s\"item-%d\"", i ? "," : "", i);
  amc_buf_putc(&b, ']');
  char err[256];
  assert_int_equal(amc_json_decode(S, b.data, b.len, err, sizeof err), -1);
  assert_non_null(strstr(err, "out of memory"));
  assert_int_equal(lua_gettop(S), 0);
  lua_close(S);
  amc_buf_free(&b);
}

static void collect_str(const char *v, size_t n, void *ud) {
  amc_buf_t *b = ud;
  amc_buf_append(b, v, n);
  amc_buf_putc(b, '|');
}

/* "a|b|" for the strings at `path` (a dotted path), or "ERR". */
static const char *strings_at(const char *json, const char *dotted) {
  static amc_buf_t b;
  char tmp[128];
  const char *segs[8];
  size_t n = 0;
  snprintf(tmp, sizeof tmp, "%s", dotted);
  for (char *p = strtok(tmp, "."); p; p = strtok(NULL, "."))
    segs[n++] = p;
  amc_buf_reset(&b);
  amc_buf_puts(&b, "");
  if (amc_json_strings_at(json, strlen(json), segs, n, collect_str, &b) < 0)
    return "ERR";
  return b.data;
}

static void test_strings_at(void **state) {
  (void)state;
  const char *j = "{\"a\":{\"b\":[\"x\",1,{\"c\":\"no\"},[\"no\"],\"y\\\"z\"],"
                  "\"s\":\"one\",\"n\":5,\"o\":{\"p\":\"q\"}},\"k\\u00e9\":"
                  "\"esc\",\"z\":[1,2,\"w\"]}";
  assert_string_equal(strings_at(j, "a.b"), "x|y\"z|");
  assert_string_equal(strings_at(j, "a.s"), "one|");
  assert_string_equal(strings_at(j, "a.n"), "");
  assert_string_equal(strings_at(j, "a.o"), "");
  assert_string_equal(strings_at(j, "a.o.p"), "q|");
  assert_string_equal(strings_at(j, "a.b.c"), ""); /* no arrays mid-path */
  assert_string_equal(strings_at(j, "a.missing"), "");
  assert_string_equal(strings_at(j, "k\xc3\xa9"), "esc|");
  assert_string_equal(strings_at(j, "z"), "w|");
  assert_string_equal(strings_at(" { \"a\" : [ \"x\" , \"y\" ] } ", "a"),
                      "x|y|");
  assert_string_equal(strings_at("{\"a\":[\"x\",", "a"), "ERR");
  assert_string_equal(strings_at("{\"b\":{\"a\":1", "a"), "ERR");
  assert_string_equal(strings_at("[\"a\"]", "a"), "");
  /* Skipped values with brackets and escapes inside strings, long runs. */
  assert_string_equal(
      strings_at("{\"a\":{\"x\":\"}\\\"]{[\",\"y\":[{\"q\":\"[\\\\\"},"
                 "\"0123456789abcdef0123456789\"]},\"b\":\"ok\"}",
                 "b"),
      "ok|");
  assert_string_equal(strings_at("{\"a\":[\"0123456789abcdef\\\"x", "b"),
                      "ERR");
  /* Unescaped strings come from the text, escaped ones from a copy. */
  assert_string_equal(
      strings_at(
          "{\"a\":[\"p\\\"q\",\"plain and long enough\",\"\\u0041\",\"\"]}",
          "a"),
      "p\"q|plain and long enough|A||");
}

/* amc_json_encode_memo gives amc_json_encode's bytes, with subtables shared
 * between the encoded values (and an error still reported each time). */
static void test_encode_memo(void **state) {
  (void)state;
  if (luaL_dostring(L, "local m = {{key = 'c', values = {'x'}}}\n"
                       "local e = setmetatable({}, json.array_mt)\n"
                       "local bad = {f = function() end}\n"
                       "return {{name = 'a', markers = m, e = e},\n"
                       "  {name = 'b', markers = m, list = {m, m}, e = e},\n"
                       "  {name = 'c', bad = bad}, {name = 'd', bad = bad},\n"
                       "  {name = 'e', markers = m, n = {1, 2.5, 'z'}}}") !=
      LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
  int list = lua_gettop(L);
  amc_json_memo_t *m = amc_json_memo_new();
  assert_non_null(m);
  for (int i = 1; i <= 5; i++) {
    lua_rawgeti(L, list, i);
    amc_buf_t want = AMC_BUF_INIT, got = AMC_BUF_INIT;
    char err1[200] = "", err2[200] = "";
    int r1 = amc_json_encode(L, -1, &want, err1, sizeof err1);
    int r2 = amc_json_encode_memo(L, -1, &got, m, err2, sizeof err2);
    assert_int_equal(r1, r2);
    if (r1 == 0)
      assert_string_equal(got.data, want.data);
    else
      assert_string_equal(err2, err1);
    assert_int_equal(r1, i == 3 || i == 4 ? -1 : 0);
    amc_buf_free(&want);
    amc_buf_free(&got);
    lua_pop(L, 1);
  }
  amc_json_memo_free(m);
  amc_json_memo_free(NULL);
  lua_settop(L, list - 1);
}

/* The tokens amc_json_encode_tape records: output order, unescaped
 * strings, integral floats as the integers they are written as, a memo
 * copy (a table met a third time) as one RAW token over its bytes. */
static void test_encode_tape(void **state) {
  (void)state;
  if (luaL_dostring(L, "local m = {key = 'k', values = {'v'}}\n"
                       "return {b = 1, a = {'x\\\"y', true, false},\n"
                       "  c = 2.0, d = 0.5, e = json.null, f = m,\n"
                       "  g = setmetatable({}, json.array_mt), h = {}}, m") !=
      LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
  int v = lua_gettop(L) - 1;
  amc_buf_t b = AMC_BUF_INIT;
  amc_json_tape_t tape = AMC_JSON_TAPE_INIT;
  char err[200];
  assert_int_equal(amc_json_encode_tape(L, v, &b, NULL, &tape, err, sizeof err),
                   0);
  assert_string_equal(b.data, "{\"a\":[\"x\\\"y\",true,false],\"b\":1,"
                              "\"c\":2,\"d\":0.5,\"e\":null,"
                              "\"f\":{\"key\":\"k\",\"values\":[\"v\"]},"
                              "\"g\":[],\"h\":{}}");
  static const int want[] = {AMC_JT_OBJ,  AMC_JT_KEY,   AMC_JT_ARR,  AMC_JT_STR,
                             AMC_JT_TRUE, AMC_JT_FALSE, AMC_JT_END,  AMC_JT_KEY,
                             AMC_JT_INT,  AMC_JT_KEY,   AMC_JT_INT,  AMC_JT_KEY,
                             AMC_JT_FLT,  AMC_JT_KEY,   AMC_JT_NULL, AMC_JT_KEY,
                             AMC_JT_OBJ,  AMC_JT_KEY,   AMC_JT_STR,  AMC_JT_KEY,
                             AMC_JT_ARR,  AMC_JT_STR,   AMC_JT_END,  AMC_JT_END,
                             AMC_JT_KEY,  AMC_JT_ARR,   AMC_JT_END,  AMC_JT_KEY,
                             AMC_JT_OBJ,  AMC_JT_END,   AMC_JT_END};
  assert_int_equal(tape.n, sizeof want / sizeof want[0]);
  assert_int_equal(tape.failed, 0);
  for (size_t i = 0; i < tape.n; i++)
    if (tape.tok[i].kind != want[i])
      fail_msg("token %zu: kind %d, want %d", i, tape.tok[i].kind, want[i]);
  assert_int_equal(tape.tok[1].len, 1);
  assert_memory_equal(tape.tok[1].u.s, "a", 1);
  assert_int_equal(tape.tok[3].len, 3); /* x"y, unescaped */
  assert_memory_equal(tape.tok[3].u.s, "x\"y", 3);
  assert_int_equal(tape.tok[8].u.i, 1);
  assert_int_equal(tape.tok[10].u.i, 2); /* 2.0, written as 2 */
  assert_true(tape.tok[12].u.d == 0.5);

  /* Through a memo: the tables under the root (a, f, g, h) are kept the
   * second time, RAW tokens over their bytes the third. */
  static const char *const raws[] = {"[\"x\\\"y\",true,false]",
                                     "{\"key\":\"k\",\"values\":[\"v\"]}", "[]",
                                     "{}"};
  amc_json_memo_t *m = amc_json_memo_new();
  for (int i = 0; i < 3; i++) {
    amc_buf_t got = AMC_BUF_INIT;
    amc_buf_putc(&got, '#'); /* offsets are into `out`, not from 0 */
    assert_int_equal(
        amc_json_encode_tape(L, v, &got, m, &tape, err, sizeof err), 0);
    assert_string_equal(got.data + 1, b.data);
    size_t raw = 0;
    for (size_t j = 0; j < tape.n; j++) {
      if (tape.tok[j].kind != AMC_JT_RAW)
        continue;
      assert_true(raw < 4);
      size_t n = strlen(raws[raw]);
      assert_int_equal(tape.tok[j].len, n);
      assert_memory_equal(got.data + tape.tok[j].u.off, raws[raw], n);
      raw++;
    }
    assert_int_equal(raw, i == 2 ? 4 : 0);
    assert_int_equal(tape.n, sizeof want / sizeof want[0] - (i == 2 ? 13 : 0));
    amc_buf_free(&got);
  }
  amc_json_memo_free(m);
  amc_json_tape_free(&tape);
  assert_null(tape.tok);
  amc_buf_free(&b);
  lua_settop(L, v - 1);
}

/* Keys lua_next gives for the table on top, as integers (0: not one). */
static void next_order(lua_Integer *keys, size_t n) {
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (i < n)
      keys[i] = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0;
    i++;
    lua_pop(L, 1);
  }
}

/* Arrays are encoded as lua_next gives their elements while it gives
 * 1, 2, 3...; anything else and what was written is dropped and the
 * table walked again (the general way). The tables here are built so
 * that lua_next gives 1 and 2 (the array part) and then 6 (the hash
 * part): the second walk must start from clean output and tape. */
static void test_encode_array_streaming(void **state) {
  (void)state;
  char err[256];
  for (int marked = 0; marked < 2; marked++) {
    lua_createtable(L, 2, 4);
    static const lua_Integer order[] = {1, 2, 6, 3, 4, 5};
    for (size_t i = 0; i < 6; i++) {
      lua_pushinteger(L, order[i] * 10);
      lua_rawseti(L, -2, order[i]);
    }
    lua_Integer got[6] = {0};
    next_order(got, 6);
    /* (the premise: streamed twice, then a key out of order) */
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 2);
    assert_true(got[2] != 3);
    if (marked) {
      luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
      lua_setmetatable(L, -2);
    }
    amc_buf_t b = AMC_BUF_INIT;
    amc_json_tape_t tape = AMC_JSON_TAPE_INIT;
    assert_int_equal(
        amc_json_encode_tape(L, -1, &b, NULL, &tape, err, sizeof err), 0);
    assert_string_equal(b.data, "[10,20,30,40,50,60]");
    assert_int_equal(tape.n, 8);
    assert_int_equal(tape.tok[0].kind, AMC_JT_ARR);
    for (int i = 1; i <= 6; i++) {
      assert_int_equal(tape.tok[i].kind, AMC_JT_INT);
      assert_int_equal(tape.tok[i].u.i, i * 10);
    }
    assert_int_equal(tape.tok[7].kind, AMC_JT_END);
    /* The same inside an object, after other output. */
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "b");
    lua_pushinteger(L, 1);
    lua_setfield(L, -2, "a");
    amc_buf_reset(&b);
    assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
    assert_string_equal(b.data, "{\"a\":1,\"b\":[10,20,30,40,50,60]}");
    /* An element that fails, on the second walk: named by its index. */
    lua_pushcfunction(L, luaopen_base);
    lua_rawseti(L, -3, 4);
    amc_buf_reset(&b);
    assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), -1);
    assert_string_equal(err, "b[3]: cannot encode a function");
    lua_pop(L, 2);
    amc_json_tape_free(&tape);
    amc_buf_free(&b);
  }
  /* An element that cannot be encoded, in a table that is no array at
   * all: the table's own error, as when it was checked before its
   * elements. */
  encode_lua("local t = setmetatable({function() end}, json.array_mt) "
             "t.x = 1 return {a = t}",
             "!a: cannot encode an array with holes or non-index keys");
  encode_lua("local t = {1, {function() end}} t[4] = 4 return {a = t}",
             "!a: cannot encode an array with holes or non-index keys");
  encode_lua("return {a = {function() end, x = 1}}",
             "!a: cannot encode a table mixing string keys with other keys "
             "(object keys must be strings)");
  encode_lua("local t = {{1}} t[1][1] = t t.x = 1 return {a = t}",
             "!a: cannot encode a table mixing string keys with other keys "
             "(object keys must be strings)");
  /* In an array that is one, the element's own error. */
  encode_lua("return {a = {1, {2, function() end}}}",
             "!a[1][1]: cannot encode a function");
  encode_lua("return setmetatable({1, 2, 0/0}, json.array_mt)",
             "![2]: cannot encode NaN");
  /* Large arrays, in order and not. */
  encode_lua("local t = {} for i = 1, 300 do t[i] = i end "
             "local s = 0 for i = 1, 300 do s = s + #tostring(i) + 1 end "
             "return {n = #json.encode(t) == s + 1}",
             "{\"n\":true}");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_tape),
      cmocka_unit_test(test_roundtrip_basic),
      cmocka_unit_test(test_canonical_key_order),
      cmocka_unit_test(test_empty_array_vs_object),
      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_strings_and_unicode),
      cmocka_unit_test(test_string_escapes_every_position),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_syntax_errors),
      cmocka_unit_test(test_depth_limit),
      cmocka_unit_test(test_encode_errors_name_path),
      cmocka_unit_test(test_pretty),
      cmocka_unit_test(test_pretty_canonical),
      cmocka_unit_test(test_lua_module),
      cmocka_unit_test(test_decode_fresh_tables),
      cmocka_unit_test(test_decode_canonical),
      cmocka_unit_test(test_decode_deep_and_wide),
      cmocka_unit_test(test_decode_canonical_key_cache),
      cmocka_unit_test(test_large_containers),
      cmocka_unit_test(test_decode_out_of_memory),
      cmocka_unit_test(test_strings_at),
      cmocka_unit_test(test_encode_memo),
      cmocka_unit_test(test_push_canonical),
      cmocka_unit_test(test_decode_canonical_same_as_general),
      cmocka_unit_test(test_encode_key_cache),
      cmocka_unit_test(test_encode_key_cache_longest),
      cmocka_unit_test(test_encode_array_streaming),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
