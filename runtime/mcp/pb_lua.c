/* pb_lua.c - protobuf -> Lua conversion (see pb_lua.h). */
#include "mcp/pb_lua.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "mcp/v1alpha1/resource.pb-c.h"
#include "networking/v1alpha3/destination_rule.pb-c.h"
#include "proto_registry.h"

#define MAX_DEPTH 64

const amc_pb_kind_t amc_pb_kinds[] = {
    {"Gateway", "istio.networking.v1alpha3.Gateway",
     "istio/networking/v1alpha3/gateways"},
    {"VirtualService", "istio.networking.v1alpha3.VirtualService",
     "istio/networking/v1alpha3/virtualservices"},
    {"DestinationRule", "istio.networking.v1alpha3.DestinationRule",
     "istio/networking/v1alpha3/destinationrules"},
    {"ServiceEntry", "istio.networking.v1alpha3.ServiceEntry",
     "istio/networking/v1alpha3/serviceentries"},
};
const size_t amc_pb_nkinds = sizeof amc_pb_kinds / sizeof amc_pb_kinds[0];

const amc_pb_kind_t *amc_pb_kind_by_proto(const char *s) {
  const char *slash = s ? strrchr(s, '/') : NULL;
  const char *name = slash ? slash + 1 : s;
  for (size_t i = 0; name && i < amc_pb_nkinds; i++)
    if (strcmp(amc_pb_kinds[i].proto, name) == 0)
      return &amc_pb_kinds[i];
  return NULL;
}

const amc_pb_kind_t *amc_pb_kind_by_name(const char *kind) {
  for (size_t i = 0; kind && i < amc_pb_nkinds; i++)
    if (strcmp(amc_pb_kinds[i].kind, kind) == 0)
      return &amc_pb_kinds[i];
  return NULL;
}

typedef struct {
  lua_State *L;
  const amc_pb_lua_opts_t *o;
  amc_buf_t path;
  char *err;
  size_t errlen;
  int depth;
} conv_t;

static int fail(conv_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(conv_t *c, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(c->err, c->errlen, "%s: %s", c->path.data ? c->path.data : "", msg);
  return -1;
}

void amc_pb_lua_array_mt(lua_State *L) {
  if (luaL_newmetatable(L, AMC_JSON_ARRAY_MT)) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "__jsonarray");
  }
}

static void new_array(lua_State *L, int n) {
  lua_createtable(L, n, 0);
  amc_pb_lua_array_mt(L);
  lua_setmetatable(L, -2);
}

