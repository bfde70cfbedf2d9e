/* settings.c - translation settings: defaults, files, flags. */
#include "settings.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "loader.h"
#include "util/buf.h"

static char *xstrdup(const char *s) {
  char *p = strdup(s);
  if (!p)
    abort();
  return p;
}

static void pairs_free(amc_settings_pair_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(p[i].key);
    free(p[i].value);
  }
  free(p);
}

void amc_settings_init(amc_settings_t *s) {
  memset(s, 0, sizeof *s);
  s->cluster = xstrdup("default");
  s->tenant = xstrdup("admin");
  s->cloud = xstrdup("Default-Cloud");
  s->vrf = xstrdup("global");
  s->se_group = xstrdup("Default-Group");
  s->domain = xstrdup("cluster.local");
  s->ingress_selector = calloc(1, sizeof *s->ingress_selector);
  if (!s->ingress_selector)
    abort();
  s->ingress_selector[0].key = xstrdup("istio");
  s->ingress_selector[0].value = xstrdup("ingressgateway");
  s->n_ingress_selector = 1;
}

void amc_settings_free(amc_settings_t *s) {
  free(s->cluster);
  free(s->tenant);
  free(s->cloud);
  free(s->vrf);
  free(s->se_group);
  free(s->domain);
  pairs_free(s->ingress_selector, s->n_ingress_selector);
  pairs_free(s->extra, s->n_extra);
  memset(s, 0, sizeof *s);
}

static char **field(amc_settings_t *s, const char *key) {
  if (strcmp(key, "cluster") == 0)
    return &s->cluster;
  if (strcmp(key, "tenant") == 0)
    return &s->tenant;
  if (strcmp(key, "cloud") == 0)
    return &s->cloud;
  if (strcmp(key, "vrf") == 0)
    return &s->vrf;
  if (strcmp(key, "se_group") == 0)
    return &s->se_group;
  if (strcmp(key, "domain") == 0)
    return &s->domain;
  return NULL;
}

int amc_settings_set(amc_settings_t *s, const char *key, const char *value) {
  char **f = field(s, key);
  if (!f || !value || !*value)
    return -1;
  free(*f);
  *f = xstrdup(value);
  return 0;
}

static int pair_cmp(const void *a, const void *b) {
  return strcmp(((const amc_settings_pair_t *)a)->key,
                ((const amc_settings_pair_t *)b)->key);
}

static void set_extra(amc_settings_t *s, const char *key, const char *json) {
  for (size_t i = 0; i < s->n_extra; i++) {
    if (strcmp(s->extra[i].key, key) == 0) {
      free(s->extra[i].value);
      s->extra[i].value = xstrdup(json);
      return;
    }
  }
  amc_settings_pair_t *p =
      realloc(s->extra, (s->n_extra + 1) * sizeof *s->extra);
  if (!p)
    abort();
  s->extra = p;
  s->extra[s->n_extra].key = xstrdup(key);
  s->extra[s->n_extra].value = xstrdup(json);
  s->n_extra++;
  qsort(s->extra, s->n_extra, sizeof *s->extra, pair_cmp);
}

