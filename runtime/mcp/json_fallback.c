/* json_fallback.c - TEMPORARY weak stand-ins for runtime/json.c's encoder.
 *
 * runtime/json.c (the project's JSON codec) is built on another branch; until
 * it is merged, these weak definitions let the MCP code link. They follow
 * json.h's canonical rules (sorted keys, array metatable, integers, shortest
 * floats, AMC_JSON_NULL). The strong definitions in json.c replace them at
 * link time; delete this file once json.c is on main. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

__attribute__((weak)) char amc_json_null_sentinel;

static int fb_enc(lua_State *L, int idx, amc_buf_t *o, int depth);

static void fb_str(amc_buf_t *o, const char *s, size_t n) {
  amc_buf_putc(o, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') {
      amc_buf_putc(o, '\\');
      amc_buf_putc(o, (char)ch);
    } else if (ch == '\n') {
      amc_buf_puts(o, "\\n");
    } else if (ch == '\t') {
      amc_buf_puts(o, "\\t");
    } else if (ch == '\r') {
      amc_buf_puts(o, "\\r");
    } else if (ch < 0x20) {
      amc_buf_printf(o, "\\u%04x", ch);
    } else {
      amc_buf_putc(o, (char)ch);
    }
  }
  amc_buf_putc(o, '"');
}

static int fb_cmp(const void *a, const void *b) {
  const char *const *x = a, *const *y = b;
  return strcmp(*x, *y);
}

static int fb_table(lua_State *L, int idx, amc_buf_t *o, int depth) {
  int is_arr = 0;
  if (lua_getmetatable(L, idx)) {
    luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
    is_arr = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  size_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    count++;
    lua_pop(L, 1);
  }
  if (is_arr || (n > 0 && (size_t)n == count)) {
    amc_buf_putc(o, '[');
    for (lua_Integer i = 1; i <= n; i++) {
      if (i > 1)
        amc_buf_putc(o, ',');
      lua_rawgeti(L, idx, i);
      if (fb_enc(L, lua_gettop(L), o, depth + 1))
        return -1;
      lua_pop(L, 1);
    }
    amc_buf_putc(o, ']');
    return 0;
  }
  const char **keys = calloc(count + 1, sizeof *keys);
  size_t k = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      free(keys);
      lua_pop(L, 1);
      return -1;
    }
    keys[k++] = lua_tostring(L, -1); /* anchored by the table */
  }
  qsort(keys, k, sizeof *keys, fb_cmp);
  amc_buf_putc(o, '{');
  for (size_t i = 0; i < k; i++) {
    if (i)
      amc_buf_putc(o, ',');
    fb_str(o, keys[i], strlen(keys[i]));
    amc_buf_putc(o, ':');
    lua_getfield(L, idx, keys[i]);
    if (fb_enc(L, lua_gettop(L), o, depth + 1)) {
      free(keys);
      return -1;
    }
    lua_pop(L, 1);
  }
  amc_buf_putc(o, '}');
  free(keys);
  return 0;
}

static int fb_enc(lua_State *L, int idx, amc_buf_t *o, int depth) {
  if (depth > AMC_JSON_MAX_DEPTH)
    return -1;
  luaL_checkstack(L, 4, NULL);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    amc_buf_puts(o, "null");
    return 0;
  case LUA_TBOOLEAN:
    amc_buf_puts(o, lua_toboolean(L, idx) ? "true" : "false");
    return 0;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      amc_buf_printf(o, "%lld", (long long)lua_tointeger(L, idx));
    } else {
      double d = lua_tonumber(L, idx);
      if (!isfinite(d))
        return -1;
      if (d == floor(d) && fabs(d) < 9e15) {
        amc_buf_printf(o, "%lld", (long long)d);
      } else {
        char b[40];
        for (int p = 1; p <= 17; p++) {
          snprintf(b, sizeof b, "%.*g", p, d);
          if (strtod(b, NULL) == d)
            break;
        }
        amc_buf_puts(o, b);
      }
    }
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    fb_str(o, s, n);
    return 0;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == AMC_JSON_NULL) {
      amc_buf_puts(o, "null");
      return 0;
    }
    return -1;
  case LUA_TTABLE:
    return fb_table(L, idx, o, depth);
  default:
    return -1;
  }
}

__attribute__((weak)) int amc_json_encode(lua_State *L, int idx,
                                          amc_buf_t *out, char *err,
                                          size_t errlen) {
  idx = lua_absindex(L, idx);
  int top = lua_gettop(L);
  int rc = fb_enc(L, idx, out, 0);
  lua_settop(L, top);
  if (rc)
    snprintf(err, errlen, "cannot encode value");
  return rc;
}