static int utf8_ok(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *e = p + n;
  while (p < e) {
    unsigned ch = *p;
    size_t k;
    unsigned cp;
    if (ch < 0x80) {
      p++;
      continue;
    } else if ((ch & 0xE0) == 0xC0) {
      k = 1;
      cp = ch & 0x1F;
    } else if ((ch & 0xF0) == 0xE0) {
      k = 2;
      cp = ch & 0x0F;
    } else if ((ch & 0xF8) == 0xF0) {
      k = 3;
      cp = ch & 0x07;
    } else {
      return 0;
    }
    if ((size_t)(e - p) <= k)
      return 0;
    for (size_t i = 1; i <= k; i++) {
      if ((p[i] & 0xC0) != 0x80)
        return 0;
      cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
        (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    p += k + 1;
  }
  return 1;
}

static void push_base64(lua_State *L, const uint8_t *d, size_t n) {
  static const char tbl[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)d[i + 1] << 8;
    if (i + 2 < n)
      v |= d[i + 2];
    luaL_addchar(&b, tbl[v >> 18 & 63]);
    luaL_addchar(&b, tbl[v >> 12 & 63]);
    luaL_addchar(&b, i + 1 < n ? tbl[v >> 6 & 63] : '=');
    luaL_addchar(&b, i + 2 < n ? tbl[v & 63] : '=');
  }
  luaL_pushresult(&b);
}

static void push_double(lua_State *L, double v) {
  if (isnan(v))
    lua_pushliteral(L, "NaN");
  else if (isinf(v))
    lua_pushstring(L, v > 0 ? "Infinity" : "-Infinity");
  else
    lua_pushnumber(L, v);
}

/* "<seconds>[.<fraction without trailing zeros>]" */
static void fmt_fraction(char *out, size_t outlen, int32_t nanos) {
  if (nanos == 0) {
    out[0] = '\0';
    return;
  }
  char f[16];
  snprintf(f, sizeof f, "%09d", nanos);
  size_t n = strlen(f);
  while (n > 0 && f[n - 1] == '0')
    f[--n] = '\0';
  snprintf(out, outlen, ".%s", f);
}

static int push_duration(conv_t *c, int64_t s, int32_t nanos) {
  if ((s > 0 && nanos < 0) || (s < 0 && nanos > 0) || nanos > 999999999 ||
      nanos < -999999999)
    return fail(c, "invalid Duration (seconds %lld, nanos %d)", (long long)s,
                nanos);
  int neg = s < 0 || nanos < 0;
  char frac[16];
  fmt_fraction(frac, sizeof frac, nanos < 0 ? -nanos : nanos);
  unsigned long long as =
      s < 0 ? (unsigned long long)(-(s + 1)) + 1 : (unsigned long long)s;
  char out[64];
  snprintf(out, sizeof out, "%s%llu%ss", neg ? "-" : "", as, frac);
  lua_pushstring(c->L, out);
  return 0;
}

static int push_timestamp(conv_t *c, int64_t s, int32_t nanos) {
  /* RFC 3339 years 0001..9999 */
  if (s < -62135596800LL || s > 253402300799LL || nanos < 0 ||
      nanos > 999999999)
    return fail(c, "Timestamp out of range");
  time_t t = (time_t)s;
  struct tm tm;
  gmtime_r(&t, &tm);
  char frac[16], out[64];
  fmt_fraction(frac, sizeof frac, nanos);
  snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d%sZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
           tm.tm_sec, frac);
  lua_pushstring(c->L, out);
  return 0;
}

static int push_msg(conv_t *c, const ProtobufCMessage *m);

/* Pushes a single (non-repeated) value of field `f` stored at `p`. */
static int push_value(conv_t *c, const ProtobufCFieldDescriptor *f,
                      const void *p) {
  lua_State *L = c->L;
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    lua_pushinteger(L, *(const int32_t *)p);
    return 0;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    lua_pushinteger(L, *(const uint32_t *)p);
    return 0;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64: {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)*(const int64_t *)p);
    lua_pushstring(L, b);
    return 0;
  }
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: {
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)*(const uint64_t *)p);
    lua_pushstring(L, b);
    return 0;
  }
  case PROTOBUF_C_TYPE_FLOAT:
    push_double(L, *(const float *)p);
    return 0;
  case PROTOBUF_C_TYPE_DOUBLE:
    push_double(L, *(const double *)p);
    return 0;
  case PROTOBUF_C_TYPE_BOOL:
    lua_pushboolean(L, *(const protobuf_c_boolean *)p);
    return 0;
  case PROTOBUF_C_TYPE_ENUM: {
    int v = *(const int *)p;
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    if (strcmp(ed->name, "google.protobuf.NullValue") == 0) {
      lua_pushlightuserdata(L, AMC_JSON_NULL);
      return 0;
    }
    if (v == 0 && c->o && c->o->simple_lb_legacy &&
        ed ==
            &istio__networking__v1alpha3__load_balancer_settings__simple_lb__descriptor) {
      lua_pushliteral(L, "ROUND_ROBIN");
      return 0;
    }
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
    if (ev)
      lua_pushstring(L, ev->name);
    else
      lua_pushinteger(L, v);
    return 0;
  }
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    if (!s)
      s = "";
    size_t n = strlen(s);
    if (!utf8_ok(s, n))
      return fail(c, "string is not valid UTF-8");
    lua_pushlstring(L, s, n);
    return 0;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *bd = p;
    push_base64(L, bd->data, bd->len);
    return 0;
  }
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
    if (!sub) {
      lua_newtable(L);
      return 0;
    }
    return push_msg(c, sub);
  }
  }
  return fail(c, "unsupported field type %d", (int)f->type);
}

