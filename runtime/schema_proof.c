/* schema_proof.c - avi_schema.lua compiled to C arrays, and a one-pass
 * check of canonical JSON against it. See schema_proof.h; the rules
 * mirrored here are validate.lua's, function by function. */
#include "schema_proof.h"
#include "util/bytes_eq.h"

#include <errno.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

enum { K_BAD, K_STRING, K_INTEGER, K_NUMBER, K_BOOLEAN, K_OBJECT, K_ARRAY };

#define REF_NONE (-1)
#define REF_BAD  (-2) /* a ref validate.lua cannot resolve: never proven */

typedef struct {
  char *name;
  size_t len;
  unsigned char t, items; /* items: scalar kind of an array without ref */
  unsigned char ro, has_enum, has_range, has_max_items;
  int ref; /* type index, REF_NONE or REF_BAD */
  char **enums;
  size_t *enum_lens, n_enum;
  long long min, max;
  long long *special;
  size_t n_special;
  double max_items;
  /* The bytes of the last RAW value (a memo copy) proved for this field
   * (amc_schema_proof_check_tape): the same bytes again need no proof. */
  char *raw;
  size_t raw_len;
} field_t;

typedef struct {
  char *name;
  field_t *fields; /* sorted bytewise, as canonical JSON sorts keys */
  size_t n_fields;
  size_t *req; /* indices into fields, ascending */
  size_t n_req;
  int bad; /* validate.lua would reject every object of this type */
  /* Field lookup by name: open addressing (linear probing) over
   * field_hash, each slot a field index + 1 (0: empty); at most a quarter
   * full, so a key that is no field ends at an empty slot soon. */
  uint16_t *slots;
  size_t mask; /* slots - 1 (a power of two minus one) */
} type_t;

typedef struct {
  char *rest;
  int type; /* index, or -1 */
} root_t;

struct amc_schema_proof {
  type_t *types; /* sorted by name */
  size_t n_types;
  root_t *roots;
  size_t n_roots;
};

/* ------------------------------------------------------------------------ */
/* Compiling                                                                 */

static char *dupn(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static inline int bytes_cmp(const char *a, size_t al, const char *b,
                            size_t bl) {
  if (al && bl && a[0] != b[0])
    return (unsigned char)a[0] < (unsigned char)b[0] ? -1 : 1;
  int c = memcmp(a, b, al < bl ? al : bl);
  return c ? c : (al > bl) - (al < bl);
}

static int field_cmp(const void *a, const void *b) {
  const field_t *x = a, *y = b;
  return bytes_cmp(x->name, x->len, y->name, y->len);
}

static int type_cmp(const void *a, const void *b) {
  return strcmp(((const type_t *)a)->name, ((const type_t *)b)->name);
}

static int size_cmp(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return (x > y) - (x < y);
}

static int kind_of(const char *t) {
  static const char *const names[] = {"string",  "integer", "number",
                                      "boolean", "object",  "array"};
  for (int i = 0; i < 6; i++) {
    if (strcmp(t, names[i]) == 0)
      return K_STRING + i;
  }
  return K_BAD;
}

/* A Lua number as an exact integer (|x| <= 2^53 for floats). */
static int exact_int(lua_State *L, int idx, long long *out) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    return -1;
  if (lua_isinteger(L, idx)) {
    *out = (long long)lua_tointeger(L, idx);
    return 0;
  }
  double d = lua_tonumber(L, idx);
  if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) ||
      d != (double)(long long)d)
    return -1;
  *out = (long long)d;
  return 0;
}

/* Pushes t[k] (raw) for the table at `t`; returns its type. */
static int raw_field(lua_State *L, int t, const char *k) {
  lua_pushstring(L, k);
  return lua_rawget(L, t);
}

/* Field facts from the table at `f`. Anything odd makes the field K_BAD
 * (validate.lua would raise or reject on it). `ref_name` gets the ref (a
 * string that stays referenced by the schema), or NULL. */
