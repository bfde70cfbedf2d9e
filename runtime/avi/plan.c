/* avi/plan.c - the owned-object cache, ownership, comparison and planning.
 * See plan.h. */
#include "avi/plan.h"

#include "json.h"
#include "util/buf.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const amc_avi_owned_types[] = {
    "vsvip",          "sslkeyandcertificate",
    "pkiprofile",     "healthmonitor",
    "pool",           "poolgroup",
    "stringgroup",    "httppolicyset",
    "virtualservice", NULL};

int amc_avi_rank(const char *type, int child) {
  for (int i = 0; amc_avi_owned_types[i]; i++) {
    if (strcmp(type, amc_avi_owned_types[i]) == 0)
      return i + (child && strcmp(type, "virtualservice") == 0 ? 1 : 0);
  }
  return -1;
}

int amc_avi_has_created_by(const char *type) {
  static const char *const t[] = {"virtualservice",
                                  "pool",
                                  "poolgroup",
                                  "httppolicyset",
                                  "sslkeyandcertificate",
                                  "pkiprofile",
                                  "applicationprofile",
                                  NULL};
  for (int i = 0; t[i]; i++) {
    if (strcmp(type, t[i]) == 0)
      return 1;
  }
  return 0;
}

void amc_avi_cksum(const char *s, size_t len, char out[17]) {
  amc_object_cksum(s, len, out);
}

/* ---- small Lua helpers ------------------------------------------------ */

static const char *field_str(lua_State *L, int idx, const char *k) {
  lua_getfield(L, idx, k);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the string stays alive: it is anchored in the table */
  return s;
}