int amc_settings_apply_lua(amc_settings_t *s, lua_State *L, int idx,
                           const char *what, char *err, size_t errlen) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TLIGHTUSERDATA)
    return 0; /* an empty file */
  int is_seq = 0;
  if (lua_type(L, idx) == LUA_TTABLE && lua_getmetatable(L, idx)) {
    luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
    is_seq = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (lua_type(L, idx) != LUA_TTABLE || is_seq) {
    snprintf(err, errlen, "%s: settings must be a mapping", what);
    return -1;
  }
  int top = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      snprintf(err, errlen, "%s: setting names must be strings", what);
      lua_settop(L, top);
      return -1;
    }
    const char *key = lua_tostring(L, -2);
    char **f = field(s, key);
    if (f) {
      size_t n = 0;
      const char *v =
          lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
      if (!v || n == 0) {
        snprintf(err, errlen, "%s: %s must be a non-empty string", what, key);
        lua_settop(L, top);
        return -1;
      }
      free(*f);
      *f = xstrdup(v);
    } else if (strcmp(key, "ingress_selector") == 0) {
      if (lua_type(L, -1) != LUA_TTABLE) {
        snprintf(err, errlen,
                 "%s: ingress_selector must be a mapping of "
                 "label to value",
                 what);
        lua_settop(L, top);
        return -1;
      }
      amc_settings_pair_t *sel = NULL;
      size_t n = 0;
      int t = lua_gettop(L);
      lua_pushnil(L);
      while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
          pairs_free(sel, n);
          snprintf(err, errlen,
                   "%s: ingress_selector must be a mapping of "
                   "label to value (strings)",
                   what);
          lua_settop(L, top);
          return -1;
        }
        amc_settings_pair_t *p = realloc(sel, (n + 1) * sizeof *sel);
        if (!p)
          abort();
        sel = p;
        sel[n].key = xstrdup(lua_tostring(L, -2));
        sel[n].value = xstrdup(lua_tostring(L, -1));
        n++;
        lua_pop(L, 1);
      }
      if (n > 1)
        qsort(sel, n, sizeof *sel, pair_cmp);
      pairs_free(s->ingress_selector, s->n_ingress_selector);
      s->ingress_selector = sel;
      s->n_ingress_selector = n;
    } else {
      int t = lua_type(L, -1);
      if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN) {
        snprintf(err, errlen,
                 "%s: setting '%s' must be a string, number or boolean", what,
                 key);
        lua_settop(L, top);
        return -1;
      }
      amc_buf_t b = AMC_BUF_INIT;
      char jerr[128];
      if (amc_json_encode(L, -1, &b, jerr, sizeof jerr) < 0) {
        snprintf(err, errlen, "%s: setting '%s': %s", what, key, jerr);
        amc_buf_free(&b);
        lua_settop(L, top);
        return -1;
      }
      set_extra(s, key, b.data);
      amc_buf_free(&b);
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  return 0;
}

int amc_settings_load_file(amc_settings_t *s, const char *path, char *err,
                           size_t errlen) {
  amc_buf_t b = AMC_BUF_INIT;
  int rc = amc_buf_read_file(&b, path);
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(-rc));
    amc_buf_free(&b);
    return -1;
  }
  lua_State *L = luaL_newstate();
  if (!L)
    abort();
  size_t n = strlen(path);
  int json = n >= 5 && strcmp(path + n - 5, ".json") == 0;
  char perr[512];
  if (json) {
    rc = amc_json_decode(L, b.data ? b.data : "", b.len, perr, sizeof perr);
  } else {
    rc = amc_loader_parse_yaml_value(L, path, b.data ? b.data : "", b.len, perr,
                                     sizeof perr);
  }
  amc_buf_free(&b);
  if (rc < 0) {
    if (json)
      snprintf(err, errlen, "%s: %s", path, perr);
    else
      snprintf(err, errlen, "%s", perr);
    lua_close(L);
    return -1;
  }
  rc = amc_settings_apply_lua(s, L, -1, path, err, errlen);
  lua_close(L);
  return rc;
}

void amc_settings_push(lua_State *L, const amc_settings_t *s) {
  lua_createtable(L, 0, 8 + (int)s->n_extra);
  for (size_t i = 0; i < s->n_extra; i++) {
    char e[8];
    if (amc_json_decode(L, s->extra[i].value, strlen(s->extra[i].value), e,
                        sizeof e) == 0)
      lua_setfield(L, -2, s->extra[i].key);
  }
  lua_pushstring(L, s->cluster);
  lua_setfield(L, -2, "cluster");
  lua_pushstring(L, s->tenant);
  lua_setfield(L, -2, "tenant");
  lua_pushstring(L, s->cloud);
  lua_setfield(L, -2, "cloud");
  lua_pushstring(L, s->vrf);
  lua_setfield(L, -2, "vrf");
  lua_pushstring(L, s->se_group);
  lua_setfield(L, -2, "se_group");
  lua_pushstring(L, s->domain);
  lua_setfield(L, -2, "domain");
  lua_createtable(L, 0, (int)s->n_ingress_selector);
  for (size_t i = 0; i < s->n_ingress_selector; i++) {
    lua_pushstring(L, s->ingress_selector[i].value);
    lua_setfield(L, -2, s->ingress_selector[i].key);
  }
  lua_setfield(L, -2, "ingress_selector");
}