static size_t value_size(const ProtobufCFieldDescriptor *f) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_FLOAT:
  case PROTOBUF_C_TYPE_ENUM:
    return 4;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_DOUBLE:
    return 8;
  case PROTOBUF_C_TYPE_BOOL:
    return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING:
    return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES:
    return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE:
    return sizeof(ProtobufCMessage *);
  }
  return 0;
}

static int is_default(const ProtobufCFieldDescriptor *f, const void *p) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    return !s || !*s;
  }
  case PROTOBUF_C_TYPE_BYTES:
    return ((const ProtobufCBinaryData *)p)->len == 0;
  case PROTOBUF_C_TYPE_MESSAGE:
    return *(ProtobufCMessage *const *)p == NULL;
  case PROTOBUF_C_TYPE_FLOAT:
    return *(const float *)p == 0;
  case PROTOBUF_C_TYPE_DOUBLE:
    return *(const double *)p == 0;
  default: {
    size_t n = value_size(f);
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
      if (b[i])
        return 0;
    return 1;
  }
  }
}

static int is_map_entry(const ProtobufCFieldDescriptor *f) {
  if (f->type != PROTOBUF_C_TYPE_MESSAGE ||
      f->label != PROTOBUF_C_LABEL_REPEATED)
    return 0;
  const ProtobufCMessageDescriptor *d = f->descriptor;
  size_t sl = strlen(d->short_name);
  return d->n_fields == 2 && d->fields[0].id == 1 &&
         strcmp(d->fields[0].name, "key") == 0 && d->fields[1].id == 2 &&
         strcmp(d->fields[1].name, "value") == 0 && sl > 5 &&
         strcmp(d->short_name + sl - 5, "Entry") == 0;
}

static void json_name(const char *proto, char *out, size_t outlen) {
  size_t j = 0;
  int up = 0;
  for (size_t i = 0; proto[i] && j + 1 < outlen; i++) {
    if (proto[i] == '_') {
      up = 1;
      continue;
    }
    char ch = proto[i];
    if (up && ch >= 'a' && ch <= 'z')
      ch = (char)(ch - 'a' + 'A');
    up = 0;
    out[j++] = ch;
  }
  out[j] = '\0';
}

static void path_push(conv_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void path_push(conv_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  amc_buf_vprintf(&c->path, fmt, ap);
  va_end(ap);
}

static void path_pop(conv_t *c, size_t len) {
  c->path.len = len;
  if (c->path.data)
    c->path.data[len] = '\0';
}

/* Map entry -> t[key] = value, table at -1. */
static int set_map_entry(conv_t *c, const ProtobufCMessage *e) {
  const ProtobufCMessageDescriptor *d = e->descriptor;
  const ProtobufCFieldDescriptor *kf = &d->fields[0], *vf = &d->fields[1];
  const char *base = (const char *)e;
  if (kf->type == PROTOBUF_C_TYPE_STRING) {
    const char *k = *(char *const *)(base + kf->offset);
    if (!utf8_ok(k ? k : "", k ? strlen(k) : 0))
      return fail(c, "map key is not valid UTF-8");
    lua_pushstring(c->L, k ? k : "");
  } else {
    if (push_value(c, kf, base + kf->offset))
      return -1;
    lua_pushstring(c->L, lua_tostring(c->L, -1)); /* keys are strings */
    lua_remove(c->L, -2);
  }
  size_t pl = c->path.len;
  path_push(c, "[%s]", lua_tostring(c->L, -1));
  int rc = push_value(c, vf, base + vf->offset);
  path_pop(c, pl);
  if (rc) {
    lua_pop(c->L, 1);
    return -1;
  }
  lua_rawset(c->L, -3);
  return 0;
}

static int push_fields(conv_t *c, const ProtobufCMessage *m);

static int push_any(conv_t *c, const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *url = NULL;
  const ProtobufCBinaryData *val = NULL;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const char *p = (const char *)m + d->fields[i].offset;
    if (d->fields[i].id == 1)
      url = *(char *const *)p;
    else if (d->fields[i].id == 2)
      val = (const ProtobufCBinaryData *)p;
  }
  if (!url)
    url = "";
  const ProtobufCMessageDescriptor *inner = amc_proto_find(url);
  lua_newtable(c->L);
  lua_pushstring(c->L, url);
  lua_setfield(c->L, -2, "@type");
  if (!inner || !*url) {
    if (c->o && c->o->warn)
      amc_buf_printf(c->o->warn, "%s: Any of unknown type '%s' left out\n",
                     c->path.data ? c->path.data : "", url);
    return 0;
  }
  ProtobufCMessage *sub = protobuf_c_message_unpack(
      inner, NULL, val ? val->len : 0, val ? val->data : NULL);
  if (!sub) {
    lua_pop(c->L, 1);
    return fail(c, "cannot decode Any of type %s", inner->name);
  }
  int rc;
  if (strncmp(inner->name, "google.protobuf.", 16) == 0) {
    rc = push_msg(c, sub);
    if (!rc)
      lua_setfield(c->L, -2, "value");
  } else {
    rc = push_fields(c, sub);
  }
  protobuf_c_message_free_unpacked(sub, NULL);
  if (rc)
    lua_pop(c->L, 1);
  return rc;
}