/* Value of marker `key` (first value), or NULL. */
static const char *marker(lua_State *L, int idx, const char *key) {
  const char *out = NULL;
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "markers");
  if (lua_istable(L, -1)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n && !out; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_istable(L, -1)) {
        const char *k = field_str(L, -1, "key");
        if (k && strcmp(k, key) == 0) {
          lua_getfield(L, -1, "values");
          if (lua_istable(L, -1)) {
            lua_rawgeti(L, -1, 1);
            if (lua_type(L, -1) == LUA_TSTRING)
              out = lua_tostring(L, -1);
            lua_pop(L, 1);
          }
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return out;
}

int amc_avi_owned(lua_State *L, int idx, const amc_avi_owner_t *own,
                  const char *type) {
  idx = lua_absindex(L, idx);
  char owner[256];
  snprintf(owner, sizeof owner, "amc-%s", own->cluster);
  if (amc_avi_has_created_by(type)) {
    const char *cb = field_str(L, idx, "created_by");
    return cb && strcmp(cb, owner) == 0;
  }
  char prefix[256];
  snprintf(prefix, sizeof prefix, "amc--%s--", own->cluster);
  const char *name = field_str(L, idx, "name");
  const char *cl = marker(L, idx, "clustername");
  return name && cl && strcmp(cl, own->cluster) == 0 &&
         strncmp(name, prefix, strlen(prefix)) == 0;
}

/* ---- references --------------------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static void url_decode(const char *s, size_t n, char *out, size_t olen) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 1 < olen; i++) {
    if (s[i] == '%' && i + 2 < n + 0 && hexval(s[i + 1]) >= 0 &&
        hexval(s[i + 2]) >= 0) {
      out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else if (s[i] == '+') {
      out[o++] = ' ';
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
}

int amc_avi_ref_parse(const char *ref, char *type, size_t tlen, char *name,
                      size_t nlen) {
  const char *p;
  if (strncmp(ref, "/api/", 5) == 0)
    p = ref + 5;
  else if (strncmp(ref, "http://", 7) == 0 ||
           strncmp(ref, "https://", 8) == 0) {
    p = strstr(ref, "/api/");
    if (!p)
      return -1;
    p += 5;
  } else {
    return -1;
  }
  size_t tl = strcspn(p, "/?#");
  if (tl == 0 || tl >= tlen)
    return -1;
  for (size_t i = 0; i < tl; i++) {
    if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9')))
      return -1;
  }
  memcpy(type, p, tl);
  type[tl] = '\0';
  p += tl;
  if (*p == '/' && p[1] == '?')
    p++;
  if (*p == '?') {
    const char *q = strstr(p, "name=");
    while (q && q[-1] != '?' && q[-1] != '&')
      q = strstr(q + 1, "name=");
    if (!q)
      return -1;
    q += 5;
    url_decode(q, strcspn(q, "&#"), name, nlen);
    return 0;
  }
  if (*p == '/') {
    p++;
    const char *hash = strchr(p, '#');
    if (hash)
      snprintf(name, nlen, "%s", hash + 1);
    else
      snprintf(name, nlen, "%.*s", (int)strcspn(p, "/?"), p);
    return *name ? 0 : -1;
  }
  return -1;
}

/* The tenant an object (at idx) lives in: tenant_ref's name, else `dflt`. */
static const char *object_tenant(lua_State *L, int idx, const char *dflt,
                                 char *buf, size_t blen) {
  const char *tr = field_str(L, idx, "tenant_ref");
  char t[64];
  if (tr && amc_avi_ref_parse(tr, t, sizeof t, buf, blen) == 0 &&
      strcmp(t, "tenant") == 0) {
    /* A uuid without a name: "admin" is its own uuid; others unknown. */
    if (strncmp(buf, "tenant-", 7) != 0)
      return buf;
  }
  return dflt;
}

/* The same for a tenant_ref string (NULL: `dflt`). */
static const char *ref_tenant(const char *tr, const char *dflt, char *buf,
                              size_t blen) {
  char t[64];
  if (tr && amc_avi_ref_parse(tr, t, sizeof t, buf, blen) == 0 &&
      strcmp(t, "tenant") == 0 && strncmp(buf, "tenant-", 7) != 0)
    return buf;
  return dflt;
}

/* ref_tenant for a run of objects that mostly share one tenant_ref (a
 * plan's objects): the last answer is kept. */
typedef struct {
  int valid, null; /* `tr` holds the last tenant_ref; null: it was NULL */
  char tr[256], buf[256];
  const char *ten; /* the last answer: buf or the default */
} ten_memo_t;

static const char *memo_tenant(ten_memo_t *m, const char *tr,
                               const char *dflt) {
  if (m->valid && (tr ? !m->null && strcmp(tr, m->tr) == 0 : m->null))
    return m->ten;
  m->ten = ref_tenant(tr, dflt, m->buf, sizeof m->buf);
  size_t n = tr ? strlen(tr) : 0;
  m->valid = n < sizeof m->tr;
  m->null = !tr;
  if (m->valid)
    memcpy(m->tr, tr ? tr : "", n + 1);
  return m->ten;
}

/* ---- cache ------------------------------------------------------------- */

static void entry_free(void *p) {
  amc_avi_entry_t *e = p;
  if (!e)
    return;
  free(e->json);
  free(e);
}

static const char *intern(amc_avi_cache_t *c, const char *s) {
  if (!s)
    return NULL;
  amc_strmap_entry_t *e = amc_strmap_find(&c->intern, s);
  if (!e)
    e = amc_strmap_put(&c->intern, s, NULL, NULL);
  return e->key;
}

/* "type\ttenant\tname" (built for every object of every plan: no printf) */
static void cache_key(amc_buf_t *b, const char *type, const char *tenant,
                      const char *name) {
  amc_buf_reset(b);
  amc_buf_append(b, type, strlen(type));
  amc_buf_putc(b, '\t');
  amc_buf_append(b, tenant, strlen(tenant));
  amc_buf_putc(b, '\t');
  amc_buf_append(b, name, strlen(name));
}

/* The same into `buf` when it fits (a lookup needs no allocation); else
 * NULL. */
static const char *cache_key_in(char *buf, size_t len, const char *type,
                                const char *tenant, const char *name) {
  size_t a = strlen(type), b = strlen(tenant), c = strlen(name);
  if (a + b + c + 3 > len)
    return NULL;
  memcpy(buf, type, a);
  buf[a] = '\t';
  memcpy(buf + a + 1, tenant, b);
  buf[a + 1 + b] = '\t';
  memcpy(buf + a + 2 + b, name, c);
  buf[a + b + c + 2] = '\0';
  return buf;
}

void amc_avi_cache_init(amc_avi_cache_t *c) {
  amc_strmap_t m = AMC_STRMAP_INIT;
  c->map = m;
  c->intern = m;
  c->by_gateway = m;
}

void amc_avi_cache_clear(amc_avi_cache_t *c) {
  amc_strmap_clear(&c->by_gateway, NULL); /* (the values are entries) */
  amc_strmap_clear(&c->map, entry_free);
  amc_strmap_clear(&c->intern, NULL);
}

/* Links `e` first into its gateway's list. */
static void index_add(amc_avi_cache_t *c, amc_avi_entry_t *e) {
  e->gw_prev = e->gw_next = NULL;
  if (!e->gateway)
    return;
  amc_strmap_entry_t *head = amc_strmap_find(&c->by_gateway, e->gateway);
  if (!head) {
    amc_strmap_put(&c->by_gateway, e->gateway, e, NULL);
    return;
  }
  e->gw_next = head->value;
  e->gw_next->gw_prev = e;
  head->value = e;
}

/* Unlinks `e` (NULL: nothing) from its gateway's list. */
static void index_del(amc_avi_cache_t *c, amc_avi_entry_t *e) {
  if (!e || !e->gateway)
    return;
  if (e->gw_next)
    e->gw_next->gw_prev = e->gw_prev;
  if (e->gw_prev) {
    e->gw_prev->gw_next = e->gw_next;
  } else if (e->gw_next) {
    amc_strmap_find(&c->by_gateway, e->gateway)->value = e->gw_next;
  } else {
    amc_strmap_del(&c->by_gateway, e->gateway);
  }
  e->gw_prev = e->gw_next = NULL;
}

amc_avi_entry_t *amc_avi_cache_get(const amc_avi_cache_t *c, const char *type,
                                   const char *tenant, const char *name) {
  char kb[512];
  const char *key = cache_key_in(kb, sizeof kb, type, tenant, name);
  if (key)
    return amc_strmap_get(&c->map, key);
  amc_buf_t k = AMC_BUF_INIT;
  cache_key(&k, type, tenant, name);
  amc_avi_entry_t *e = amc_strmap_get(&c->map, k.data);
  amc_buf_free(&k);
  return e;
}

void amc_avi_cache_del(amc_avi_cache_t *c, const char *type, const char *tenant,
                       const char *name) {
  amc_buf_t k = AMC_BUF_INIT;
  cache_key(&k, type, tenant, name);
  amc_avi_entry_t *e = amc_strmap_del(&c->map, k.data);
  index_del(c, e);
  entry_free(e);
  amc_buf_free(&k);
}

size_t amc_avi_cache_count(const amc_avi_cache_t *c) {
  return c->map.count;
}

static char *sdup(const char *s) {
  return s ? strdup(s) : NULL;
}

/* Lowercase hex digits only: upper case would not come back the same. */
static int lowerhex(char ch) {
  return (ch >= 'A' && ch <= 'F') ? -1 : hexval(ch);
}

/* Packs "<type>-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (lowercase hex) into
 * 16 bytes; 0 on success, -1 for any other form. */
static int uuid_pack(const char *type, const char *uuid, unsigned char *out) {
  size_t tl = strlen(type);
  if (tl + 38 > AMC_AVI_UUID_BUF || strncmp(uuid, type, tl) != 0 ||
      uuid[tl] != '-' || strlen(uuid + tl + 1) != 36)
    return -1;
  const char *p = uuid + tl + 1;
  size_t n = 0;
  for (size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (p[i++] != '-')
        return -1;
      continue;
    }
    int hi = lowerhex(p[i]), lo = lowerhex(p[i + 1]);
    if (hi < 0 || lo < 0)
      return -1;
    out[n++] = (unsigned char)(hi << 4 | lo);
    i += 2;
  }
  return 0;
}