static int compile_field(lua_State *L, int f, field_t *fd,
                         const char **ref_name) {
  int top = lua_gettop(L);
  *ref_name = NULL;
  fd->ref = REF_NONE;
  fd->items = K_STRING;
  if (raw_field(L, f, "t") != LUA_TSTRING)
    goto bad;
  fd->t = (unsigned char)kind_of(lua_tostring(L, -1));
  if (fd->t == K_BAD)
    goto bad;
  fd->ro = raw_field(L, f, "ro") != LUA_TNIL && lua_toboolean(L, -1);
  int tr = raw_field(L, f, "ref");
  if (tr == LUA_TSTRING)
    *ref_name = lua_tostring(L, -1);
  else if (tr != LUA_TNIL && lua_toboolean(L, -1))
    fd->ref = REF_BAD;
  if (fd->t == K_ARRAY && !*ref_name && fd->ref == REF_NONE) {
    int ti = raw_field(L, f, "items");
    if (ti == LUA_TSTRING)
      fd->items = (unsigned char)kind_of(lua_tostring(L, -1));
    else if (ti != LUA_TNIL && lua_toboolean(L, -1))
      goto bad;
    if (fd->items == K_BAD || fd->items == K_OBJECT || fd->items == K_ARRAY)
      goto bad; /* check_scalar: unsupported schema type */
  }
  int te = raw_field(L, f, "enum");
  if (te == LUA_TTABLE) {
    int e = lua_gettop(L);
    size_t n = (size_t)lua_rawlen(L, e);
    fd->has_enum = 1;
    fd->enums = calloc(n ? n : 1, sizeof *fd->enums);
    fd->enum_lens = calloc(n ? n : 1, sizeof *fd->enum_lens);
    if (!fd->enums || !fd->enum_lens)
      goto bad;
    /* ipairs: up to the first nil; non-strings never equal a string. */
    for (size_t i = 1; i <= n; i++) {
      int ty = lua_rawgeti(L, e, (lua_Integer)i);
      if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        break;
      }
      if (ty == LUA_TSTRING) {
        size_t l;
        const char *s = lua_tolstring(L, -1, &l);
        fd->enums[fd->n_enum] = dupn(s, l);
        if (!fd->enums[fd->n_enum]) {
          lua_pop(L, 1);
          goto bad;
        }
        fd->enum_lens[fd->n_enum++] = l;
      }
      lua_pop(L, 1);
    }
  } else if (te != LUA_TNIL && lua_toboolean(L, -1)) {
    goto bad;
  }
  int tmin = raw_field(L, f, "min");
  if (tmin != LUA_TNIL && lua_toboolean(L, -1)) {
    raw_field(L, f, "max");
    if (exact_int(L, -2, &fd->min) < 0 || exact_int(L, -1, &fd->max) < 0)
      goto bad;
    fd->has_range = 1;
    int ts = raw_field(L, f, "special");
    if (ts == LUA_TTABLE) {
      int sp = lua_gettop(L);
      size_t n = (size_t)lua_rawlen(L, sp);
      fd->special = calloc(n ? n : 1, sizeof *fd->special);
      if (!fd->special)
        goto bad;
      for (size_t i = 1; i <= n; i++) {
        if (lua_rawgeti(L, sp, (lua_Integer)i) == LUA_TNIL) {
          lua_pop(L, 1);
          break;
        }
        long long v;
        if (exact_int(L, -1, &v) == 0) /* others: declined, not wrong */
          fd->special[fd->n_special++] = v;
        lua_pop(L, 1);
      }
    } else if (ts != LUA_TNIL && lua_toboolean(L, -1)) {
      goto bad;
    }
  }
  int tm = raw_field(L, f, "max_items");
  if (tm == LUA_TNUMBER) {
    fd->has_max_items = 1;
    fd->max_items = lua_tonumber(L, -1);
  } else if (tm != LUA_TNIL && lua_toboolean(L, -1)) {
    goto bad;
  }
  lua_settop(L, top);
  return 0;
bad:
  fd->t = K_BAD;
  lua_settop(L, top);
  return 0;
}

static int find_type(const amc_schema_proof_t *s, const char *name) {
  size_t lo = 0, hi = s->n_types;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(name, s->types[mid].name);
    if (c == 0)
      return (int)mid;
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return -1;
}

/* The name's first and last (up to) eight bytes and its length, mixed
 * by one multiply: two loads for most names, and AVI field names that
 * share a start differ at the end or in length. Collisions only cost a
 * probe. */
static inline uint32_t field_hash(const char *k, size_t kl) {
  uint64_t w;
  if (kl >= 8) {
    uint64_t a, b;
    memcpy(&a, k, 8);
    memcpy(&b, k + kl - 8, 8);
    w = a ^ (b << 1);
  } else if (kl >= 4) {
    uint32_t a, b;
    memcpy(&a, k, 4);
    memcpy(&b, k + kl - 4, 4);
    w = (uint64_t)a << 32 | b;
  } else {
    w = kl ? (uint64_t)(unsigned char)k[0] << 16 |
                 (uint64_t)(unsigned char)k[kl / 2] << 8 |
                 (unsigned char)k[kl - 1]
           : 0;
  }
  w = (w ^ kl) * 0x9E3779B97F4A7C15ULL;
  return (uint32_t)(w >> 32);
}