/* Sets every present field of `m` into the table at -1. */
static int push_fields(conv_t *c, const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *base = (const char *)m;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const char *p = base + f->offset;
    char jn[128];
    json_name(f->name, jn, sizeof jn);
    size_t pl = c->path.len;
    path_push(c, "%s%s", c->path.len ? "." : "", jn);
    int rc = 0;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + f->quantifier_offset);
      const char *arr = *(char *const *)p;
      if (n == 0) {
        path_pop(c, pl);
        continue;
      }
      if (is_map_entry(f)) {
        lua_createtable(c->L, 0, (int)n);
        for (size_t k = 0; k < n && !rc; k++)
          rc = set_map_entry(c, ((ProtobufCMessage *const *)arr)[k]);
      } else {
        new_array(c->L, (int)n);
        size_t sz = value_size(f);
        size_t pl2 = c->path.len;
        for (size_t k = 0; k < n && !rc; k++) {
          path_push(c, "[%zu]", k);
          rc = push_value(c, f, arr + k * sz);
          path_pop(c, pl2);
          if (!rc)
            lua_rawseti(c->L, -2, (lua_Integer)k + 1);
        }
      }
      if (rc)
        lua_pop(c->L, 1); /* the partial list or map */
    } else {
      int present;
      if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        present = *(const uint32_t *)(base + f->quantifier_offset) == f->id;
      else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
               f->type != PROTOBUF_C_TYPE_MESSAGE &&
               f->type != PROTOBUF_C_TYPE_STRING && f->quantifier_offset)
        present = *(const protobuf_c_boolean *)(base + f->quantifier_offset);
      else
        present = !is_default(f, p);
      if (!present) {
        path_pop(c, pl);
        continue;
      }
      rc = push_value(c, f, p);
    }
    path_pop(c, pl);
    if (rc)
      return -1; /* a failed value leaves nothing on the stack */
    lua_setfield(c->L, -2, jn);
  }
  return 0;
}

static int field_by_id(const ProtobufCMessage *m, unsigned id, const void **p) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++)
    if (d->fields[i].id == id) {
      *p = (const char *)m + d->fields[i].offset;
      return (int)i;
    }
  return -1;
}