const char *amc_avi_entry_uuid(const amc_avi_entry_t *e,
                               char buf[AMC_AVI_UUID_BUF]) {
  if (e->uuid_form == 0)
    return NULL;
  if (e->uuid_form == 2)
    return e->uuid_buf;
  /* "<type>-" and the 16 bytes as 8-4-4-4-12 lower-case hex (by hand:
   * this runs for every object a plan touches) */
  static const char hex[] = "0123456789abcdef";
  const unsigned char *b = (const unsigned char *)e->uuid_buf;
  int n = snprintf(buf, AMC_AVI_UUID_BUF, "%s-", e->type);
  if (n < 0 || (size_t)n + 37 > AMC_AVI_UUID_BUF)
    return NULL;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      buf[n++] = '-';
    buf[n++] = hex[b[i] >> 4];
    buf[n++] = hex[b[i] & 15];
  }
  buf[n] = '\0';
  return buf;
}

const char *amc_avi_entry_cksum(const amc_avi_entry_t *e) {
  return e->cksum[0] ? e->cksum : NULL;
}

int amc_avi_cache_put(amc_avi_cache_t *c, lua_State *L,
                      const amc_avi_owner_t *own, const char *type,
                      const char *tenant) {
  return amc_avi_cache_put_entry(c, L, own, type, tenant, NULL);
}