/* Index of the field named k, or -1. */
static inline __attribute__((always_inline)) int
find_field(const type_t *t, const char *k, size_t kl) {
  if (!t->slots)
    return -1;
  for (size_t i = field_hash(k, kl) & t->mask;; i = (i + 1) & t->mask) {
    unsigned v = t->slots[i];
    if (!v)
      return -1;
    const field_t *f = &t->fields[v - 1];
    if (f->len == kl && amc_bytes_eq(f->name, k, kl))
      return (int)v - 1;
  }
}

/* Builds t->slots for its (final, sorted) fields. */
static int index_fields(type_t *t) {
  if (t->n_fields == 0)
    return 0;
  if (t->n_fields >= 0xFFFF)
    return -1;
  size_t cap = 8;
  while (cap < 4 * t->n_fields)
    cap *= 2;
  t->slots = calloc(cap, sizeof *t->slots);
  if (!t->slots)
    return -1;
  t->mask = cap - 1;
  for (size_t j = 0; j < t->n_fields; j++) {
    size_t i = field_hash(t->fields[j].name, t->fields[j].len) & t->mask;
    while (t->slots[i])
      i = (i + 1) & t->mask;
    t->slots[i] = (uint16_t)(j + 1);
  }
  return 0;
}

/* The type's fields and required list from the definition at `def`;
 * refs are resolved by the caller once all names are known, through
 * `refs` (one ref name or NULL per field, in the final order). */
static int compile_type(lua_State *L, int def, type_t *ty, const char ***refs) {
  int top = lua_gettop(L);
  *refs = NULL;
  if (raw_field(L, def, "fields") != LUA_TTABLE) {
    ty->bad = 1;
    goto out;
  }
  int fl = lua_gettop(L);
  size_t n = 0, cap = 0;
  const char **rn = NULL;
  lua_pushnil(L);
  while (lua_next(L, fl)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE) {
      ty->bad = 1; /* def.fields[k] would not be a facts table */
      lua_pop(L, 1);
      continue;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      field_t *nf = realloc(ty->fields, cap * sizeof *nf);
      const char **nr = realloc(rn, cap * sizeof *nr);
      if (nr)
        rn = nr;
      if (nf)
        ty->fields = nf;
      if (!nf || !nr) {
        lua_settop(L, top);
        free(rn);
        return -1;
      }
    }
    field_t *fd = &ty->fields[n];
    memset(fd, 0, sizeof *fd);
    size_t kl;
    const char *k = lua_tolstring(L, -2, &kl);
    fd->name = dupn(k, kl);
    fd->len = kl;
    if (!fd->name) {
      lua_settop(L, top);
      free(rn);
      return -1;
    }
    compile_field(L, lua_gettop(L), fd, &rn[n]);
    n++;
    lua_pop(L, 1);
  }
  ty->n_fields = n;
  /* Sort fields and their ref names together. */
  if (n > 1) {
    for (size_t i = 0; i < n; i++)
      ty->fields[i].ref = ty->fields[i].ref == REF_BAD ? REF_BAD : -3 - (int)i;
    qsort(ty->fields, n, sizeof *ty->fields, field_cmp);
    const char **sorted = malloc(n * sizeof *sorted);
    if (!sorted) {
      free(rn);
      lua_settop(L, top);
      return -1;
    }
    for (size_t i = 0; i < n; i++) {
      field_t *fd = &ty->fields[i];
      if (fd->ref == REF_BAD) {
        sorted[i] = NULL;
      } else {
        sorted[i] = rn[-3 - fd->ref];
        fd->ref = REF_NONE;
      }
    }
    free(rn);
    rn = sorted;
  }
  *refs = rn;
  if (index_fields(ty) < 0) {
    lua_settop(L, top);
    return -1;
  }
  lua_settop(L, fl);
  int tr = raw_field(L, def, "required");
  if (tr == LUA_TTABLE) {
    int rq = lua_gettop(L);
    size_t m = (size_t)lua_rawlen(L, rq);
    ty->req = calloc(m ? m : 1, sizeof *ty->req);
    if (!ty->req) {
      lua_settop(L, top);
      return -1;
    }
    for (size_t i = 1; i <= m; i++) {
      int t = lua_rawgeti(L, rq, (lua_Integer)i);
      if (t == LUA_TNIL) {
        lua_pop(L, 1);
        break;
      }
      size_t kl = 0;
      const char *k = t == LUA_TSTRING ? lua_tolstring(L, -1, &kl) : NULL;
      int fi = k ? find_field(ty, k, kl) : -1;
      lua_pop(L, 1);
      if (fi < 0) {
        ty->bad = 1; /* could never be present */
        continue;
      }
      ty->req[ty->n_req++] = (size_t)fi;
    }
    qsort(ty->req, ty->n_req, sizeof *ty->req, size_cmp);
    size_t w = 0;
    for (size_t i = 0; i < ty->n_req; i++) {
      if (!w || ty->req[w - 1] != ty->req[i])
        ty->req[w++] = ty->req[i];
    }
    ty->n_req = w;
  } else if (tr != LUA_TNIL && lua_toboolean(L, -1)) {
    ty->bad = 1;
  }