static int push_msg(conv_t *c, const ProtobufCMessage *m) {
  if (++c->depth > MAX_DEPTH) {
    c->depth--;
    return fail(c, "nested deeper than %d levels", MAX_DEPTH);
  }
  luaL_checkstack(c->L, 8, NULL);
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *n = d->name;
  int rc = 0;
  if (strncmp(n, "google.protobuf.", 16) != 0) {
    lua_newtable(c->L);
    rc = push_fields(c, m);
    if (rc)
      lua_pop(c->L, 1);
    c->depth--;
    return rc;
  }
  const char *wk = n + 16;
  if (strcmp(wk, "Duration") == 0 || strcmp(wk, "Timestamp") == 0) {
    const void *ps = NULL, *pn = NULL;
    field_by_id(m, 1, &ps);
    field_by_id(m, 2, &pn);
    int64_t s = *(const int64_t *)ps;
    int32_t ns = *(const int32_t *)pn;
    rc = wk[0] == 'D' ? push_duration(c, s, ns) : push_timestamp(c, s, ns);
  } else if (strcmp(wk, "Any") == 0) {
    rc = push_any(c, m);
  } else if (strcmp(wk, "Struct") == 0) {
    lua_newtable(c->L);
    const ProtobufCFieldDescriptor *f = &d->fields[0];
    size_t cnt = *(const size_t *)((const char *)m + f->quantifier_offset);
    ProtobufCMessage *const *arr =
        *(ProtobufCMessage *const *const *)((const char *)m + f->offset);
    for (size_t k = 0; k < cnt && !rc; k++)
      rc = set_map_entry(c, arr[k]);
    if (rc)
      lua_pop(c->L, 1);
  } else if (strcmp(wk, "ListValue") == 0) {
    const ProtobufCFieldDescriptor *f = &d->fields[0];
    size_t cnt = *(const size_t *)((const char *)m + f->quantifier_offset);
    ProtobufCMessage *const *arr =
        *(ProtobufCMessage *const *const *)((const char *)m + f->offset);
    new_array(c->L, (int)cnt);
    for (size_t k = 0; k < cnt && !rc; k++) {
      rc = push_msg(c, arr[k]);
      if (!rc)
        lua_rawseti(c->L, -2, (lua_Integer)k + 1);
    }
    if (rc)
      lua_pop(c->L, 1);
  } else if (strcmp(wk, "Value") == 0) {
    /* oneof kind: find the set member */
    int done = 0;
    for (unsigned i = 0; i < d->n_fields && !done; i++) {
      const ProtobufCFieldDescriptor *f = &d->fields[i];
      if (*(const uint32_t *)((const char *)m + f->quantifier_offset) ==
          f->id) {
        rc = push_value(c, f, (const char *)m + f->offset);
        done = 1;
      }
    }
    if (!done)
      lua_pushlightuserdata(c->L, AMC_JSON_NULL);
  } else if (strlen(wk) > 5 && strcmp(wk + strlen(wk) - 5, "Value") == 0 &&
             d->n_fields == 1) {
    rc = push_value(c, &d->fields[0], (const char *)m + d->fields[0].offset);
  } else {
    lua_newtable(c->L);
    rc = push_fields(c, m);
    if (rc)
      lua_pop(c->L, 1);
  }
  c->depth--;
  return rc;
}

int amc_pb_lua_push(lua_State *L, const ProtobufCMessage *msg, const char *path,
                    const amc_pb_lua_opts_t *opts, char *err, size_t errlen) {
  conv_t c = {.L = L, .o = opts, .err = err, .errlen = errlen};
  amc_buf_puts(&c.path, path ? path : "");
  int top = lua_gettop(L);
  int rc = push_msg(&c, msg);
  amc_buf_free(&c.path);
  if (rc)
    lua_settop(L, top);
  return rc;
}

int amc_pb_lua_push_bytes(lua_State *L, const ProtobufCMessageDescriptor *desc,
                          const uint8_t *data, size_t len, const char *path,
                          const amc_pb_lua_opts_t *opts, char *err,
                          size_t errlen) {
  ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, data);
  if (!m) {
    snprintf(err, errlen, "%s: cannot decode %s", path ? path : "", desc->name);
    return -1;
  }
  int rc = amc_pb_lua_push(L, m, path, opts, err, errlen);
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

/* DNS-1123 subdomain (names) or label (namespaces). */
static int dns_ok(const char *s, size_t n, int label) {
  if (n == 0 || n > (label ? 63u : 253u))
    return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
             ((ch == '-' || (!label && ch == '.')) && i > 0 && i + 1 < n);
    if (!ok)
      return 0;
  }
  return 1;
}

/* Returns the offending key when a key or value is not valid UTF-8. */
static const char *
set_string_map(lua_State *L, size_t n,
               Istio__Mcp__V1alpha1__Metadata__LabelsEntry **e,
               const char *field) {
  if (!n)
    return NULL;
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    const char *k = e[i]->key ? e[i]->key : "";
    const char *v = e[i]->value ? e[i]->value : "";
    if (!utf8_ok(k, strlen(k)) || !utf8_ok(v, strlen(v))) {
      lua_pop(L, 1);
      return k;
    }
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
  }
  lua_setfield(L, -2, field);
  return NULL;
}

