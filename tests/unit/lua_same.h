/* lua_same.h - deep comparison of two Lua values, for tests. */
#ifndef AMC_TEST_LUA_SAME_H
#define AMC_TEST_LUA_SAME_H

#include <lauxlib.h>
#include <lua.h>

/* The Lua values at stack indexes a and b are alike: same types (integer
 * or float too), equal scalars (NaN equals NaN), and tables with the same
 * metatable whose keys next() visits in the same order with values alike.
 * For tests that compare two ways of building the same value. */
static inline int lua_same(lua_State *L, int a, int b) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  int ta = lua_type(L, a);
  if (ta != lua_type(L, b))
    return 0;
  switch (ta) {
  case LUA_TNUMBER: {
    if (lua_isinteger(L, a) != lua_isinteger(L, b))
      return 0;
    if (lua_isinteger(L, a))
      return lua_tointeger(L, a) == lua_tointeger(L, b);
    double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
    return x == y || (x != x && y != y);
  }
  case LUA_TSTRING:
    return lua_rawequal(L, a, b);
  case LUA_TBOOLEAN:
    return lua_toboolean(L, a) == lua_toboolean(L, b);
  case LUA_TLIGHTUSERDATA:
    return lua_touserdata(L, a) == lua_touserdata(L, b);
  case LUA_TTABLE:
    break;
  default:
    return 0;
  }
  luaL_checkstack(L, 16, "same");
  int ma = lua_getmetatable(L, a), mb = lua_getmetatable(L, b);
  if (ma != mb) {
    lua_pop(L, ma + mb);
    return 0;
  }
  if (ma) {
    int e = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!e)
      return 0;
  }
  lua_pushnil(L);
  int ka = lua_gettop(L);
  lua_pushnil(L);
  int kb = lua_gettop(L);
  int ok = 1;
  for (;;) {
    lua_pushvalue(L, ka);
    int ra = lua_next(L, a);
    int t1 = lua_gettop(L);
    lua_pushvalue(L, kb);
    int rb = lua_next(L, b);
    if (ra != rb) {
      ok = 0;
      break;
    }
    if (!ra)
      break;
    /* t1 - 1: key a, t1: value a, t1 + 1: key b, t1 + 2: value b */
    if (!lua_rawequal(L, t1 - 1, t1 + 1) || !lua_same(L, t1, t1 + 2)) {
      ok = 0;
      break;
    }
    lua_pushvalue(L, t1 - 1);
    lua_replace(L, ka);
    lua_pushvalue(L, t1 + 1);
    lua_replace(L, kb);
    lua_settop(L, kb);
  }
  lua_settop(L, ka - 1);
  return ok;
}

/* The values at a and b are equal, whatever order their tables' keys are
 * in: same types, equal scalars (NaN equals NaN), same metatables, the
 * same keys with equal values. */
static inline int lua_equal(lua_State *L, int a, int b) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_type(L, a) != LUA_TTABLE || lua_type(L, b) != LUA_TTABLE)
    return lua_same(L, a, b);
  luaL_checkstack(L, 8, "lua_equal");
  int ma = lua_getmetatable(L, a), mb = lua_getmetatable(L, b);
  int ok = ma == mb && (!ma || lua_rawequal(L, -1, -2));
  lua_pop(L, ma + mb);
  if (!ok)
    return 0;
  long na = 0, nb = 0;
  lua_pushnil(L);
  while (lua_next(L, a)) { /* key, value */
    na++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b); /* key, value, b's value */
    int eq = lua_equal(L, -1, -2);
    lua_pop(L, 2);
    if (!eq) {
      lua_pop(L, 1); /* the key */
      return 0;
    }
  }
  lua_pushnil(L);
  while (lua_next(L, b)) {
    nb++;
    lua_pop(L, 1);
  }
  return na == nb;
}

#endif