out:
  lua_settop(L, top);
  return 0;
}

amc_schema_proof_t *amc_schema_proof_compile(lua_State *L, int idx) {
  if (!lua_checkstack(L, 32) || lua_type(L, idx) != LUA_TTABLE)
    return NULL;
  idx = lua_absindex(L, idx);
  int top = lua_gettop(L);
  amc_schema_proof_t *s = calloc(1, sizeof *s);
  const char ***refs = NULL;
  if (!s)
    return NULL;
  if (raw_field(L, idx, "types") != LUA_TTABLE ||
      raw_field(L, idx, "objects") != LUA_TTABLE)
    goto fail;
  int types = top + 1, objects = top + 2;
  /* Type names first (sorted), so refs can be resolved by index. */
  size_t cap = 0;
  lua_pushnil(L);
  while (lua_next(L, types)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      continue; /* validate.lua looks types up by string only */
    if (s->n_types == cap) {
      cap = cap ? cap * 2 : 64;
      type_t *nt = realloc(s->types, cap * sizeof *nt);
      if (!nt)
        goto fail;
      s->types = nt;
    }
    type_t *ty = &s->types[s->n_types];
    memset(ty, 0, sizeof *ty);
    ty->name = dupn(lua_tostring(L, -1), strlen(lua_tostring(L, -1)));
    if (!ty->name)
      goto fail;
    s->n_types++;
  }
  if (s->n_types > 1)
    qsort(s->types, s->n_types, sizeof *s->types, type_cmp);
  refs = calloc(s->n_types ? s->n_types : 1, sizeof *refs);
  if (!refs)
    goto fail;
  for (size_t i = 0; i < s->n_types; i++) {
    type_t *ty = &s->types[i];
    lua_pushstring(L, ty->name);
    if (lua_rawget(L, types) != LUA_TTABLE)
      ty->bad = 1;
    else if (compile_type(L, lua_gettop(L), ty, &refs[i]) < 0)
      goto fail;
    lua_pop(L, 1);
  }
  for (size_t i = 0; i < s->n_types; i++) {
    type_t *ty = &s->types[i];
    for (size_t j = 0; refs[i] && j < ty->n_fields; j++) {
      if (ty->fields[j].ref == REF_BAD || !refs[i][j])
        continue;
      int r = find_type(s, refs[i][j]);
      ty->fields[j].ref = r >= 0 ? r : REF_BAD;
    }
  }
  /* REST types -> root type. */
  lua_pushnil(L);
  cap = 0;
  while (lua_next(L, objects)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      if (s->n_roots == cap) {
        cap = cap ? cap * 2 : 16;
        root_t *nr = realloc(s->roots, cap * sizeof *nr);
        if (!nr) {
          lua_pop(L, 2);
          goto fail;
        }
        s->roots = nr;
      }
      root_t *rt = &s->roots[s->n_roots];
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      rt->rest = dupn(k, kl);
      rt->type = lua_type(L, -1) == LUA_TSTRING
                     ? find_type(s, lua_tostring(L, -1))
                     : -1;
      if (!rt->rest) {
        lua_pop(L, 2);
        goto fail;
      }
      s->n_roots++;
    }
    lua_pop(L, 1);
  }
  for (size_t i = 0; i < s->n_types; i++)
    free(refs[i]);
  free(refs);
  lua_settop(L, top);
  return s;
fail:
  if (refs) {
    for (size_t i = 0; i < s->n_types; i++)
      free(refs[i]);
    free(refs);
  }
  amc_schema_proof_free(s);
  lua_settop(L, top);
  return NULL;
}

void amc_schema_proof_free(amc_schema_proof_t *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->n_types; i++) {
    type_t *ty = &s->types[i];
    for (size_t j = 0; j < ty->n_fields; j++) {
      field_t *fd = &ty->fields[j];
      for (size_t k = 0; k < fd->n_enum; k++)
        free(fd->enums[k]);
      free(fd->enums);
      free(fd->enum_lens);
      free(fd->special);
      free(fd->raw);
      free(fd->name);
    }
    free(ty->fields);
    free(ty->slots);
    free(ty->req);
    free(ty->name);
  }
  free(s->types);
  for (size_t i = 0; i < s->n_roots; i++)
    free(s->roots[i].rest);
  free(s->roots);
  free(s);
}