int amc_pb_lua_push_mcp_resource(lua_State *L, const uint8_t *data, size_t len,
                                 const amc_pb_kind_t *want,
                                 const amc_pb_lua_opts_t *opts,
                                 const amc_pb_kind_t **kind_out, char *ns,
                                 char *name, char *err, size_t errlen) {
  int rc = -1;
  Istio__Mcp__V1alpha1__Resource *r =
      istio__mcp__v1alpha1__resource__unpack(NULL, len, data);
  ns[0] = name[0] = '\0';
  if (!r) {
    snprintf(err, errlen, "cannot decode istio.mcp.v1alpha1.Resource");
    return -1;
  }
  const char *full = r->metadata && r->metadata->name ? r->metadata->name : "";
  const char *slash = strchr(full, '/');
  if (!slash || !dns_ok(full, (size_t)(slash - full), 1) ||
      !dns_ok(slash + 1, strlen(slash + 1), 0)) {
    snprintf(err, errlen,
             "resource '%.200s': metadata.name must be "
             "\"<namespace>/<name>\" (DNS-1123)",
             full);
    goto out;
  }
  snprintf(ns, 254, "%.*s", (int)(slash - full), full);
  snprintf(name, 254, "%s", slash + 1);
  if (!r->body || !r->body->type_url) {
    snprintf(err, errlen, "%s/%s: resource has no body", ns, name);
    goto out;
  }
  const amc_pb_kind_t *k = amc_pb_kind_by_proto(r->body->type_url);
  if (!k || (want && k != want)) {
    snprintf(err, errlen, "%s/%s: body type '%.200s' %s", ns, name,
             r->body->type_url,
             k ? "does not match the subscribed type" : "is not supported");
    goto out;
  }
  const ProtobufCMessageDescriptor *d = amc_proto_find(k->proto);
  char path[600];
  snprintf(path, sizeof path, "%s %s/%s: spec", k->kind, ns, name);
  int top = lua_gettop(L);
  lua_createtable(L, 0, 4);
  if (amc_pb_lua_push_bytes(L, d, r->body->value.data, r->body->value.len, path,
                            opts, err, errlen) < 0) {
    lua_settop(L, top);
    goto out;
  }
  lua_setfield(L, -2, "spec");
  lua_pushliteral(L, "networking.istio.io/v1");
  lua_setfield(L, -2, "apiVersion");
  lua_pushstring(L, k->kind);
  lua_setfield(L, -2, "kind");
  lua_createtable(L, 0, 6);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, ns);
  lua_setfield(L, -2, "namespace");
  Istio__Mcp__V1alpha1__Metadata *md = r->metadata;
  if (md->version && *md->version) {
    lua_pushstring(L, md->version);
    lua_setfield(L, -2, "resourceVersion");
  }
  if (md->version && !utf8_ok(md->version, strlen(md->version))) {
    snprintf(err, errlen, "%s/%s: metadata.version is not valid UTF-8", ns,
             name);
    lua_settop(L, top);
    goto out;
  }
  const char *bad = set_string_map(L, md->n_labels, md->labels, "labels");
  const char *where = "labels";
  if (!bad) {
    bad = set_string_map(
        L, md->n_annotations,
        (Istio__Mcp__V1alpha1__Metadata__LabelsEntry **)md->annotations,
        "annotations");
    where = "annotations";
  }
  if (bad) {
    snprintf(err, errlen, "%s/%s: metadata.%s: an entry is not valid UTF-8", ns,
             name, where);
    lua_settop(L, top);
    goto out;
  }
  if (md->create_time) {
    conv_t c = {.L = L, .o = opts, .err = err, .errlen = errlen};
    if (push_timestamp(&c, md->create_time->seconds, md->create_time->nanos)) {
      lua_settop(L, top);
      goto out;
    }
    lua_setfield(L, -2, "creationTimestamp");
  }
  lua_setfield(L, -2, "metadata");
  if (kind_out)
    *kind_out = k;
  rc = 0;
out:
  istio__mcp__v1alpha1__resource__free_unpacked(r, NULL);
  return rc;
}