int amc_avi_cache_put_entry(amc_avi_cache_t *c, lua_State *L,
                            const amc_avi_owner_t *own, const char *type,
                            const char *tenant, amc_avi_entry_t **out) {
  if (out)
    *out = NULL;
  int idx = lua_gettop(L);
  if (!lua_istable(L, idx))
    return -1;
  const char *name = field_str(L, idx, "name");
  if (!name)
    return -1;
  char tbuf[256];
  const char *ten = object_tenant(L, idx, tenant, tbuf, sizeof tbuf);
  if (!amc_avi_owned(L, idx, own, type)) {
    amc_avi_cache_del(c, type, ten, name);
    return 0;
  }
  const char *uuid = field_str(L, idx, "uuid");
  unsigned char packed[16];
  int form = !uuid ? 0 : uuid_pack(type, uuid, packed) == 0 ? 1 : 2;
  size_t ulen = form == 1 ? 16 : form == 2 ? strlen(uuid) + 1 : 0;
  amc_avi_entry_t *e = calloc(1, offsetof(amc_avi_entry_t, uuid_buf) + ulen);
  if (!e)
    abort();
  e->type = intern(c, type);
  e->tenant = intern(c, ten);
  e->uuid_form = (unsigned char)form;
  if (ulen)
    memcpy(e->uuid_buf, form == 1 ? (const char *)packed : uuid, ulen);
  const char *cks = marker(L, idx, AMC_AVI_CKSUM_MARKER);
  if (cks && strlen(cks) != 16)
    cks = NULL; /* not ours: compare field by field */
  if (cks)
    memcpy(e->cksum, cks, 17);
  e->gateway = intern(c, marker(L, idx, "gateway"));
  const char *vt = field_str(L, idx, "type");
  e->rank = (signed char)amc_avi_rank(
      type, vt && strcmp(vt, "VS_TYPE_VH_CHILD") == 0);
  if (!cks) {
    amc_buf_t j = AMC_BUF_INIT;
    char err[128];
    if (amc_json_encode(L, idx, &j, err, sizeof err) == 0)
      e->json = amc_buf_steal(&j);
    amc_buf_free(&j);
  }
  amc_buf_t k = AMC_BUF_INIT;
  cache_key(&k, type, ten, name);
  void *old = NULL;
  amc_strmap_entry_t *me = amc_strmap_put(&c->map, k.data, e, &old);
  e->name = me->key + strlen(type) + strlen(ten) + 2;
  index_del(c, old);
  index_add(c, e);
  entry_free(old);
  amc_buf_free(&k);
  lua_settop(L, idx);
  if (out)
    *out = e;
  return 1;
}

/* ---- comparison --------------------------------------------------------- */

static int is_null(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) || (lua_islightuserdata(L, idx) &&
                                     lua_touserdata(L, idx) == AMC_JSON_NULL);
}

static int is_empty_table(lua_State *L, int idx) {
  if (!lua_istable(L, idx))
    return 0;
  lua_pushnil(L);
  if (lua_next(L, idx) == 0)
    return 1;
  lua_pop(L, 2);
  return 0;
}

static int is_array(lua_State *L, int idx) {
  if (lua_rawlen(L, idx) > 0)
    return 1;
  if (!lua_getmetatable(L, idx))
    return 0;
  luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
  int r = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return r;
}