/* ------------------------------------------------------------------------ */
/* Checking                                                                  */

typedef struct {
  const char *p, *end;
} cur_t;

/* Past the string at c->p (which is '"'); its raw (escaped) content in
 * *s, *n; *esc set when it has escapes. */
static inline __attribute__((always_inline)) int
scan_string(cur_t *c, const char **s, size_t *n, int *esc) {
  const char *p = c->p + 1;
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  *esc = 0;
  *s = p;
  for (;;) {
#ifdef __SSE2__
    /* Sixteen bytes at a time while none is '"' or '\\' (names and refs
     * are tens of bytes, certificates and keys kilobytes). */
    const __m128i dq = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
    while (c->end - p >= 16) {
      __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
      unsigned m = (unsigned)_mm_movemask_epi8(
          _mm_or_si128(_mm_cmpeq_epi8(x, dq), _mm_cmpeq_epi8(x, bs)));
      if (m) {
        p += __builtin_ctz(m);
        goto found;
      }
      p += 16;
    }
#endif
    /* Eight bytes at a time while none is '"' or '\\'. */
    while (c->end - p >= 8) {
      uint64_t x, q, b, t;
      memcpy(&x, p, 8);
      q = x ^ (ones * '"');
      b = x ^ (ones * '\\');
      t = ((q - ones) & ~q & highs) | ((b - ones) & ~b & highs);
      if (t) { /* the lowest flag is exact: the first '"' or '\\' */
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        p += __builtin_ctzll(t) >> 3;
#endif
        break;
      }
      p += 8;
    }
    while (p < c->end && *p != '"' && *p != '\\')
      p++;
#ifdef __SSE2__
  found:
#endif
    if (p >= c->end)
      return -1;
    if (*p == '"')
      break;
    if (c->end - p < 2)
      return -1;
    *esc = 1; /* a backslash: skip it and the byte it escapes */
    p += 2;
  }
  *n = (size_t)(p - *s);
  c->p = p + 1;
  return 0;
}

/* The bytes a number token is made of ("0123456789+-.eE"). */
static const unsigned char num_byte[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['e'] = 1, ['E'] = 1};

static int lit(cur_t *c, const char *w, size_t n) {
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0)
    return -1;
  c->p += n;
  return 0;
}

static int skip_value(cur_t *c, int depth) {
  if (c->p >= c->end || depth > MAX_DEPTH)
    return -1;
  const char *s;
  size_t n;
  int esc;
  switch (*c->p) {
  case '"':
    return scan_string(c, &s, &n, &esc);
  case 't':
    return lit(c, "true", 4);
  case 'f':
    return lit(c, "false", 5);
  case 'n':
    return lit(c, "null", 4);
  case '{':
  case '[': {
    char close = *c->p == '{' ? '}' : ']';
    int obj = close == '}';
    c->p++;
    if (c->p < c->end && *c->p == close) {
      c->p++;
      return 0;
    }
    for (;;) {
      if (obj) {
        if (c->p >= c->end || *c->p != '"' || scan_string(c, &s, &n, &esc) ||
            lit(c, ":", 1))
          return -1;
      }
      if (skip_value(c, depth + 1) < 0 || c->p >= c->end)
        return -1;
      if (*c->p == ',') {
        c->p++;
        continue;
      }
      if (*c->p != close)
        return -1;
      c->p++;
      return 0;
    }
  }
  default:
    if (*c->p != '-' && (*c->p < '0' || *c->p > '9'))
      return -1;
    while (c->p < c->end && num_byte[(unsigned char)*c->p])
      c->p++;
    return 0;
  }
}

static int special_has(const field_t *f, double x) {
  for (size_t i = 0; i < f->n_special; i++) {
    if ((double)f->special[i] == x)
      return 1;
  }
  return 0;
}