int amc_avi_subset(lua_State *L, int d, int s) {
  d = lua_absindex(L, d);
  s = lua_absindex(L, s);
  if (is_null(L, d))
    return 1;
  int td = lua_type(L, d), ts = lua_type(L, s);
  if (td == LUA_TSTRING) {
    if (ts != LUA_TSTRING)
      return 0;
    const char *a = lua_tostring(L, d), *b = lua_tostring(L, s);
    if (strcmp(a, b) == 0 || strcmp(b, "<sensitive>") == 0)
      return 1;
    char ta[64], na[512], tb[64], nb[512];
    return amc_avi_ref_parse(a, ta, sizeof ta, na, sizeof na) == 0 &&
           amc_avi_ref_parse(b, tb, sizeof tb, nb, sizeof nb) == 0 &&
           strcmp(ta, tb) == 0 && strcmp(na, nb) == 0;
  }
  if (td == LUA_TNUMBER)
    return ts == LUA_TNUMBER && lua_compare(L, d, s, LUA_OPEQ);
  if (td == LUA_TBOOLEAN)
    return ts == LUA_TBOOLEAN && lua_toboolean(L, d) == lua_toboolean(L, s);
  if (td != LUA_TTABLE)
    return 0;
  if (ts != LUA_TTABLE)
    return is_null(L, s) && is_empty_table(L, d);
  if (is_array(L, d)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, d);
    if ((lua_Integer)lua_rawlen(L, s) != n)
      return 0;
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, d, i);
      lua_rawgeti(L, s, i);
      int ok = amc_avi_subset(L, -2, -1);
      lua_pop(L, 2);
      if (!ok)
        return 0;
    }
    return 1;
  }
  lua_pushnil(L);
  while (lua_next(L, d) != 0) {
    /* key at -2, desired value at -1 */
    lua_pushvalue(L, -2);
    lua_rawget(L, s);
    int ok;
    if (lua_isnil(L, -1))
      ok = is_null(L, -2) || is_empty_table(L, lua_absindex(L, -2));
    else
      ok = amc_avi_subset(L, -2, -1);
    lua_pop(L, 2);
    if (!ok) {
      lua_pop(L, 1);
      return 0;
    }
  }
  return 1;
}

/* ---- bodies ------------------------------------------------------------- */

/* amc_avi_desired_body on the object already decoded at `obj` (a table,
 * which gets the marker) whose JSON's checksum is `cks`; pops to `top`. */
static int desired_body_at(lua_State *L, int top, int obj, const char *cks,
                           amc_avi_step_t *st, char *err, size_t errlen) {
  luaL_newmetatable(L, AMC_JSON_ARRAY_MT);
  int mt = lua_gettop(L);
  lua_getfield(L, obj, "markers");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, mt);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, obj, "markers");
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, AMC_AVI_CKSUM_MARKER);
  lua_setfield(L, -2, "key");
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
  lua_pushstring(L, cks);
  lua_rawseti(L, -2, 1);
  lua_setfield(L, -2, "values");
  lua_rawseti(L, -2, n + 1);
  amc_buf_t b = AMC_BUF_INIT;
  int rc = amc_json_encode(L, obj, &b, err, errlen);
  lua_settop(L, top);
  if (rc != 0) {
    amc_buf_free(&b);
    return -1;
  }
  st->body_len = b.len;
  st->body = amc_buf_steal(&b);
  st->cksum = strdup(cks);
  return 0;
}

int amc_avi_desired_body(lua_State *L, const char *json, size_t len,
                         amc_avi_step_t *st, char *err, size_t errlen) {
  int top = lua_gettop(L);
  char cks[17];
  amc_avi_cksum(json, len, cks);
  if (amc_json_decode(L, json, len, err, errlen) != 0)
    return -1;
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "not a JSON object");
    lua_settop(L, top);
    return -1;
  }
  return desired_body_at(L, top, lua_gettop(L), cks, st, err, errlen);
}

static void redact(lua_State *L, int idx, int top_level_key) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      int secret = (top_level_key && strcmp(k, "key") == 0) ||
                   strcmp(k, "key_passphrase") == 0 ||
                   strcmp(k, "password") == 0 || strcmp(k, "private_key") == 0;
      if (secret && lua_type(L, -1) == LUA_TSTRING) {
        lua_pushvalue(L, -2);
        lua_pushstring(L, "<sensitive>");
        lua_rawset(L, idx);
      } else if (lua_istable(L, -1)) {
        redact(L, -1, 0);
      }
    } else if (lua_istable(L, -1)) {
      redact(L, -1, 0);
    }
    lua_pop(L, 1);
  }
}

char *amc_avi_redacted(lua_State *L, const char *type, const char *body,
                       size_t len) {
  int top = lua_gettop(L);
  char err[128];
  amc_buf_t b = AMC_BUF_INIT;
  if (amc_json_decode(L, body, len, err, sizeof err) != 0 ||
      !lua_istable(L, -1)) {
    lua_settop(L, top);
    amc_buf_puts(&b, "<unparsable body>");
    return amc_buf_steal(&b);
  }
  redact(L, -1, strcmp(type, "sslkeyandcertificate") == 0);
  if (amc_json_encode(L, -1, &b, err, sizeof err) != 0) {
    amc_buf_reset(&b);
    amc_buf_puts(&b, "<unencodable body>");
  }
  lua_settop(L, top);
  return amc_buf_steal(&b);
}

/* ---- planning ----------------------------------------------------------- */

void amc_avi_step_free(amc_avi_step_t *s) {
  free(s->type);
  free(s->tenant);
  free(s->name);
  free(s->uuid);
  free(s->body);
  free(s->cksum);
  memset(s, 0, sizeof *s);
}

void amc_avi_plan_free(amc_avi_plan_t *p) {
  for (size_t i = 0; i < p->n; i++)
    amc_avi_step_free(&p->steps[i]);
  free(p->steps);
  p->steps = NULL;
  p->n = 0;
}

static amc_avi_step_t *plan_add(amc_avi_plan_t *p) {
  amc_avi_step_t *s = realloc(p->steps, (p->n + 1) * sizeof *s);
  if (!s)
    abort();
  p->steps = s;
  memset(&s[p->n], 0, sizeof *s);
  return &s[p->n++];
}

static int step_cmp(const void *a, const void *b) {
  const amc_avi_step_t *x = a, *y = b;
  int dx = x->op == AMC_AVI_DELETE, dy = y->op == AMC_AVI_DELETE;
  if (dx != dy)
    return dx - dy;
  if (x->rank != y->rank)
    return dx ? y->rank - x->rank : x->rank - y->rank;
  int c = strcmp(x->type, y->type);
  if (c)
    return c;
  c = strcmp(x->tenant, y->tenant);
  return c ? c : strcmp(x->name, y->name);
}

static const char *key_marker(const char *key) {
  const char *s = strchr(key, '/');
  return s ? s + 1 : key;
}

typedef struct {
  amc_avi_plan_t *plan;
  const char *const *live;
  size_t n_live;
} visit_t;

static void add_delete(amc_avi_plan_t *p, const amc_avi_entry_t *e) {
  amc_avi_step_t *s = plan_add(p);
  s->op = AMC_AVI_DELETE;
  s->type = strdup(e->type);
  s->tenant = strdup(e->tenant);
  s->name = strdup(e->name);
  char ub[AMC_AVI_UUID_BUF];
  s->uuid = sdup(amc_avi_entry_uuid(e, ub));
  s->rank = e->rank;
}

/* The plan's leftovers: the gateway's entries it did not want. Clears
 * the marks of those it wanted. */
static void add_leftovers(amc_avi_entry_t *first, amc_avi_plan_t *plan) {
  for (amc_avi_entry_t *e = first; e; e = e->gw_next) {
    if (e->planned)
      e->planned = 0;
    else if (e->uuid_form)
      add_delete(plan, e);
  }
}

static void unmark(amc_avi_entry_t *first) {
  for (amc_avi_entry_t *e = first; e; e = e->gw_next)
    e->planned = 0;
}

static int is_mine(const amc_avi_entry_t *e, const char *marker) {
  return e && e->gateway && strcmp(e->gateway, marker) == 0;
}

int amc_avi_unchanged_held(const amc_avi_cache_t *cache,
                           const amc_avi_owner_t *own, const char *key,
                           const amc_avi_object_t *o) {
  char tbuf[256];
  const char *ten = ref_tenant(o->tenant_ref, own->tenant, tbuf, sizeof tbuf);
  amc_avi_entry_t *e = amc_avi_cache_get(cache, o->type, ten, o->name);
  const char *ck = e ? amc_avi_entry_cksum(e) : NULL;
  return e && e->uuid_form && ck && strcmp(ck, o->cksum) == 0 &&
         is_mine(e, key_marker(key));
}

/* Marks (type, ten, name), entry `e` (NULL: none), as wanted by the plan:
 * the gateway's own entries by their mark (most objects: no map of every
 * object per plan), others in `wanted`. Returns -1 when it already was. */
static int want(amc_strmap_t *wanted, amc_buf_t *k, const char *marker,
                amc_avi_entry_t *e, const char *type, const char *ten,
                const char *name) {
  if (is_mine(e, marker)) {
    if (e->planned)
      return -1;
    e->planned = 1;
    return 0;
  }
  cache_key(k, type, ten, name);
  if (amc_strmap_get(wanted, k->data))
    return -1;
  amc_strmap_put(wanted, k->data, (void *)1, NULL);
  return 0;
}