/* A number token in the range (or a special value) of f. */
static int check_number(const field_t *f, int kind, cur_t *c) {
  const char *s = c->p;
  int is_int = 1;
  if (c->p >= c->end || (*c->p != '-' && (*c->p < '0' || *c->p > '9')))
    return -1;
  while (c->p < c->end && num_byte[(unsigned char)*c->p]) {
    if (*c->p == '.' || *c->p == 'e' || *c->p == 'E')
      is_int = 0;
    c->p++;
  }
  if (kind == K_INTEGER && !is_int)
    return -1; /* validate.lua accepts integral floats; canonical text
                  writes those as integers, except huge ones: declined */
  if (!f->has_range)
    return 0;
  char tmp[64];
  size_t n = (size_t)(c->p - s);
  if (n >= sizeof tmp)
    return -1;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  char *endp;
  errno = 0;
  if (is_int) {
    long long v;
    if (n <= 18) { /* fits: no overflow check needed */
      const char *q = tmp + (tmp[0] == '-');
      if (!*q)
        return -1;
      v = 0;
      for (; *q; q++) {
        if (*q < '0' || *q > '9')
          return -1;
        v = v * 10 + (*q - '0');
      }
      if (tmp[0] == '-')
        v = -v;
    } else {
      v = strtoll(tmp, &endp, 10);
      if (errno || *endp)
        return -1;
    }
    if (v >= f->min && v <= f->max)
      return 0;
    for (size_t i = 0; i < f->n_special; i++) {
      if (f->special[i] == v)
        return 0;
    }
    return -1;
  }
  double d = strtod(tmp, &endp);
  if (errno || *endp || d != d)
    return -1;
  if (d >= (double)f->min && d <= (double)f->max)
    return 0;
  return special_has(f, d) ? 0 : -1;
}

static int check_scalar(const field_t *f, int kind, cur_t *c) {
  if (c->p >= c->end)
    return -1;
  switch (kind) {
  case K_STRING: {
    const char *s;
    size_t n;
    int esc;
    if (*c->p != '"' || scan_string(c, &s, &n, &esc) < 0)
      return -1;
    if (!f->has_enum)
      return 0;
    for (size_t i = 0; i < f->n_enum; i++) {
      if (f->enum_lens[i] == n && (n == 0 || f->enums[i][0] == s[0]) &&
          memcmp(f->enums[i], s, n) == 0)
        return 0;
    }
    return -1;
  }
  case K_INTEGER:
  case K_NUMBER:
    return check_number(f, kind, c);
  case K_BOOLEAN:
    if (*c->p == 't')
      return lit(c, "true", 4);
    return lit(c, "false", 5);
  default:
    return -1;
  }
}

static int check_object(const amc_schema_proof_t *s, int ti, cur_t *c,
                        int depth);

static int check_field(const amc_schema_proof_t *s, const field_t *f, cur_t *c,
                       int depth) {
  if (c->p >= c->end)
    return -1;
  switch (f->t) {
  case K_OBJECT:
    if (f->ref >= 0)
      return check_object(s, f->ref, c, depth + 1);
    if (f->ref != REF_NONE)
      return -1;
    if (*c->p == '[')
      return lit(c, "[]", 2); /* the empty table */
    return *c->p == '{' ? skip_value(c, depth + 1) : -1;
  case K_ARRAY: {
    size_t count = 0;
    if (*c->p == '{') {
      if (lit(c, "{}", 2) < 0) /* the empty table */
        return -1;
    } else if (*c->p != '[') {
      return -1;
    } else if (lit(c, "[]", 2) < 0) {
      c->p++;
      for (;;) {
        int r = f->ref >= 0          ? check_object(s, f->ref, c, depth + 1)
                : f->ref == REF_NONE ? check_scalar(f, f->items, c)
                                     : -1;
        if (r < 0 || c->p >= c->end)
          return -1;
        count++;
        if (*c->p == ',') {
          c->p++;
          continue;
        }
        if (*c->p != ']')
          return -1;
        c->p++;
        break;
      }
    }
    if (f->has_max_items && (double)count > f->max_items)
      return -1;
    return 0;
  }
  default:
    return check_scalar(f, f->t, c);
  }
}

static int check_object(const amc_schema_proof_t *s, int ti, cur_t *c,
                        int depth) {
  const type_t *ty = &s->types[ti];
  if (ty->bad || depth > MAX_DEPTH || c->p >= c->end)
    return -1;
  if (*c->p == '[') /* the empty table */
    return lit(c, "[]", 2) == 0 && ty->n_req == 0 ? 0 : -1;
  if (*c->p != '{')
    return -1;
  c->p++;
  if (c->p < c->end && *c->p == '}') {
    c->p++;
    return ty->n_req == 0 ? 0 : -1;
  }
  size_t r = 0;
  for (;;) {
    const char *k;
    size_t kl;
    int esc;
    if (c->p >= c->end || *c->p != '"' || scan_string(c, &k, &kl, &esc) < 0 ||
        esc || lit(c, ":", 1) < 0)
      return -1;
    int fi = find_field(ty, k, kl);
    if (fi < 0)
      return -1;
    const field_t *f = &ty->fields[fi];
    if (f->ro || f->t == K_BAD)
      return -1;
    /* Keys come in the fields' order, so required ones are met in
     * order too: one that is skipped is missing. */
    if (r < ty->n_req && ty->req[r] < (size_t)fi)
      return -1;
    if (r < ty->n_req && ty->req[r] == (size_t)fi)
      r++;
    if (check_field(s, f, c, depth) < 0 || c->p >= c->end)
      return -1;
    if (*c->p == ',') {
      c->p++;
      continue;
    }
    if (*c->p != '}')
      return -1;
    c->p++;
    break;
  }
  return r == ty->n_req ? 0 : -1;
}