/* An unchanged object in a plan: wanted, and nothing to do when the cache
 * holds it; else the plan fails (the caller must translate in full). */
static int plan_unchanged(const amc_avi_cache_t *cache,
                          const amc_avi_owner_t *own, const char *marker,
                          const amc_avi_object_t *o, amc_strmap_t *wanted,
                          amc_buf_t *k, ten_memo_t *tm, char *err,
                          size_t errlen) {
  const char *ten = memo_tenant(tm, o->tenant_ref, own->tenant);
  amc_avi_entry_t *e = amc_avi_cache_get(cache, o->type, ten, o->name);
  if (want(wanted, k, marker, e, o->type, ten, o->name) != 0) {
    snprintf(err, errlen, "%s %s: two objects with this name in tenant %s",
             o->type, o->name, ten);
    return -1;
  }
  const char *ck = e ? amc_avi_entry_cksum(e) : NULL;
  if (!(e && e->uuid_form && ck && strcmp(ck, o->cksum) == 0 &&
        is_mine(e, marker))) {
    snprintf(err, errlen,
             "%s %s: unchanged object (checksum %s) is not on the "
             "controller as amc left it; a full translation is needed",
             o->type, o->name, o->cksum);
    return -1;
  }
  return 0;
}

/* A desired object whose checksum (set by the rules engine) the cache
 * already has: wanted, nothing to do, and no need to decode it (the
 * checksum covers every byte; the object was checked when it was written).
 * The engine sets tenant_ref (the object's string tenant_ref field) with
 * the checksum, so the JSON is not scanned for it. Returns 1 if so. */
static int plan_same_fast(const amc_avi_cache_t *cache,
                          const amc_avi_owner_t *own, const char *marker,
                          const amc_avi_object_t *o, amc_strmap_t *wanted,
                          amc_buf_t *k, ten_memo_t *tm) {
  const char *ten = memo_tenant(tm, o->tenant_ref, own->tenant);
  amc_avi_entry_t *e = amc_avi_cache_get(cache, o->type, ten, o->name);
  const char *ck = e ? amc_avi_entry_cksum(e) : NULL;
  if (!ck || strcmp(ck, o->cksum) != 0)
    return 0;
  /* a second one of the name: the full path reports it */
  return want(wanted, k, marker, e, o->type, ten, o->name) == 0;
}

static int plan_key(lua_State *L, const amc_avi_cache_t *cache,
                    const amc_avi_owner_t *own, const char *key,
                    const amc_avi_object_t *objs, size_t n, int partial,
                    amc_avi_plan_t *out, char *err, size_t errlen);

int amc_avi_plan_key(lua_State *L, const amc_avi_cache_t *cache,
                     const amc_avi_owner_t *own, const char *key,
                     const amc_avi_object_t *objs, size_t n,
                     amc_avi_plan_t *out, char *err, size_t errlen) {
  return plan_key(L, cache, own, key, objs, n, 0, out, err, errlen);
}

int amc_avi_plan_key_partial(lua_State *L, const amc_avi_cache_t *cache,
                             const amc_avi_owner_t *own, const char *key,
                             const amc_avi_object_t *objs, size_t n,
                             amc_avi_plan_t *out, char *err, size_t errlen) {
  return plan_key(L, cache, own, key, objs, n, 1, out, err, errlen);
}