/* The root type of REST type `type`, or -1. */
static int root_type(const amc_schema_proof_t *s, const char *type) {
  for (size_t i = 0; i < s->n_roots; i++) {
    if (strcmp(s->roots[i].rest, type) == 0)
      return s->roots[i].type;
  }
  return -1;
}

int amc_schema_proof_check(const amc_schema_proof_t *s, const char *type,
                           const char *json, size_t len) {
  if (!s || !type)
    return 0;
  int ti = root_type(s, type);
  if (ti < 0)
    return 0;
  cur_t c = {json, json + len};
  /* The root must be an object with content: amc always names objects. */
  if (len == 0 || json[0] != '{')
    return 0;
  return check_object(s, ti, &c, 0) == 0 && c.p == c.end;
}

/* ------------------------------------------------------------------------ */
/* Checking a tape                                                           */

/* The same rules as on text (check_object, check_field, check_scalar
 * above), on the tokens of what the encoder wrote: a value is accepted
 * here exactly when its canonical text would be accepted there, with two
 * exceptions on the safe side of validate.lua: an enum value that needs
 * escaping is compared unescaped (as validate.lua compares it), and floats
 * of magnitude above 2^53 are declined. */

typedef struct {
  const amc_json_tok_t *t, *end;
  const char *json; /* what RAW tokens point into */
  size_t len;
} tcur_t;

static int tcheck_object(const amc_schema_proof_t *s, int ti, tcur_t *c,
                         int depth);

/* Past the value at c->t (any tokens up to its END). */
static int tskip_value(tcur_t *c) {
  size_t open = 0;
  do {
    if (c->t >= c->end)
      return -1;
    int k = c->t->kind;
    if (k == AMC_JT_OBJ || k == AMC_JT_ARR)
      open++;
    else if (k == AMC_JT_END && open-- == 0)
      return -1;
    c->t++;
  } while (open);
  return 0;
}

/* A RAW token where field f's value (f NULL: an object of type ti) is
 * expected: checked on its bytes. */
static int tcheck_raw(const amc_schema_proof_t *s, const field_t *f, int ti,
                      tcur_t *c, int depth) {
  const amc_json_tok_t *k = c->t;
  if (k->u.off > c->len || k->len > c->len - k->u.off)
    return -1;
  const char *bytes = c->json + k->u.off;
  c->t++;
  /* The gateway's markers, in every object: proved once. */
  if (f && f->raw && f->raw_len == k->len && memcmp(f->raw, bytes, k->len) == 0)
    return 0;
  cur_t b = {bytes, bytes + k->len};
  int r = f ? check_field(s, f, &b, depth) : check_object(s, ti, &b, depth);
  if (r < 0 || b.p != b.end)
    return -1;
  if (f) { /* (the schema is the caller's, not const: see schema_proof.h) */
    field_t *mf = (field_t *)f;
    char *n = realloc(mf->raw, k->len ? k->len : 1);
    if (n) {
      memcpy(n, bytes, k->len);
      mf->raw = n;
      mf->raw_len = k->len;
    }
  }
  return 0;
}

/* An integer value against f's range and specials (check_number). */
static inline int tcheck_int(const field_t *f, long long v) {
  if (!f->has_range || (v >= f->min && v <= f->max))
    return 0;
  for (size_t i = 0; i < f->n_special; i++) {
    if (f->special[i] == v)
      return 0;
  }
  return -1;
}

static int tcheck_scalar(const field_t *f, int kind, tcur_t *c) {
  if (c->t >= c->end)
    return -1;
  const amc_json_tok_t *k = c->t++;
  switch (kind) {
  case K_STRING:
    if (k->kind != AMC_JT_STR)
      return -1;
    if (!f->has_enum)
      return 0;
    for (size_t i = 0; i < f->n_enum; i++) {
      if (f->enum_lens[i] == k->len &&
          (k->len == 0 || f->enums[i][0] == k->u.s[0]) &&
          memcmp(f->enums[i], k->u.s, k->len) == 0)
        return 0;
    }
    return -1;
  case K_INTEGER:
  case K_NUMBER:
    if (k->kind == AMC_JT_INT)
      return tcheck_int(f, (long long)k->u.i);
    if (k->kind != AMC_JT_FLT)
      return -1;
    {
      double d = k->u.d;
      if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0))
        return -1;
      if (d == (double)(long long)d) /* written as an integer */
        return tcheck_int(f, (long long)d);
      if (kind == K_INTEGER)
        return -1;
      if (!f->has_range || (d >= (double)f->min && d <= (double)f->max))
        return 0;
      return special_has(f, d) ? 0 : -1;
    }
  case K_BOOLEAN:
    return k->kind == AMC_JT_TRUE || k->kind == AMC_JT_FALSE ? 0 : -1;
  default:
    return -1;
  }
}