static int plan_key(lua_State *L, const amc_avi_cache_t *cache,
                    const amc_avi_owner_t *own, const char *key,
                    const amc_avi_object_t *objs, size_t n, int partial,
                    amc_avi_plan_t *out, char *err, size_t errlen) {
  out->steps = NULL;
  out->n = 0;
  amc_strmap_t wanted = AMC_STRMAP_INIT;
  amc_buf_t k = AMC_BUF_INIT;
  int top = lua_gettop(L);
  char perr[200];
  const char *marker = key_marker(key);
  ten_memo_t tm = {0};
  for (size_t i = 0; i < n; i++) {
    const amc_avi_object_t *o = &objs[i];
    if (!o->json) {
      if (plan_unchanged(cache, own, marker, o, &wanted, &k, &tm, err,
                         errlen) != 0)
        goto fail;
      continue;
    }
    if (o->cksum[0] && plan_same_fast(cache, own, marker, o, &wanted, &k, &tm))
      continue;
    if (amc_json_decode(L, o->json, o->json_len, perr, sizeof perr) != 0) {
      snprintf(err, errlen, "%s %s: %s", o->type, o->name, perr);
      goto fail;
    }
    int idx = lua_gettop(L);
    const char *name = lua_istable(L, idx) ? field_str(L, idx, "name") : NULL;
    if (!name || strcmp(name, o->name) != 0) {
      snprintf(err, errlen, "%s %s: the object's name field does not match",
               o->type, o->name);
      goto fail;
    }
    const char *vt = field_str(L, idx, "type");
    int rank = amc_avi_rank(o->type, vt && strcmp(vt, "VS_TYPE_VH_CHILD") == 0);
    if (rank < 0) {
      snprintf(err, errlen, "%s %s: amc does not sync objects of type %s",
               o->type, o->name, o->type);
      goto fail;
    }
    char tbuf[256];
    const char *ten = object_tenant(L, idx, own->tenant, tbuf, sizeof tbuf);
    amc_avi_entry_t *e = amc_avi_cache_get(cache, o->type, ten, o->name);
    if (want(&wanted, &k, marker, e, o->type, ten, o->name) != 0) {
      snprintf(err, errlen, "%s %s: two objects with this name in tenant %s",
               o->type, o->name, ten);
      goto fail;
    }
    char cks[17];
    if (o->cksum[0])
      memcpy(cks, o->cksum, sizeof cks);
    else
      amc_avi_cksum(o->json, o->json_len, cks);
    int same = 0;
    if (e && e->cksum[0])
      same = strcmp(e->cksum, cks) == 0;
    else if (e && e->json) {
      if (amc_json_decode(L, e->json, strlen(e->json), perr, sizeof perr) ==
          0) {
        same = amc_avi_subset(L, idx, -1);
        lua_pop(L, 1);
      }
    }
    if (!same) {
      amc_avi_step_t *s = plan_add(out);
      s->op = e && e->uuid_form ? AMC_AVI_PUT : AMC_AVI_POST;
      s->type = strdup(o->type);
      s->tenant = strdup(ten);
      s->name = strdup(o->name);
      char ub[AMC_AVI_UUID_BUF];
      s->uuid = e ? sdup(amc_avi_entry_uuid(e, ub)) : NULL;
      s->rank = rank;
      /* the object decoded above (its last use: it gets the marker) */
      if (desired_body_at(L, top, idx, cks, s, perr, sizeof perr) != 0) {
        snprintf(err, errlen, "%s %s: %s", o->type, o->name, perr);
        goto fail;
      }
    }
    lua_settop(L, top);
  }
  if (partial) /* the key's other objects stay */
    unmark(amc_strmap_get(&cache->by_gateway, marker));
  else
    add_leftovers(amc_strmap_get(&cache->by_gateway, marker), out);
  if (out->n > 1)
    qsort(out->steps, out->n, sizeof *out->steps, step_cmp);
  amc_strmap_clear(&wanted, NULL);
  amc_buf_free(&k);
  return 0;
fail:
  /* the marks of the objects wanted so far */
  unmark(amc_strmap_get(&cache->by_gateway, marker));
  lua_settop(L, top);
  amc_strmap_clear(&wanted, NULL);
  amc_buf_free(&k);
  amc_avi_plan_free(out);
  return -1;
}

static int gc_visit(const char *k, void *v, void *data) {
  (void)k;
  visit_t *vt = data;
  amc_avi_entry_t *e = v;
  if (!e->uuid_form)
    return 0;
  if (e->gateway) {
    for (size_t i = 0; i < vt->n_live; i++) {
      if (strcmp(key_marker(vt->live[i]), e->gateway) == 0)
        return 0;
    }
  }
  add_delete(vt->plan, e);
  return 0;
}

int amc_avi_plan_gc(const amc_avi_cache_t *cache, const char *const *live,
                    size_t n, amc_avi_plan_t *out) {
  out->steps = NULL;
  out->n = 0;
  visit_t v = {.plan = out, .live = live, .n_live = n};
  amc_strmap_foreach((amc_strmap_t *)&cache->map, gc_visit, &v);
  if (out->n > 1)
    qsort(out->steps, out->n, sizeof *out->steps, step_cmp);
  return 0;
}