/* An empty OBJ or ARR at c->t (the empty table): stepped over. */
static inline int tempty(tcur_t *c) {
  if (c->end - c->t >= 2 && c->t[1].kind == AMC_JT_END &&
      (c->t->kind == AMC_JT_OBJ || c->t->kind == AMC_JT_ARR)) {
    c->t += 2;
    return 1;
  }
  return 0;
}

static int tcheck_field(const amc_schema_proof_t *s, const field_t *f,
                        tcur_t *c, int depth) {
  if (c->t >= c->end)
    return -1;
  if (c->t->kind == AMC_JT_RAW)
    return tcheck_raw(s, f, -1, c, depth);
  switch (f->t) {
  case K_OBJECT:
    if (f->ref >= 0)
      return tcheck_object(s, f->ref, c, depth + 1);
    if (f->ref != REF_NONE)
      return -1;
    if (c->t->kind == AMC_JT_ARR)
      return tempty(c) ? 0 : -1;
    return c->t->kind == AMC_JT_OBJ && depth + 1 <= MAX_DEPTH
               ? tskip_value(c)
               : -1;
  case K_ARRAY: {
    size_t count = 0;
    if (tempty(c))
      return 0;
    if (c->t->kind != AMC_JT_ARR)
      return -1;
    c->t++;
    while (c->t < c->end && c->t->kind != AMC_JT_END) {
      int r = f->ref >= 0          ? tcheck_object(s, f->ref, c, depth + 1)
              : f->ref == REF_NONE ? (c->t->kind == AMC_JT_RAW
                                          ? -1
                                          : tcheck_scalar(f, f->items, c))
                                   : -1;
      if (r < 0)
        return -1;
      count++;
    }
    if (c->t >= c->end)
      return -1;
    c->t++;
    if (f->has_max_items && (double)count > f->max_items)
      return -1;
    return 0;
  }
  default:
    return tcheck_scalar(f, f->t, c);
  }
}

static int tcheck_object(const amc_schema_proof_t *s, int ti, tcur_t *c,
                         int depth) {
  const type_t *ty = &s->types[ti];
  if (ty->bad || depth > MAX_DEPTH || c->t >= c->end)
    return -1;
  if (c->t->kind == AMC_JT_RAW)
    return tcheck_raw(s, NULL, ti, c, depth);
  if (tempty(c)) /* the empty table */
    return ty->n_req == 0 ? 0 : -1;
  if (c->t->kind != AMC_JT_OBJ)
    return -1;
  c->t++;
  size_t r = 0;
  while (c->t < c->end && c->t->kind == AMC_JT_KEY) {
    int fi = find_field(ty, c->t->u.s, c->t->len);
    if (fi < 0)
      return -1;
    const field_t *f = &ty->fields[fi];
    if (f->ro || f->t == K_BAD)
      return -1;
    /* Keys come in the fields' order (see check_object). */
    if (r < ty->n_req && ty->req[r] < (size_t)fi)
      return -1;
    if (r < ty->n_req && ty->req[r] == (size_t)fi)
      r++;
    c->t++;
    /* The usual value, a string without an enum, needs no call. */
    if (f->t == K_STRING && !f->has_enum && c->t < c->end &&
        c->t->kind == AMC_JT_STR) {
      c->t++;
      continue;
    }
    if (tcheck_field(s, f, c, depth) < 0)
      return -1;
  }
  if (c->t >= c->end || c->t->kind != AMC_JT_END)
    return -1;
  c->t++;
  return r == ty->n_req ? 0 : -1;
}

int amc_schema_proof_check_tape(amc_schema_proof_t *s, const char *type,
                                const amc_json_tape_t *tape, const char *json,
                                size_t len) {
  if (!s || !type || !tape || tape->failed || tape->n == 0)
    return 0;
  int ti = root_type(s, type);
  if (ti < 0)
    return 0;
  tcur_t c = {tape->tok, tape->tok + tape->n, json, len};
  /* The root must be an object (as on text: '{'). */
  if (c.t->kind != AMC_JT_OBJ)
    return 0;
  return tcheck_object(s, ti, &c, 0) == 0 && c.t == c.end;
}
