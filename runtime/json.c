/* json.c - JSON decoder into Lua values and canonical JSON encoder.
 *
 * The decoder is a recursive-descent parser that builds Lua values directly
 * (no intermediate tree). It runs under lua_pcall so that an allocation
 * failure inside Lua (the rules VM has a memory cap) becomes an error return
 * instead of a longjmp through our caller. Syntax errors are reported by
 * plain returns, which keeps the common path cheap.
 *
 * The encoder uses only raw, non-allocating Lua accessors (lua_next,
 * lua_rawget*, lua_tolstring on strings) so it cannot raise; it needs no
 * pcall. Object keys are collected into a C array and sorted with memcmp. */
#include "json.h"
#include "util/bytes_eq.h"

#include <errno.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char amc_json_null_sentinel;

/* The encoder appends with amc_buf_put1/amc_buf_putn (util/buf.h): the
 * text stays unterminated until encode() ends it. */

/* Length of the prefix of [p, end) made of bytes 0x20-0x7F other than '"'
 * and '\\' (what a JSON string holds unescaped), eight bytes at a time. */
static inline size_t plain_run(const unsigned char *p,
                               const unsigned char *end) {
  const unsigned char *s = p;
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  while (end - p >= 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    uint64_t t = ((x - ones * 0x20) | (q - ones) | (b - ones) | x) & highs;
    /* A high bit in t: a byte < 0x20, '"', '\\' or >= 0x80 may be in the
     * word (the subtractions can also flag a byte after one of those,
     * never miss one, so the lowest flag is exact). */
    if (t) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      return (size_t)(p - s) + (size_t)(__builtin_ctzll(t) >> 3);
#else
      break;
#endif
    }
    p += 8;
  }
  while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
    p++;
  return (size_t)(p - s);
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                  */

typedef struct {
  const char *start;
  const char *p;
  const char *end;
  int depth;
  int trusted;         /* canonical input: no duplicate-key/UTF-8 checks */
  int array_mt;        /* stack index of the array metatable */
  int keys;            /* trusted: stack index of the key cache's strings */
  struct keycache *kc; /* trusted: the key cache (see dec_key) */
  int room_top;        /* lua_checkstack has made room up to this index */
  amc_buf_t *scratch;  /* unescaped string bytes */
  const char *err_at;  /* where the error is */
  char msg[160];       /* the problem, without position */
} dec_t;

static int dec_fail(dec_t *d, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int dec_fail(dec_t *d, const char *at, const char *fmt, ...) {
  if (d->err_at)
    return -1; /* keep the first (innermost) error */
  d->err_at = at;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->msg, sizeof d->msg, fmt, ap);
  va_end(ap);
  return -1;
}

static inline void skip_ws(dec_t *d) {
  if (d->p < d->end && (unsigned char)*d->p > ' ')
    return; /* (canonical text has no whitespace at all) */
  const char *p = d->p;
  /* (every byte that starts or ends a token is above ' ') */
  while (p < d->end && (unsigned char)*p <= ' ' &&
         (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  d->p = p;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. Rejects
 * overlong forms, UTF-16 surrogates and code points above U+10FFFF. */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  if (c < 0x80)
    return 1;
  if (c < 0xC2)
    return 0;
  if (c < 0xE0) {
    if (end - p < 2 || (p[1] & 0xC0) != 0x80)
      return 0;
    return 2;
  }
  if (c < 0xF0) {
    if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
      return 0;
    if (c == 0xE0 && p[1] < 0xA0)
      return 0; /* overlong */
    if (c == 0xED && p[1] >= 0xA0)
      return 0; /* surrogate */
    return 3;
  }
  if (c < 0xF5) {
    if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
        (p[3] & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && p[1] < 0x90)
      return 0; /* overlong */
    if (c == 0xF4 && p[1] >= 0x90)
      return 0; /* > U+10FFFF */
    return 4;
  }
  return 0;
}

static void put_utf8(amc_buf_t *b, unsigned cp) {
  char *o = amc_buf_reserve(b, 4);
  size_t n;
  if (cp < 0x80) {
    o[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  amc_buf_commit(b, n);
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= (unsigned)(c - 'A' + 10);
    else
      return -1;
  }
  *out = v;
  return 0;
}

/* Parses the string starting at d->p (on the opening quote) and pushes it. */
static int dec_string(lua_State *L, dec_t *d) {
  const char *open = d->p;
  const unsigned char *p = (const unsigned char *)d->p + 1;
  const unsigned char *end = (const unsigned char *)d->end;
  const unsigned char *run = p;
  int escaped = 0;
  for (;;) {
    if (p >= end)
      return dec_fail(d, open, "unterminated string");
    p += plain_run(p, end);
    if (p >= end)
      return dec_fail(d, open, "unterminated string");
    unsigned c = *p;
    if (c == '"')
      break;
    if (c < 0x20)
      return dec_fail(d, (const char *)p,
                      "control character U+%04X in string (must be escaped)",
                      c);
    if (c >= 0x80) {
      if (d->trusted) {
        p++;
        continue;
      }
      int n = utf8_len(p, end);
      if (!n)
        return dec_fail(d, (const char *)p, "invalid UTF-8 in string");
      p += n;
      continue;
    }
    /* backslash */
    if (!escaped) { /* (most strings have no escapes: no scratch) */
      escaped = 1;
      amc_buf_reset(d->scratch);
    }
    amc_buf_append(d->scratch, run, (size_t)(p - run));
    if (end - p < 2)
      return dec_fail(d, open, "unterminated string");
    char e = (char)p[1];
    const unsigned char *esc = p;
    p += 2;
    switch (e) {
    case '"':
      amc_buf_putc(d->scratch, '"');
      break;
    case '\\':
      amc_buf_putc(d->scratch, '\\');
      break;
    case '/':
      amc_buf_putc(d->scratch, '/');
      break;
    case 'b':
      amc_buf_putc(d->scratch, '\b');
      break;
    case 'f':
      amc_buf_putc(d->scratch, '\f');
      break;
    case 'n':
      amc_buf_putc(d->scratch, '\n');
      break;
    case 'r':
      amc_buf_putc(d->scratch, '\r');
      break;
    case 't':
      amc_buf_putc(d->scratch, '\t');
      break;
    case 'u': {
      unsigned cp;
      if (end - p < 4 || hex4((const char *)p, &cp) < 0)
        return dec_fail(d, (const char *)esc, "invalid \\u escape");
      p += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned lo;
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
            hex4((const char *)p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
          return dec_fail(d, (const char *)esc,
                          "unpaired UTF-16 surrogate in \\u escape");
        p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return dec_fail(d, (const char *)esc,
                        "unpaired UTF-16 surrogate in \\u escape");
      }
      put_utf8(d->scratch, cp);
      break;
    }
    default:
      return dec_fail(d, (const char *)esc, "invalid escape '\\%c'",
                      (e >= 0x20 && e < 0x7f) ? e : '?');
    }
    run = p;
  }
  if (!escaped) {
    lua_pushlstring(L, (const char *)run, (size_t)(p - run));
  } else {
    amc_buf_append(d->scratch, run, (size_t)(p - run));
    lua_pushlstring(L, d->scratch->data, d->scratch->len);
  }
  d->p = (const char *)p + 1;
  return 0;
}

/* Pushes n as an integer when it is integral and fits in int64. */
static void push_number(lua_State *L, double n) {
  if (n >= -9223372036854775808.0 && n < 9223372036854775808.0 &&
      n == floor(n)) {
    lua_pushinteger(L, (lua_Integer)n);
  } else {
    lua_pushnumber(L, n);
  }
}

static int dec_number(lua_State *L, dec_t *d) {
  const char *s = d->p, *p = d->p;
  int neg = 0, plain = 1;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  if (p >= d->end || *p < '0' || *p > '9')
    return dec_fail(d, s, "invalid number");
  if (*p == '0') {
    p++;
    if (p < d->end && *p >= '0' && *p <= '9')
      return dec_fail(d, s, "invalid number (leading zero)");
  } else {
    while (p < d->end && *p >= '0' && *p <= '9')
      p++;
  }
  const char *int_end = p;
  if (p < d->end && *p == '.') {
    plain = 0;
    p++;
    if (p >= d->end || *p < '0' || *p > '9')
      return dec_fail(d, s, "invalid number (digit expected after '.')");
    while (p < d->end && *p >= '0' && *p <= '9')
      p++;
  }
  if (p < d->end && (*p == 'e' || *p == 'E')) {
    plain = 0;
    p++;
    if (p < d->end && (*p == '+' || *p == '-'))
      p++;
    if (p >= d->end || *p < '0' || *p > '9')
      return dec_fail(d, s, "invalid number (digit expected in exponent)");
    while (p < d->end && *p >= '0' && *p <= '9')
      p++;
  }
  d->p = p;
  if (plain && int_end - s <= 19) {
    /* Fast path: at most 18 digits always fits in int64; 19 may not. */
    const char *q = s + neg;
    uint64_t v = 0;
    for (; q < int_end; q++)
      v = v * 10 + (uint64_t)(*q - '0');
    if (!neg && v <= (uint64_t)INT64_MAX) {
      lua_pushinteger(L, (lua_Integer)v);
      return 0;
    }
    if (neg && v <= (uint64_t)INT64_MAX + 1) {
      lua_pushinteger(L, (lua_Integer)(0 - v));
      return 0;
    }
  }
  /* strtod needs a NUL-terminated copy: the input is not terminated. */
  char tmp[64];
  size_t n = (size_t)(p - s);
  char *buf = n < sizeof tmp ? tmp : malloc(n + 1);
  if (!buf)
    return dec_fail(d, s, "out of memory");
  memcpy(buf, s, n);
  buf[n] = '\0';
  double v = strtod(buf, NULL);
  if (buf != tmp)
    free(buf);
  if (isinf(v))
    return dec_fail(d, s, "number out of range");
  push_number(L, v);
  return 0;
}

static int dec_value(lua_State *L, dec_t *d);

static int dec_literal(dec_t *d, const char *lit, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, lit, n) != 0)
    return dec_fail(d, d->p, "invalid literal (expected '%s')", lit);
  d->p += n;
  return 0;
}

/* Object keys of canonical text (the store's objects) repeat endlessly
 * ("metadata", "name", ...). Interning them through lua_pushlstring means
 * hashing and looking up each one; a small direct-mapped cache of recent
 * keys per Lua state (a userdata in the registry, its strings anchored in
 * its user value) answers most of them with one rawgeti. A slot holds the
 * key's first 16 bytes as two zero-padded words, so most keys (up to 16
 * bytes) are found, hashed and compared from two loads. The strings are
 * the same interned ones lua_pushlstring would give (KC_MAXLEN is below
 * Lua's short-string limit). String values are not cached: a cached
 * string lives as long as its slot, and values met over hours, scattered
 * through the rules VM's slabs, kept whole slabs from being reclaimed
 * (+3 MB at 10k VirtualServices for 0.7% of the 1k translation). */
#define KC_SLOTS  512
#define KC_MAXLEN 32
struct keycache {
  struct kc_slot {
    uint64_t w[2];             /* the key's first 16 bytes, zero-padded */
    char tail[KC_MAXLEN - 16]; /* the rest */
    unsigned char len;         /* 0: empty */
    uint32_t missed;           /* the hash of the last string that missed */
  } slot[KC_SLOTS];
};

/* The key cache's registry key (a light userdata: no string to intern). */
static const char kc_regkey;

/* Pushes the key cache, the array metatable and the cache's strings table
 * (d->kc, d->array_mt, d->keys set), creating the cache on first use. The
 * userdata holds the metatable too (user value 2), so one registry lookup
 * serves a decode (it is the registry's AMC_JSON_ARRAY_MT table, which is
 * created once and never replaced). */
static void push_keycache(lua_State *L, dec_t *d) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &kc_regkey) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    struct keycache *kc = lua_newuserdatauv(L, sizeof *kc, 2);
    memset(kc, 0, sizeof *kc);
    lua_createtable(L, KC_SLOTS, 0);
    lua_setiuservalue(L, -2, 1);
    luaL_newmetatable(L, AMC_JSON_ARRAY_MT);
    lua_setiuservalue(L, -2, 2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &kc_regkey);
  }
  d->kc = lua_touserdata(L, -1);
  lua_getiuservalue(L, -1, 2);
  d->array_mt = lua_gettop(L);
  lua_getiuservalue(L, -2, 1);
  d->keys = d->array_mt + 1;
}

/* A high bit in the result for each byte of x that may be below 0x20,
 * '"', '\\' or >= 0x80 (the subtractions can also flag a byte after one
 * of those, never miss one, so the lowest flag is exact). */
static inline uint64_t plain_flags(uint64_t x) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
  return ((x - ones * 0x20) | (q - ones) | (b - ones) | x) & highs;
}

/* The bytes of the word x (little-endian) below byte n (0..8). */
static inline uint64_t low_bytes(uint64_t x, size_t n) {
  return n ? x & (~0ULL >> (64 - 8 * n)) : 0;
}

/* Pushes the key at d->p (on its opening quote) when it is short and has
 * no escapes, from the cache if there. Returns 1 when done, 0 when the
 * caller should decode it otherwise. */
static inline __attribute__((always_inline)) int kc_push(lua_State *L,
                                                         dec_t *d) {
  const unsigned char *s = (const unsigned char *)d->p + 1;
  const unsigned char *end = (const unsigned char *)d->end;
  uint64_t w[2] = {0, 0};
  size_t n;
  /* (a key with bytes >= 0x80 stops short of its quote: dec_string) */
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (end - s >= 16) {
    uint64_t x0, x1, t;
    memcpy(&x0, s, 8);
    memcpy(&x1, s + 8, 8);
    if ((t = plain_flags(x0)) != 0) {
      n = (size_t)(__builtin_ctzll(t) >> 3);
      w[0] = low_bytes(x0, n);
    } else if ((t = plain_flags(x1)) != 0) {
      n = 8 + (size_t)(__builtin_ctzll(t) >> 3);
      w[0] = x0;
      w[1] = low_bytes(x1, n - 8);
    } else {
      n = 16 + plain_run(s + 16, end);
      w[0] = x0;
      w[1] = x1;
    }
  } else
#endif
  {
    n = plain_run(s, end);
    memcpy(w, s, n < 16 ? n : 16);
  }
  if (n == 0 || n > KC_MAXLEN || s + n >= end || s[n] != '"')
    return 0;
  uint64_t hh =
      (w[0] ^ (w[1] * 0xC2B2AE3D27D4EB4FULL) ^ ((uint64_t)s[n - 1] << 40) ^ n) *
      0x9E3779B97F4A7C15ULL;
  unsigned h = (unsigned)(hh >> 55); /* 9 bits: KC_SLOTS */
  struct kc_slot *sl = &d->kc->slot[h];
  if (sl->len == n && sl->w[0] == w[0] && sl->w[1] == w[1] &&
      (n <= 16 || amc_bytes_eq(sl->tail, s + 16, n - 16))) {
    lua_rawgeti(L, d->keys, (lua_Integer)h + 1);
  } else if (sl->len && sl->missed != (uint32_t)hh) {
    /* A string takes a used slot on its second miss in a row there: one
     * met once (a name, an address) neither evicts a repeating one nor
     * costs the caching. */
    sl->missed = (uint32_t)hh;
    lua_pushlstring(L, (const char *)s, n);
  } else {
    lua_pushlstring(L, (const char *)s, n);
    lua_pushvalue(L, -1);
    lua_rawseti(L, d->keys, (lua_Integer)h + 1);
    sl->w[0] = w[0];
    sl->w[1] = w[1];
    sl->len = (unsigned char)n;
    if (n > 16)
      memcpy(sl->tail, s + 16, n - 16);
  }
  d->p = (const char *)s + n + 1;
  return 1;
}

static inline __attribute__((always_inline)) int dec_key(lua_State *L,
                                                         dec_t *d) {
  return kc_push(L, d);
}

/* Containers are built with their final size: members (and elements) are
 * first pushed on the Lua stack, up to a chunk, and moved into a table
 * created for exactly that many; only longer containers grow after that.
 * (Growing a table rehashes it at every power of two.) */
#define DEC_CHUNK 32

/* Makes sure a container opened at the top (`top`) can push its pending
 * members and the slots they need: lua_checkstack is asked for several
 * levels' worth at once, not once per container (the room stays for the
 * whole protected call). */
static int dec_room(lua_State *L, dec_t *d, int top) {
  if (top + 2 * DEC_CHUNK + 4 <= d->room_top)
    return 1;
  if (lua_checkstack(L, 8 * DEC_CHUNK + 16)) {
    d->room_top = top + 8 * DEC_CHUNK + 16;
    return 1;
  }
  return lua_checkstack(L, 2 * DEC_CHUNK + 4);
}

/* Moves the n key/value pairs above the table at `t` into it. */
static void dec_flush_pairs(lua_State *L, int t, int n) {
  for (; n > 0; n--)
    lua_rawset(L, t);
}

static int dec_object(lua_State *L, dec_t *d) {
  const char *open = d->p;
  if (++d->depth > AMC_JSON_MAX_DEPTH)
    return dec_fail(d, open, "nesting deeper than %d", AMC_JSON_MAX_DEPTH);
  int t = lua_gettop(L) + 1; /* where the table goes */
  if (!dec_room(L, d, t - 1))
    return dec_fail(d, open, "Lua stack exhausted");
  d->p++;
  skip_ws(d);
  if (d->p < d->end && *d->p == '}') {
    d->p++;
    d->depth--;
    lua_createtable(L, 0, 0);
    return 0;
  }
  int made = 0, n = 0;
  lua_pushnil(L); /* placeholder for the table */
  for (;;) {
    skip_ws(d);
    if (d->p >= d->end)
      return dec_fail(d, d->p, "unexpected end of input in object");
    if (*d->p != '"')
      return dec_fail(d, d->p, "object key (a string) expected");
    const char *key_at = d->p;
    if (!(d->kc && dec_key(L, d)) && dec_string(L, d) < 0)
      return -1;
    if (!d->trusted) {
      /* Among the pending pairs, then in the table. */
      for (int i = 0; i < n; i++) {
        if (lua_rawequal(L, t + 1 + 2 * i, -1))
          return dec_fail(d, key_at, "duplicate key \"%.60s\"",
                          lua_tostring(L, -1));
      }
      if (made) {
        lua_pushvalue(L, -1);
        if (lua_rawget(L, t) != LUA_TNIL)
          return dec_fail(d, key_at, "duplicate key \"%.60s\"",
                          lua_tostring(L, -2));
        lua_pop(L, 1);
      }
    }
    skip_ws(d);
    if (d->p >= d->end || *d->p != ':')
      return dec_fail(d, d->p, "':' expected after object key");
    d->p++;
    skip_ws(d);
    if (dec_value(L, d) < 0)
      return -1;
    if (++n == DEC_CHUNK) {
      if (!made) {
        lua_createtable(L, 0, 2 * DEC_CHUNK);
        lua_replace(L, t);
        made = 1;
      }
      dec_flush_pairs(L, t, n);
      n = 0;
    }
    skip_ws(d);
    if (d->p >= d->end)
      return dec_fail(d, d->p, "unexpected end of input in object");
    if (*d->p == ',') {
      d->p++;
      continue;
    }
    if (*d->p == '}') {
      d->p++;
      break;
    }
    return dec_fail(d, d->p, "',' or '}' expected in object");
  }
  if (!made) {
    lua_createtable(L, 0, n);
    lua_replace(L, t);
  }
  dec_flush_pairs(L, t, n);
  d->depth--;
  return 0;
}

static int dec_array(lua_State *L, dec_t *d) {
  const char *open = d->p;
  if (++d->depth > AMC_JSON_MAX_DEPTH)
    return dec_fail(d, open, "nesting deeper than %d", AMC_JSON_MAX_DEPTH);
  int t = lua_gettop(L) + 1; /* where the table goes */
  if (!dec_room(L, d, t - 1))
    return dec_fail(d, open, "Lua stack exhausted");
  d->p++;
  skip_ws(d);
  if (d->p < d->end && *d->p == ']') {
    d->p++;
    d->depth--;
    lua_createtable(L, 0, 0);
    lua_pushvalue(L, d->array_mt);
    lua_setmetatable(L, -2);
    return 0;
  }
  int made = 0, n = 0;
  lua_Integer done = 0; /* elements already in the table */
  lua_pushnil(L);
  for (;;) {
    skip_ws(d);
    if (dec_value(L, d) < 0)
      return -1;
    if (++n == 2 * DEC_CHUNK) {
      if (!made) {
        lua_createtable(L, 4 * DEC_CHUNK, 0);
        lua_replace(L, t);
        made = 1;
      }
      for (int i = n; i > 0; i--)
        lua_rawseti(L, t, done + i);
      done += n;
      n = 0;
    }
    skip_ws(d);
    if (d->p >= d->end)
      return dec_fail(d, d->p, "unexpected end of input in array");
    if (*d->p == ',') {
      d->p++;
      continue;
    }
    if (*d->p == ']') {
      d->p++;
      break;
    }
    return dec_fail(d, d->p, "',' or ']' expected in array");
  }
  if (!made) {
    lua_createtable(L, n, 0);
    lua_replace(L, t);
  }
  for (int i = n; i > 0; i--)
    lua_rawseti(L, t, done + i);
  lua_pushvalue(L, d->array_mt);
  lua_setmetatable(L, t);
  d->depth--;
  return 0;
}

static int dec_value(lua_State *L, dec_t *d) {
  if (d->p >= d->end)
    return dec_fail(d, d->p, "unexpected end of input");
  switch (*d->p) {
  case '{':
    return dec_object(L, d);
  case '[':
    return dec_array(L, d);
  case '"':
    return dec_string(L, d);
  case 't':
    if (dec_literal(d, "true", 4) < 0)
      return -1;
    lua_pushboolean(L, 1);
    return 0;
  case 'f':
    if (dec_literal(d, "false", 5) < 0)
      return -1;
    lua_pushboolean(L, 0);
    return 0;
  case 'n':
    if (dec_literal(d, "null", 4) < 0)
      return -1;
    lua_pushlightuserdata(L, AMC_JSON_NULL);
    return 0;
  default:
    if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9'))
      return dec_number(L, d);
    if ((unsigned char)*d->p >= 0x20 && (unsigned char)*d->p < 0x7f)
      return dec_fail(d, d->p, "unexpected character '%c'", *d->p);
    return dec_fail(d, d->p, "unexpected byte 0x%02X", (unsigned char)*d->p);
  }
}

/* The canonical fast path. Store objects are the encoder's output: no
 * whitespace, unique keys, numbers mostly short integers. cdec_* decode
 * that subset with scalars inline (no call per value) and no whitespace
 * or duplicate checks; at anything else (whitespace, a syntax error) they
 * just fail, and dec_run decodes the text again with dec_value, so every
 * input gets dec_value's values and errors. Tables get the sizes and the
 * insertion order dec_value gives them (pairs() visits keys alike). */
static int cdec_object(lua_State *L, dec_t *d);
static int cdec_array(lua_State *L, dec_t *d);

/* One value at d->p (< d->end). */
static inline __attribute__((always_inline)) int cdec_value(lua_State *L,
                                                            dec_t *d) {
  const char *p = d->p, *end = d->end;
  switch (*p) {
  case '"': {
    const unsigned char *s = (const unsigned char *)p + 1;
    const unsigned char *q = s + plain_run(s, (const unsigned char *)end);
    if ((const char *)q < end && *q == '"') {
      lua_pushlstring(L, (const char *)s, (size_t)(q - s));
      d->p = (const char *)q + 1;
      return 0;
    }
    return dec_string(L, d); /* escapes, bytes >= 0x80 */
  }
  case '{':
    return cdec_object(L, d);
  case '[':
    return cdec_array(L, d);
  case 't':
    if (end - p < 4 || memcmp(p, "true", 4) != 0)
      return -1;
    d->p = p + 4;
    lua_pushboolean(L, 1);
    return 0;
  case 'f':
    if (end - p < 5 || memcmp(p, "false", 5) != 0)
      return -1;
    d->p = p + 5;
    lua_pushboolean(L, 0);
    return 0;
  case 'n':
    if (end - p < 4 || memcmp(p, "null", 4) != 0)
      return -1;
    d->p = p + 4;
    lua_pushlightuserdata(L, AMC_JSON_NULL);
    return 0;
  default: {
    /* Integers of up to 18 digits here; anything else in dec_number. */
    const char *q = p + (*p == '-'), *ds = q;
    uint64_t v = 0;
    while (q < end && (unsigned)(*q - '0') < 10) {
      v = v * 10 + (uint64_t)(*q - '0');
      q++;
    }
    size_t nd = (size_t)(q - ds);
    if (nd == 0 || nd > 18 || (nd > 1 && *ds == '0') ||
        (q < end && (*q == '.' || *q == 'e' || *q == 'E')))
      return (nd || *p == '-') ? dec_number(L, d) : -1;
    lua_pushinteger(L, *p == '-' ? (lua_Integer)(0 - v) : (lua_Integer)v);
    d->p = q;
    return 0;
  }
  }
}

static int cdec_object(lua_State *L, dec_t *d) {
  const char *p = d->p + 1, *end = d->end;
  if (++d->depth > AMC_JSON_MAX_DEPTH)
    return -1;
  if (p < end && *p == '}') {
    d->p = p + 1;
    d->depth--;
    lua_createtable(L, 0, 0);
    return 0;
  }
  int t = lua_gettop(L) + 1; /* where the table goes */
  if (!dec_room(L, d, t - 1))
    return -1;
  int made = 0, n = 0;
  lua_pushnil(L); /* placeholder for the table */
  for (;;) {
    if (p >= end || *p != '"')
      return -1;
    d->p = p;
    if (!dec_key(L, d) && dec_string(L, d) < 0)
      return -1;
    p = d->p;
    if (end - p < 2 || *p != ':')
      return -1;
    d->p = p + 1;
    if (cdec_value(L, d) < 0)
      return -1;
    if (++n == DEC_CHUNK) {
      if (!made) {
        lua_createtable(L, 0, 2 * DEC_CHUNK);
        lua_replace(L, t);
        made = 1;
      }
      dec_flush_pairs(L, t, n);
      n = 0;
    }
    p = d->p;
    if (p >= end)
      return -1;
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p != '}')
      return -1;
    break;
  }
  d->p = p + 1;
  if (!made) {
    lua_createtable(L, 0, n);
    lua_replace(L, t);
  }
  dec_flush_pairs(L, t, n);
  d->depth--;
  return 0;
}

static int cdec_array(lua_State *L, dec_t *d) {
  const char *p = d->p + 1, *end = d->end;
  if (++d->depth > AMC_JSON_MAX_DEPTH)
    return -1;
  if (p < end && *p == ']') {
    d->p = p + 1;
    d->depth--;
    lua_createtable(L, 0, 0);
    lua_pushvalue(L, d->array_mt);
    lua_setmetatable(L, -2);
    return 0;
  }
  int t = lua_gettop(L) + 1; /* where the table goes */
  if (!dec_room(L, d, t - 1))
    return -1;
  int made = 0, n = 0;
  lua_Integer done = 0; /* elements already in the table */
  lua_pushnil(L);
  for (;;) {
    if (p >= end)
      return -1;
    d->p = p;
    if (cdec_value(L, d) < 0)
      return -1;
    if (++n == 2 * DEC_CHUNK) {
      if (!made) {
        lua_createtable(L, 4 * DEC_CHUNK, 0);
        lua_replace(L, t);
        made = 1;
      }
      for (int i = n; i > 0; i--)
        lua_rawseti(L, t, done + i);
      done += n;
      n = 0;
    }
    p = d->p;
    if (p >= end)
      return -1;
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p != ']')
      return -1;
    break;
  }
  d->p = p + 1;
  if (!made) {
    lua_createtable(L, n, 0);
    lua_replace(L, t);
  }
  for (int i = n; i > 0; i--)
    lua_rawseti(L, t, done + i);
  lua_pushvalue(L, d->array_mt);
  lua_setmetatable(L, t);
  d->depth--;
  return 0;
}

/* The whole text through the fast path: 0, or -1 when it is not the
 * canonical subset (or not valid JSON). */
static int cdec_run(lua_State *L, dec_t *d) {
  if (d->p >= d->end || cdec_value(L, d) < 0)
    return -1;
  return d->p == d->end ? 0 : -1;
}

/* Pushes the shared array metatable, creating it on first use (it holds
 * only luaL_newmetatable's __name, so other modules may create it too). */
static void push_array_mt(lua_State *L) {
  luaL_newmetatable(L, AMC_JSON_ARRAY_MT);
}

/* Decodes the value at d->p above the stack's top: [array_mt or the key
 * cache's three slots, value] on success; on failure (d->err_at set) the
 * stack is unspecified. Lua errors only when out of memory. */
static int dec_run(lua_State *L, dec_t *d) {
  if (d->trusted) {
    push_keycache(L, d);
    if (cdec_run(L, d) == 0)
      return 0;
    /* Not canonical after all: again, the general way (which also finds
     * the error to report, if any). */
    lua_settop(L, d->keys);
    d->p = d->start;
    d->depth = 0;
    d->err_at = NULL;
  } else {
    /* Keys through the cache here too: a key it takes is plain bytes
     * (no escape, nothing >= 0x80) up to its quote, which needs no
     * check; the duplicate check follows as for any key. */
    push_keycache(L, d);
  }
  skip_ws(d);
  if (dec_value(L, d) < 0)
    return -1;
  skip_ws(d);
  if (d->p != d->end)
    return dec_fail(d, d->p, "unexpected content after the JSON value");
  return 0;
}

/* lua_CFunction run under pcall: [dec_t*] -> value on success, or nothing
 * meaningful on failure (d->err_at set). */
static int dec_protected(lua_State *L) {
  dec_t *d = lua_touserdata(L, 1);
  lua_settop(L, 0);
  return dec_run(L, d) == 0 ? 1 : 0;
}

static void position(const char *start, const char *at, int *line, int *col) {
  int l = 1;
  const char *ls = start;
  for (const char *p = start; p < at; p++) {
    if (*p == '\n') {
      l++;
      ls = p + 1;
    }
  }
  *line = l;
  *col = (int)(at - ls) + 1;
}

static void dec_error(const dec_t *d, const char *s, char *err, size_t errlen) {
  int line, col;
  position(s, d->err_at, &line, &col);
  snprintf(err, errlen, "line %d, column %d: %s", line, col, d->msg);
}

static int decode(lua_State *L, const char *s, size_t len, char *err,
                  size_t errlen, int trusted) {
  dec_t d = {0};
  amc_buf_t scratch = AMC_BUF_INIT;
  d.scratch = &scratch;
  d.trusted = trusted;
  d.start = d.p = s;
  d.end = s + len;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8)) {
    snprintf(err, errlen, "line 1, column 1: Lua stack exhausted");
    return -1;
  }
  lua_pushcfunction(L, dec_protected);
  lua_pushlightuserdata(L, &d);
  int rc = lua_pcall(L, 1, 1, 0);
  amc_buf_free(&scratch);
  if (rc != LUA_OK) {
    const char *at = d.err_at ? d.err_at : d.p;
    int line, col;
    position(s, at, &line, &col);
    snprintf(err, errlen, "line %d, column %d: %s", line, col,
             rc == LUA_ERRMEM ? "out of memory" : "internal error");
    lua_settop(L, top);
    return -1;
  }
  if (d.err_at) {
    dec_error(&d, s, err, errlen);
    lua_settop(L, top);
    return -1;
  }
  return 0;
}

int amc_json_push_canonical(lua_State *L, const char *s, size_t len, char *err,
                            size_t errlen) {
  /* Kept between calls: a Lua error (out of memory) may leave at any
   * point, so nothing here may need freeing. */
  static _Thread_local amc_buf_t scratch;
  dec_t d = {0};
  d.scratch = &scratch;
  d.trusted = 1;
  d.start = d.p = s;
  d.end = s + len;
  int top = lua_gettop(L);
  luaL_checkstack(L, 8, "decoding JSON");
  if (dec_run(L, &d) < 0) {
    lua_settop(L, top);
    dec_error(&d, s, err, errlen);
    return -1;
  }
  lua_replace(L, top + 1); /* the value over the decoder's slots */
  lua_settop(L, top + 1);
  return 0;
}

int amc_json_decode(lua_State *L, const char *s, size_t len, char *err,
                    size_t errlen) {
  return decode(L, s, len, err, errlen, 0);
}

int amc_json_decode_canonical(lua_State *L, const char *s, size_t len,
                              char *err, size_t errlen) {
  return decode(L, s, len, err, errlen, 1);
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */

typedef struct {
  const char *s; /* key (NULL: array index) */
  size_t len;
  lua_Integer index; /* 0-based, for arrays */
} path_seg_t;

typedef struct {
  const char *s;
  size_t len;
  int slot; /* stack index of the value (0: fetch it with rawget) */
} key_t_;

#define EK_SLOTS  256
#define EK_MAXLEN 30

/* Encoder state. Everything malloc'd hangs off it, so that a Lua error
 * (only possible on memory exhaustion) cannot leak: encode() frees it after
 * the protected call. */
typedef struct {
  amc_buf_t *out;
  int pretty;
  int depth;
  int failed;
  int fail_depth;       /* the failure's depth (see enc_fail) */
  char msg[160];        /* its problem */
  int levels;           /* keys[] / keycap[] initialised below this depth */
  int room_top;         /* lua_checkstack has made room up to this index */
  const void *array_mt; /* the JSON array metatable (compared by address) */
  path_seg_t path[AMC_JSON_MAX_DEPTH + 2];
  int slots[AMC_JSON_MAX_DEPTH + 2];    /* stack index of each level's table */
  key_t_ *keys[AMC_JSON_MAX_DEPTH + 2]; /* sorted keys, per depth */
  size_t keycap[AMC_JSON_MAX_DEPTH + 2];
  char *err;
  size_t errlen;
  amc_json_memo_t *memo;     /* NULL: none */
  amc_json_tape_t *tape;     /* NULL: none (or it ran out of memory) */
  amc_json_tok_t *tp, *tend; /* the tape's next free token, its end */
  /* Quoted object keys met before (see enc_key); kept with the state. */
  struct enc_key_slot {
    const char *s; /* the key's bytes in its Lua string (NULL: empty) */
    unsigned char len;
    char quoted[EK_MAXLEN + 4]; /* ,"key": */
  } key_cache[EK_SLOTS];
} enc_t;

/* Pointer -> encoded bytes (in `bytes`): open addressing, power-of-two
 * capacity, NULL key = empty slot. A table met once has no bytes yet
 * (off MEMO_SEEN): most are never met again, and copying every one cost
 * more than encoding the shared ones a second time. */
#define MEMO_SEEN SIZE_MAX
struct amc_json_memo {
  struct memo_slot {
    const void *t;
    size_t off, len;
  } * slot;
  size_t cap, n;
  amc_buf_t bytes;
};

amc_json_memo_t *amc_json_memo_new(void) {
  return calloc(1, sizeof(amc_json_memo_t)); /* bytes: AMC_BUF_INIT */
}

void amc_json_memo_free(amc_json_memo_t *m) {
  if (!m)
    return;
  free(m->slot);
  amc_buf_free(&m->bytes);
  free(m);
}

static size_t memo_hash(const void *t, size_t cap) {
  uint64_t h = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ULL;
  return (size_t)(h >> 32) & (cap - 1);
}

static struct memo_slot *memo_find(const amc_json_memo_t *m, const void *t) {
  if (!m->cap)
    return NULL;
  for (size_t i = memo_hash(t, m->cap);; i = (i + 1) & (m->cap - 1)) {
    if (m->slot[i].t == t)
      return &m->slot[i];
    if (!m->slot[i].t)
      return NULL;
  }
}

/* Remembers that t was met (s NULL) or its encoding (in the slot `at`
 * when it was met before, else a new one); on allocation failure it is
 * just not kept. */
static void memo_add(amc_json_memo_t *m, struct memo_slot *at, const void *t,
                     const char *s, size_t len) {
  if (at) {
    at->off = m->bytes.len;
    at->len = len;
    amc_buf_append(&m->bytes, s, len);
    return;
  }
  if (2 * (m->n + 1) > m->cap) {
    size_t cap = m->cap ? 2 * m->cap : 256;
    struct memo_slot *ns = calloc(cap, sizeof *ns);
    if (!ns)
      return;
    for (size_t i = 0; i < m->cap; i++) {
      if (!m->slot[i].t)
        continue;
      size_t j = memo_hash(m->slot[i].t, cap);
      while (ns[j].t)
        j = (j + 1) & (cap - 1);
      ns[j] = m->slot[i];
    }
    free(m->slot);
    m->slot = ns;
    m->cap = cap;
  }
  size_t off = MEMO_SEEN;
  if (s) {
    off = m->bytes.len;
    amc_buf_append(&m->bytes, s, len);
  }
  size_t i = memo_hash(t, m->cap);
  while (m->slot[i].t)
    i = (i + 1) & (m->cap - 1);
  m->slot[i] = (struct memo_slot){t, off, off == MEMO_SEEN ? 0 : len};
  m->n++;
}

void amc_json_tape_free(amc_json_tape_t *t) {
  free(t->tok);
  *t = (amc_json_tape_t)AMC_JSON_TAPE_INIT;
}

/* Room for one more token; on allocation failure the tape is marked
 * failed, recording stops and the token goes to a sink. */
static __attribute__((noinline)) amc_json_tok_t *tape_grow(enc_t *e) {
  static _Thread_local amc_json_tok_t sink;
  amc_json_tape_t *t = e->tape;
  size_t n = (size_t)(e->tp - t->tok);
  size_t cap = t->cap ? 2 * t->cap : 1024;
  amc_json_tok_t *nt = realloc(t->tok, cap * sizeof *nt);
  if (!nt) {
    t->failed = 1;
    e->tape = NULL;
    return &sink;
  }
  t->tok = nt;
  t->cap = cap;
  e->tp = nt + n + 1;
  e->tend = nt + cap;
  return nt + n;
}

/* Only while e->tape is set. */
static inline amc_json_tok_t *tape_push(enc_t *e, int kind) {
  amc_json_tok_t *k = e->tp < e->tend ? e->tp++ : tape_grow(e);
  k->kind = kind;
  return k;
}

static int enc_fail(enc_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keeps the problem and the depth it was met at; the path to it is set
 * by each enclosing table as the failure returns through it (e->path[]:
 * not stored for every key and element on the way down) and the message
 * made by enc_error once the encoding is over. */
static int enc_fail(enc_t *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  e->failed = 1;
  e->fail_depth = e->depth;
  return -1;
}

/* The failure's message, "path: problem" (see enc_fail). */
static void enc_error(enc_t *e) {
  amc_buf_t b = AMC_BUF_INIT;
  for (int i = 0; i < e->fail_depth; i++) {
    path_seg_t *s = &e->path[i];
    if (s->s) {
      if (i > 0)
        amc_buf_putc(&b, '.');
      amc_buf_append(&b, s->s, s->len > 80 ? 80 : s->len);
    } else {
      amc_buf_printf(&b, "[%lld]", (long long)s->index);
    }
  }
  if (b.len)
    snprintf(e->err, e->errlen, "%s: %s", b.data, e->msg);
  else
    snprintf(e->err, e->errlen, "%s", e->msg);
  amc_buf_free(&b);
}

static const char hexd[] = "0123456789abcdef";

/* 1 for the bytes a JSON string holds unescaped (0x20-0x7F but '"' and
 * '\\'), as plain_run counts them. */
static const unsigned char plain_byte[256] = {
#define R4(c)  [c] = 1, [c + 1] = 1, [c + 2] = 1, [c + 3] = 1
#define R16(c) R4(c), R4(c + 4), R4(c + 8), R4(c + 12)
    [0x20] = 1, [0x21] = 1, [0x23] = 1, R4(0x24), R4(0x28), R4(0x2C),
    R16(0x30),  R16(0x40),  R4(0x50),   R4(0x54), R4(0x58), [0x5D] = 1,
    [0x5E] = 1, [0x5F] = 1, R16(0x60),  R16(0x70)};
#undef R16
#undef R4

/* Appends the quoted, escaped string. Returns -1 on invalid UTF-8. */
static int enc_string(enc_t *e, const char *s, size_t len) {
  amc_buf_t *o = e->out;
  const unsigned char *p = (const unsigned char *)s;
  const unsigned char *end = p + len;
  const unsigned char *run = p;
  if (o->len + len + 3 <= o->cap) {
    /* The usual string (nothing to escape): scanned and copied in one
     * pass, eight bytes at a time. On anything to escape, start over
     * below: o->len has not moved. */
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    char *d = o->data + o->len, *w = d + 1;
#ifdef __SSE2__
    if (len >= 16) {
      /* Sixteen bytes at a time, the last block overlapping the one
       * before; a signed compare flags bytes < 0x20 and >= 0x80. */
      const __m128i sp = _mm_set1_epi8(0x20), dq = _mm_set1_epi8('"'),
                    bs = _mm_set1_epi8('\\');
      for (size_t i = 0;; i += 16) {
        if (i > len - 16)
          i = len - 16;
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        __m128i bad = _mm_or_si128(
            _mm_cmplt_epi8(x, sp),
            _mm_or_si128(_mm_cmpeq_epi8(x, dq), _mm_cmpeq_epi8(x, bs)));
        if (_mm_movemask_epi8(bad))
          goto slow;
        _mm_storeu_si128((__m128i *)(void *)(w + i), x);
        if (i == len - 16)
          break;
      }
    } else
#endif
        if (len >= 8) {
      /* Whole words, the last one overlapping the one before. */
      for (size_t i = 0;; i += 8) {
        if (i > len - 8)
          i = len - 8;
        uint64_t x;
        memcpy(&x, p + i, 8);
        uint64_t a = x ^ (ones * '"'), b = x ^ (ones * '\\');
        if (((x - ones * 0x20) | (a - ones) | (b - ones) | x) & highs)
          goto slow;
        memcpy(w + i, &x, 8);
        if (i == len - 8)
          break;
      }
    } else {
      for (size_t i = 0; i < len; i++) {
        if (!plain_byte[p[i]])
          goto slow;
        w[i] = (char)p[i];
      }
    }
    w += len;
    d[0] = '"';
    w[0] = '"';
    o->len = (size_t)(w + 1 - o->data);
    return 0;
  }
slow:;
  size_t plain = plain_run(p, end);
  amc_buf_put1(o, '"');
  p += plain;
  while (p < end) { /* p is on a byte plain_run stopped at */
    unsigned c = *p;
    if (c >= 0x80) {
      int n = utf8_len(p, end);
      if (!n)
        return enc_fail(e, "invalid UTF-8 in string");
      p += n;
      p += plain_run(p, end);
      continue;
    }
    amc_buf_putn(o, (const char *)run, (size_t)(p - run));
    char esc[7] = {'\\', 0};
    size_t n = 2;
    switch (c) {
    case '"':
      esc[1] = '"';
      break;
    case '\\':
      esc[1] = '\\';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    case '\b':
      esc[1] = 'b';
      break;
    case '\f':
      esc[1] = 'f';
      break;
    default:
      esc[1] = 'u';
      esc[2] = '0';
      esc[3] = '0';
      esc[4] = hexd[c >> 4];
      esc[5] = hexd[c & 15];
      n = 6;
    }
    amc_buf_putn(o, esc, n);
    p++;
    run = p;
    p += plain_run(p, end);
  }
  amc_buf_putn(o, (const char *)run, (size_t)(p - run));
  amc_buf_put1(o, '"');
  return 0;
}

/* An object key, quoted. Output objects repeat a few dozen keys thousands
 * of times: the quoted form of a short key is remembered by the address
 * of its bytes (a Lua string's bytes do not move), and the bytes are
 * compared as well (after a collection another string may live there). */
static int enc_key(enc_t *e, const char *s, size_t len, int first) {
  /* Canonical text: the separator, the key and the colon in one copy. */
  if (len > EK_MAXLEN || e->pretty) {
    if (!first && !e->pretty)
      amc_buf_put1(e->out, ',');
    if (enc_string(e, s, len) < 0)
      return -1;
    if (!e->pretty)
      amc_buf_put1(e->out, ':');
    return 0;
  }
  uintptr_t a = (uintptr_t)s;
  struct enc_key_slot *k =
      &e->key_cache[((a >> 4) ^ (a >> 12)) & (EK_SLOTS - 1)];
  if (k->s == s && k->len == len && amc_bytes_eq(k->quoted + 2, s, len)) {
    amc_buf_t *o = e->out;
    size_t n = len + 4 - (size_t)first;
    if (o->len + sizeof k->quoted + 1 <= o->cap) {
      /* A fixed-size copy (no call) of the whole slot from `first` on: n
       * is at most that (a key of EK_MAXLEN bytes after another key fills
       * the slot); the bytes past n are overwritten later or ignored. */
      memcpy(o->data + o->len, k->quoted + first, sizeof k->quoted - first);
      o->len += n;
    } else {
      amc_buf_putn(o, k->quoted + first, n);
    }
    return 0;
  }
  if (!first)
    amc_buf_put1(e->out, ',');
  size_t at = e->out->len;
  if (enc_string(e, s, len) < 0)
    return -1;
  if (e->out->len - at == len + 2) { /* nothing escaped */
    k->quoted[0] = ',';
    memcpy(k->quoted + 1, e->out->data + at, len + 2);
    k->quoted[len + 3] = ':';
    k->s = s;
    k->len = (unsigned char)len;
  }
  amc_buf_put1(e->out, ':');
  return 0;
}

/* "00" "01" ... "99": two digits a division. */
static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536"
    "37383940414243444546474849505152535455565758596061626364656667686970717273"
    "7475767778798081828384858687888990919293949596979899";

/* Integers are written in place: the digits are counted first (ports,
 * weights and counts are short), then written backwards two at a time. */
static void enc_integer(amc_buf_t *o, lua_Integer v) {
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  size_t n = 1;
  for (uint64_t p = 10; n < 20 && u >= p; p *= 10)
    n++;
  size_t neg = v < 0;
  char *w = o->len + n + neg + 1 <= o->cap ? o->data + o->len
                                           : amc_buf_reserve(o, n + neg);
  if (neg)
    *w = '-';
  char *q = w + neg + n;
  while (u >= 100) {
    unsigned r = (unsigned)(u % 100);
    u /= 100;
    q -= 2;
    q[0] = digit_pairs[2 * r];
    q[1] = digit_pairs[2 * r + 1];
  }
  if (u >= 10) {
    q[-2] = digit_pairs[2 * u];
    q[-1] = digit_pairs[2 * u + 1];
  } else {
    q[-1] = (char)('0' + u);
  }
  o->len += n + neg; /* (unterminated, as put1 and putn leave it) */
}

static int enc_float(enc_t *e, double v) {
  if (isnan(v) || isinf(v))
    return enc_fail(e, "cannot encode %s", isnan(v) ? "NaN" : "infinity");
  if (v >= -9223372036854775808.0 && v < 9223372036854775808.0 &&
      v == floor(v)) {
    enc_integer(e->out, (lua_Integer)v);
    return 0;
  }
  char tmp[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (prec == 17 || strtod(tmp, NULL) == v)
      break;
  }
  amc_buf_puts(e->out, tmp);
  return 0;
}

static void enc_newline(enc_t *e) {
  if (!e->pretty)
    return;
  char *o = amc_buf_reserve(e->out, 1 + 2 * (size_t)e->depth);
  o[0] = '\n';
  memset(o + 1, ' ', 2 * (size_t)e->depth);
  amc_buf_commit(e->out, 1 + 2 * (size_t)e->depth);
}

static inline int key_cmp(const void *a, const void *b) {
  const key_t_ *x = a, *y = b;
  return amc_json_key_order(x->s, x->len, y->s, y->len);
}

static int enc_value(lua_State *L, int idx, enc_t *e);

static int is_array_mt(lua_State *L, int idx, enc_t *e) {
  if (!lua_getmetatable(L, idx))
    return 0;
  int r = e->array_mt && lua_topointer(L, -1) == e->array_mt;
  lua_pop(L, 1);
  return r;
}

/* Keys in bytewise order; insertion sort for the usual handful. */
static __attribute__((noinline)) void sort_keys(key_t_ *keys, size_t n) {
  if (n > 12) {
    qsort(keys, n, sizeof *keys, key_cmp);
    return;
  }
  for (size_t i = 1; i < n; i++) {
    key_t_ k = keys[i];
    size_t j = i;
    while (j > 0 && key_cmp(&keys[j - 1], &k) > 0) {
      keys[j] = keys[j - 1];
      j--;
    }
    keys[j] = k;
  }
}

/* A cycle is only looked for when the nesting gets too deep (a cycle
 * always does): the first level whose table is one of the levels above
 * it, where a check on entering every table would have stopped, is
 * reported as that check would have. Returns -1 (the error) when there is
 * a cycle, else 0. */
static int enc_cycle(lua_State *L, enc_t *e) {
  for (int d = 1; d <= e->depth; d++) {
    const void *t = lua_topointer(L, e->slots[d]);
    for (int i = 0; i < d; i++) {
      if (lua_topointer(L, e->slots[i]) == t) {
        e->depth = d;
        return enc_fail(e, "cannot encode a cycle (table contains itself)");
      }
    }
  }
  return 0;
}

/* Room on the Lua stack up to `need` slots above the top (whose index is
 * `top`). lua_checkstack is asked only when the room made before does not
 * reach: the room it makes stays for the whole protected call (it is the
 * running C function's), so most tables need no call. Asked for the same
 * amounts as per table before, so it fails where it failed then. */
static inline int enc_room(lua_State *L, enc_t *e, int top, int need) {
  if (top + need <= e->room_top)
    return 1;
  if (!lua_checkstack(L, need))
    return 0;
  e->room_top = top + need;
  return 1;
}

/* Why the table at idx cannot be encoded, as enc_table's checks before
 * any element would have said (NULL: it can be). For an array whose
 * element failed to encode while it was streamed (enc_table): such a
 * table's own error comes first, as when it was checked up front. */
static const char *enc_shape_error(lua_State *L, int idx, int marked) {
  size_t nkeys = 0, nint = 0, nother = 0;
  lua_Integer maxint = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, -2), isint = 0;
    lua_Integer k = kt == LUA_TNUMBER ? lua_tointegerx(L, -2, &isint) : 0;
    if (kt == LUA_TSTRING) {
      nkeys++;
    } else if (!isint || k < 1) {
      nother++;
    } else {
      nint++;
      if (k > maxint)
        maxint = k;
    }
    lua_pop(L, 1);
  }
  if (marked || (nkeys == 0 && nother == 0 && nint > 0))
    return nkeys || nother || (lua_Integer)nint != maxint
               ? "cannot encode an array with holes or non-index keys"
               : NULL;
  return nint || nother ? "cannot encode a table mixing string keys with "
                          "other keys (object keys must be strings)"
                        : NULL;
}

static int enc_table(lua_State *L, int idx, enc_t *e) {
  e->slots[e->depth] = idx;
  if (e->depth >= AMC_JSON_MAX_DEPTH) {
    if (enc_cycle(L, e) < 0)
      return -1;
    return enc_fail(e, "nesting deeper than %d", AMC_JSON_MAX_DEPTH);
  }
  int base = lua_gettop(L);
  /* Room for the iteration and the first 16 values (see `room`). */
  int room = 16; /* values that still fit on the stack; -1: no more */
  if (!enc_room(L, e, base, 2 * 16 + 6)) {
    room = -1;
    if (!enc_room(L, e, base, 6)) {
      if (enc_cycle(L, e) < 0)
        return -1;
      return enc_fail(e, "Lua stack exhausted");
    }
  }
  int lvl = e->depth;
  int marked = is_array_mt(L, idx, e);
  int rc = -1;
  lua_pushnil(L);
  int more = lua_next(L, idx);
  if (more && (marked || (lua_type(L, -2) == LUA_TNUMBER &&
                          lua_isinteger(L, -2) && lua_tointeger(L, -2) == 1))) {
    /* An array (the array metatable, or an unmarked table whose first key
     * is 1), streamed: while lua_next gives the keys 1, 2, 3... (the array
     * part, in order: tables of decoded or constructed arrays), each value
     * is encoded as it comes, without collecting and sorting keys. Any
     * other key (a hole, a key in the hash part met out of order, a
     * string) and the output written for it is dropped and the table is
     * walked again below, which encodes or refuses it as before. */
    amc_buf_t *o = e->out;
    size_t out_at = o->len;
    size_t tape_at = e->tape ? (size_t)(e->tp - e->tape->tok) : 0;
    amc_json_tape_t *tape = e->tape;
    lua_Integer i = 1;
    if (e->tape)
      tape_push(e, AMC_JT_ARR);
    amc_buf_put1(o, '[');
    e->depth++;
    for (;;) {
      int isint;
      if (lua_type(L, -2) != LUA_TNUMBER ||
          lua_tointegerx(L, -2, &isint) != i || !isint)
        break; /* not the next index */
      if (i > 1)
        amc_buf_put1(o, ',');
      enc_newline(e);
      if (enc_value(L, base + 2, e) < 0) {
        e->path[lvl] = (path_seg_t){NULL, 0, i - 1};
        /* The table's own shape error, if any, comes first (it was
         * checked before the elements). (A cycle's error moved e->depth:
         * this table's is set again.) */
        e->depth = lvl;
        lua_settop(L, base);
        const char *why = enc_shape_error(L, idx, marked);
        if (why)
          enc_fail(e, "%s", why);
        lua_settop(L, base);
        return -1;
      }
      lua_pop(L, 1);
      i++;
      if (!lua_next(L, idx)) { /* (which popped the key: at base again) */
        e->depth--;
        enc_newline(e);
        amc_buf_put1(o, ']');
        if (e->tape)
          tape_push(e, AMC_JT_END);
        return 0;
      }
    }
    /* Start over the slow way. */
    e->depth--;
    o->len = out_at;
    if (e->tape && e->tape == tape)
      e->tp = e->tape->tok + tape_at;
    lua_settop(L, base);
    lua_pushnil(L);
    more = lua_next(L, idx);
  }

  /* One pass over the keys: count integer keys in range, collect string
   * keys. */
  while (e->levels <= lvl) { /* the arrays are not zeroed up front */
    e->keys[e->levels] = NULL;
    e->keycap[e->levels] = 0;
    e->levels++;
  }
  key_t_ *keys = e->keys[lvl];
  size_t nkeys = 0, cap = e->keycap[lvl], nint = 0, nother = 0;
  lua_Integer maxint = 0;
  /* The values of string keys and of positive integer keys stay on the
   * stack above `base` (a copy of the key goes on top for lua_next), so
   * encoding them needs no lookup. keys[] holds both kinds (an integer
   * key's index in .len, .s NULL): a table with both is an error anyway. */
  int top = base + 1; /* the iteration key */
  for (; more; more = lua_next(L, idx)) {
    int kt = lua_type(L, -2);
    const char *ks = NULL;
    size_t kl = 0;
    if (kt == LUA_TSTRING) {
      ks = lua_tolstring(L, -2, &kl);
      nkeys++;
    } else {
      int isint = 0;
      lua_Integer k = kt == LUA_TNUMBER ? lua_tointegerx(L, -2, &isint) : 0;
      if (!isint || k < 1) {
        nother++;
        lua_pop(L, 1);
        continue;
      }
      nint++;
      if (k > maxint)
        maxint = k;
      kl = (size_t)k;
    }
    size_t n = nkeys + nint - 1; /* this key's entry */
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      key_t_ *nk = realloc(keys, cap * sizeof *nk);
      if (!nk) {
        lua_pop(L, 2);
        enc_fail(e, "out of memory");
        goto done;
      }
      e->keys[lvl] = keys = nk;
      e->keycap[lvl] = cap;
    }
    keys[n].s = ks;
    keys[n].len = kl;
    if (room == 0) /* stack room for the next 16 values at once */
      room = enc_room(L, e, top + 1, 2 * 16 + 3) ? 16 : -1;
    if (room > 0) {
      room--;
      keys[n].slot = top + 1; /* the value's */
      lua_pushvalue(L, -2);
      top += 2;
      continue;
    }
    keys[n].slot = 0;
    lua_pop(L, 1);
  }

  int array = marked || (nkeys == 0 && nother == 0 && nint > 0);
  if (array) {
    if (nkeys || nother || (lua_Integer)nint != maxint) {
      enc_fail(e, "cannot encode an array with holes or non-index keys");
      goto done;
    }
    if (e->tape)
      tape_push(e, AMC_JT_ARR);
    if (nint == 0) {
      amc_buf_putn(e->out, "[]", 2);
      if (e->tape)
        tape_push(e, AMC_JT_END);
      rc = 0;
      goto done;
    }
    amc_buf_put1(e->out, '[');
    e->depth++;
    for (lua_Integer i = 1; i <= maxint; i++) {
      if (i > 1)
        amc_buf_put1(e->out, ',');
      enc_newline(e);
      int r;
      const key_t_ *k = &keys[i - 1];
      if (k->slot && k->len == (size_t)i) { /* met in order (the usual) */
        r = enc_value(L, k->slot, e);
      } else {
        lua_rawgeti(L, idx, i);
        r = enc_value(L, lua_gettop(L), e);
        lua_pop(L, 1);
      }
      if (r < 0) {
        e->path[lvl] = (path_seg_t){NULL, 0, i - 1};
        e->depth--;
        goto done;
      }
    }
    e->depth--;
    enc_newline(e);
    amc_buf_put1(e->out, ']');
    if (e->tape)
      tape_push(e, AMC_JT_END);
    rc = 0;
    goto done;
  }
  if (nint || nother) {
    enc_fail(e, "cannot encode a table mixing string keys with other keys "
                "(object keys must be strings)");
    goto done;
  }
  if (e->tape)
    tape_push(e, AMC_JT_OBJ);
  if (nkeys == 0) {
    amc_buf_putn(e->out, "{}", 2);
    if (e->tape)
      tape_push(e, AMC_JT_END);
    rc = 0;
    goto done;
  }
  if (nkeys == 2) { /* (objects of two keys are common: no call) */
    if (key_cmp(&keys[0], &keys[1]) > 0) {
      key_t_ k = keys[0];
      keys[0] = keys[1];
      keys[1] = k;
    }
  } else if (nkeys > 2) {
    sort_keys(keys, nkeys);
  }
  amc_buf_put1(e->out, '{');
  e->depth++;
  for (size_t i = 0; i < nkeys; i++) {
    if (i && e->pretty)
      amc_buf_put1(e->out, ',');
    enc_newline(e);
    if (e->tape) {
      amc_json_tok_t *k = tape_push(e, AMC_JT_KEY);
      k->u.s = keys[i].s;
      k->len = keys[i].len;
    }
    if (enc_key(e, keys[i].s, keys[i].len, i == 0) < 0) {
      e->path[lvl] = (path_seg_t){keys[i].s, keys[i].len, 0};
      e->depth--;
      goto done;
    }
    if (e->pretty)
      amc_buf_putn(e->out, ": ", 2);
    int r;
    if (keys[i].slot) {
      r = enc_value(L, keys[i].slot, e);
    } else {
      lua_pushlstring(L, keys[i].s, keys[i].len);
      lua_rawget(L, idx);
      r = enc_value(L, lua_gettop(L), e);
      lua_pop(L, 1);
    }
    if (r < 0) {
      e->path[lvl] = (path_seg_t){keys[i].s, keys[i].len, 0};
      e->depth--;
      goto done;
    }
  }
  e->depth--;
  enc_newline(e);
  amc_buf_put1(e->out, '}');
  if (e->tape)
    tape_push(e, AMC_JT_END);
  rc = 0;
done:
  lua_settop(L, base);
  return rc;
}

static int enc_value(lua_State *L, int idx, enc_t *e) {
  amc_json_tok_t *k;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (e->tape) {
      k = tape_push(e, AMC_JT_STR);
      k->u.s = s;
      k->len = n;
    }
    return enc_string(e, s, n);
  }
  case LUA_TNUMBER: {
    /* An integral float converts too: it is written as an integer all the
     * same (enc_float), and is such an integer to the proof. */
    int isint;
    lua_Integer v = lua_tointegerx(L, idx, &isint);
    if (isint) {
      if (e->tape)
        tape_push(e, AMC_JT_INT)->u.i = v;
      enc_integer(e->out, v);
      return 0;
    } else {
      double d = lua_tonumber(L, idx);
      if (e->tape)
        tape_push(e, AMC_JT_FLT)->u.d = d;
      return enc_float(e, d);
    }
  }
  case LUA_TBOOLEAN: {
    int b = lua_toboolean(L, idx);
    if (e->tape)
      tape_push(e, b ? AMC_JT_TRUE : AMC_JT_FALSE);
    if (b)
      amc_buf_putn(e->out, "true", 4);
    else
      amc_buf_putn(e->out, "false", 5);
    return 0;
  }
  case LUA_TTABLE:
    if (e->memo && e->depth == 1) {
      const void *t = lua_topointer(L, idx);
      struct memo_slot *ms = memo_find(e->memo, t);
      if (ms && ms->off != MEMO_SEEN) {
        if (e->tape) {
          k = tape_push(e, AMC_JT_RAW);
          k->u.off = e->out->len;
          k->len = ms->len;
        }
        amc_buf_putn(e->out, e->memo->bytes.data + ms->off, ms->len);
        return 0;
      }
      size_t start = e->out->len;
      if (enc_table(L, idx, e) < 0)
        return -1;
      if (ms) /* the second time: kept */
        memo_add(e->memo, ms, t, e->out->data + start, e->out->len - start);
      else
        memo_add(e->memo, NULL, t, NULL, 0);
      return 0;
    }
    return enc_table(L, idx, e);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == AMC_JSON_NULL) {
      if (e->tape)
        tape_push(e, AMC_JT_NULL);
      amc_buf_putn(e->out, "null", 4);
      return 0;
    }
    return enc_fail(e, "cannot encode a userdata");
  case LUA_TNIL:
    return enc_fail(e, "cannot encode nil");
  default:
    return enc_fail(e, "cannot encode a %s", lua_typename(L, lua_type(L, idx)));
  }
}

/* lua_CFunction run under pcall: [value, enc_t*]. */
static int enc_protected(lua_State *L) {
  enc_t *e = lua_touserdata(L, 2);
  luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
  e->array_mt = lua_topointer(L, -1); /* NULL when there is none */
  lua_pop(L, 1);
  enc_value(L, 1, e);
  return 0;
}

static int encode_tape(lua_State *L, int idx, amc_buf_t *out, char *err,
                       size_t errlen, int pretty, amc_json_memo_t *memo,
                       amc_json_tape_t *tape) {
  idx = lua_absindex(L, idx);
  if (!lua_checkstack(L, 8)) {
    snprintf(err, errlen, "Lua stack exhausted");
    return -1;
  }
  /* Not calloc: the per-depth arrays are large and most values are
   * shallow; enc_table initialises levels as it reaches them. One state
   * (with its key arrays) is kept for the next call: encoding is
   * frequent and never nested (it runs no Lua code). Per thread. */
  static _Thread_local enc_t *spare;
  enc_t *e = spare;
  spare = NULL;
  if (!e) {
    e = malloc(sizeof *e);
    if (!e) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    e->levels = 0;
    memset(e->key_cache, 0, sizeof e->key_cache);
  }
  e->out = out;
  e->pretty = pretty;
  e->memo = pretty ? NULL : memo;
  e->tape = pretty ? NULL : tape;
  if (e->tape) {
    tape->n = 0;
    tape->failed = 0;
    e->tp = tape->tok;
    e->tend = tape->tok ? tape->tok + tape->cap : NULL; /* (NULL + 0: UB) */
  }
  e->depth = 0;
  e->room_top = 0;
  e->failed = 0;
  e->err = err;
  e->errlen = errlen;
  int top = lua_gettop(L);
  lua_pushcfunction(L, enc_protected);
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, e);
  int status = lua_pcall(L, 2, 0, 0);
  int rc = 0;
  if (e->failed) { /* (before settop: the path's keys are in the value) */
    enc_error(e);
    rc = -1;
  } else if (status != LUA_OK) {
    snprintf(err, errlen, "%s",
             status == LUA_ERRMEM ? "out of memory"
                                  : "internal error while encoding");
    rc = -1;
  }
  lua_settop(L, top);
  if (e->tape)
    tape->n = (size_t)(e->tp - tape->tok);
  else if (tape && !pretty)
    tape->n = 0; /* failed */
  if (out->data) /* (put1 and putn left room for it) */
    out->data[out->len] = '\0';
  if (spare) { /* cannot happen (single-threaded, not nested); be safe */
    for (int i = 0; i < e->levels; i++)
      free(e->keys[i]);
    free(e);
  } else {
    spare = e;
  }
  if (rc == 0 && pretty)
    amc_buf_putc(out, '\n');
  return rc;
}

static int encode(lua_State *L, int idx, amc_buf_t *out, char *err,
                  size_t errlen, int pretty, amc_json_memo_t *memo) {
  return encode_tape(L, idx, out, err, errlen, pretty, memo, NULL);
}

int amc_json_encode(lua_State *L, int idx, amc_buf_t *out, char *err,
                    size_t errlen) {
  return encode(L, idx, out, err, errlen, 0, NULL);
}

int amc_json_encode_memo(lua_State *L, int idx, amc_buf_t *out,
                         amc_json_memo_t *m, char *err, size_t errlen) {
  return encode(L, idx, out, err, errlen, 0, m);
}

int amc_json_encode_tape(lua_State *L, int idx, amc_buf_t *out,
                         amc_json_memo_t *m, amc_json_tape_t *tape, char *err,
                         size_t errlen) {
  return encode_tape(L, idx, out, err, errlen, 0, m, tape);
}

int amc_json_encode_pretty(lua_State *L, int idx, amc_buf_t *out, char *err,
                           size_t errlen) {
  return encode(L, idx, out, err, errlen, 1, NULL);
}

/* ------------------------------------------------------------------------ */
/* Pretty-printing canonical text                                            */

static void put_indent(amc_buf_t *o, int depth) {
  char *w = amc_buf_reserve(o, 1 + 2 * (size_t)depth);
  w[0] = '\n';
  memset(w + 1, ' ', 2 * (size_t)depth);
  amc_buf_commit(o, 1 + 2 * (size_t)depth);
}

int amc_json_pretty_canonical(const char *s, size_t len, amc_buf_t *out) {
  int depth = 0;
  const char *p = s, *end = s + len, *run = s;
  while (p < end) {
    char c = *p;
    if (c == '"') {
      /* Copy the string as is (escapes included). */
      for (p++; p < end && *p != '"'; p++) {
        if (*p == '\\')
          p++;
      }
      if (p >= end)
        return -1;
      p++;
      continue;
    }
    if (c == '{' || c == '[') {
      amc_buf_append(out, run, (size_t)(p - run + 1));
      p++;
      if (p < end && (*p == '}' || *p == ']')) {
        amc_buf_putc(out, *p);
        p++;
      } else {
        put_indent(out, ++depth);
      }
      run = p;
    } else if (c == '}' || c == ']') {
      amc_buf_append(out, run, (size_t)(p - run));
      if (--depth < 0)
        return -1;
      put_indent(out, depth);
      amc_buf_putc(out, c);
      run = ++p;
    } else if (c == ',') {
      amc_buf_append(out, run, (size_t)(p - run + 1));
      put_indent(out, depth);
      run = ++p;
    } else if (c == ':') {
      amc_buf_append(out, run, (size_t)(p - run));
      amc_buf_append(out, ": ", 2);
      run = ++p;
    } else {
      p++;
    }
  }
  amc_buf_append(out, run, (size_t)(p - run));
  if (depth != 0)
    return -1;
  amc_buf_putc(out, '\n');
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Strings at a path (the store's field indexes)                             */

typedef struct {
  const char *p, *end;
  const char *s; /* the last string scan_string kept: in the text, or */
  size_t n;
  amc_buf_t buf; /* unescaped here when it had escapes */
} scan_t;

/* The first '"' or '\\' in [p, end), or end; eight bytes at a time (the
 * field indexes skip whole objects, endpoint lists and all). */
static inline __attribute__((always_inline)) const char *
quote_or_backslash(const char *p, const char *end) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  while (end - p >= 8) {
    uint64_t x, q, b, t;
    memcpy(&x, p, 8);
    q = x ^ (ones * '"');
    b = x ^ (ones * '\\');
    t = ((q - ones) & ~q & highs) | ((b - ones) & ~b & highs);
    if (t) { /* the lowest flag is exact */
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      return p + (__builtin_ctzll(t) >> 3);
#else
      break;
#endif
    }
    p += 8;
  }
  while (p < end && *p != '"' && *p != '\\')
    p++;
  return p;
}

/* The bytes scan_skip stops at inside a bracketed value. */
static const unsigned char skip_stop[256] = {
    ['"'] = 1, ['{'] = 1, ['['] = 1, ['}'] = 1, [']'] = 1};

static void scan_ws(scan_t *sc) {
  while (sc->p < sc->end &&
         (*sc->p == ' ' || *sc->p == '\n' || *sc->p == '\r' || *sc->p == '\t'))
    sc->p++;
}

/* The string at sc->p (on its quote), kept in sc->s, sc->n (when `keep`:
 * unescaped, pointing into the text when it has no escapes) or just
 * skipped. */
static int scan_string(scan_t *sc, int keep) {
  const char *p = sc->p + 1, *run = p;
  int escaped = 0;
  for (;;) {
    p = quote_or_backslash(p, sc->end);
    if (p >= sc->end)
      return -1;
    char c = *p;
    if (c == '"')
      break;
    if (sc->end - p < 2)
      return -1;
    if (keep) {
      if (!escaped)
        amc_buf_reset(&sc->buf);
      amc_buf_append(&sc->buf, run, (size_t)(p - run));
    }
    escaped = 1;
    char e = p[1];
    p += 2;
    if (e == 'u') {
      unsigned cp, lo;
      if (sc->end - p < 4 || hex4(p, &cp) < 0)
        return -1;
      p += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF && sc->end - p >= 6 && p[0] == '\\' &&
          p[1] == 'u' && hex4(p + 2, &lo) == 0 && lo >= 0xDC00 &&
          lo <= 0xDFFF) {
        p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      if (keep)
        put_utf8(&sc->buf, cp);
    } else if (keep) {
      const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
      const char *f = strchr(from, e);
      if (!f || !e)
        return -1;
      amc_buf_putc(&sc->buf, to[f - from]);
    }
    run = p;
  }
  if (keep && escaped) {
    amc_buf_append(&sc->buf, run, (size_t)(p - run));
    sc->s = sc->buf.data;
    sc->n = sc->buf.len;
  } else if (keep) {
    sc->s = run;
    sc->n = (size_t)(p - run);
  }
  sc->p = p + 1;
  return 0;
}

/* Skips one value of any type: a string, a scalar, or a bracketed value
 * (found by counting brackets outside strings, without checking what is
 * inside; the caller never needs what it skips). */
static int scan_skip(scan_t *sc) {
  scan_ws(sc);
  if (sc->p >= sc->end)
    return -1;
  char c = *sc->p;
  if (c == '"')
    return scan_string(sc, 0);
  if (c != '{' && c != '[') {
    while (sc->p < sc->end && !strchr(",}] \n\r\t", *sc->p))
      sc->p++;
    return 0;
  }
  int depth = 0;
  for (const char *p = sc->p; p < sc->end; p++) {
    while (p < sc->end && !skip_stop[(unsigned char)*p])
      p++;
    if (p >= sc->end)
      break;
    c = *p;
    if (c == '"') {
      for (p++;; p += 2) { /* past escapes to the closing quote */
        p = quote_or_backslash(p, sc->end);
        if (p >= sc->end || *p == '"')
          break;
      }
      if (p >= sc->end)
        return -1;
    } else if (c == '{' || c == '[') {
      if (++depth > AMC_JSON_MAX_DEPTH)
        return -1;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      sc->p = p + 1;
      return 0;
    }
  }
  return -1;
}

/* The value at sc->p, `depth` more keys to follow. */
static int scan_path(scan_t *sc, const char *const *path, size_t depth,
                     amc_json_string_fn fn, void *ud) {
  scan_ws(sc);
  if (sc->p >= sc->end)
    return -1;
  char c = *sc->p;
  if (depth == 0) {
    if (c == '"') {
      if (scan_string(sc, 1) < 0)
        return -1;
      fn(sc->s, sc->n, ud);
      return 0;
    }
    if (c != '[')
      return scan_skip(sc);
    sc->p++;
    scan_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
      sc->p++;
      return 0;
    }
    for (;;) {
      scan_ws(sc);
      if (sc->p < sc->end && *sc->p == '"') {
        if (scan_string(sc, 1) < 0)
          return -1;
        fn(sc->s, sc->n, ud);
      } else if (scan_skip(sc) < 0) {
        return -1;
      }
      scan_ws(sc);
      if (sc->p >= sc->end)
        return -1;
      if (*sc->p == ',') {
        sc->p++;
        continue;
      }
      return *sc->p++ == ']' ? 0 : -1;
    }
  }
  if (c != '{')
    return scan_skip(sc);
  sc->p++;
  scan_ws(sc);
  if (sc->p < sc->end && *sc->p == '}') {
    sc->p++;
    return 0;
  }
  size_t want = strlen(path[0]);
  for (;;) {
    scan_ws(sc);
    if (sc->p >= sc->end || *sc->p != '"' || scan_string(sc, 1) < 0)
      return -1;
    int hit = sc->n == want && memcmp(sc->s, path[0], want) == 0;
    scan_ws(sc);
    if (sc->p >= sc->end || *sc->p++ != ':')
      return -1;
    if (hit) /* keys are unique: the rest does not matter */
      return scan_path(sc, path + 1, depth - 1, fn, ud);
    if (scan_skip(sc) < 0)
      return -1;
    scan_ws(sc);
    if (sc->p >= sc->end)
      return -1;
    if (*sc->p == ',') {
      sc->p++;
      continue;
    }
    return *sc->p++ == '}' ? 0 : -1;
  }
}

int amc_json_strings_at(const char *s, size_t len, const char *const *path,
                        size_t depth, amc_json_string_fn fn, void *ud) {
  scan_t sc = {s, s + len, "", 0, AMC_BUF_INIT};
  int rc = scan_path(&sc, path, depth, fn, ud);
  amc_buf_free(&sc.buf);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Lua module                                                                */

static int l_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char err[256];
  if (amc_json_decode(L, s, n, err, sizeof err) < 0)
    return luaL_error(L, "json.decode: %s", err);
  return 1;
}

/* The encode buffer lives in a userdata whose __gc frees it, so that a
 * memory error raised by lua_pushlstring cannot leak it. */
static int buf_gc(lua_State *L) {
  amc_buf_free(lua_touserdata(L, 1));
  return 0;
}

static int l_encode_common(lua_State *L, int pretty) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  amc_buf_t *b = lua_newuserdatauv(L, sizeof *b, 0);
  *b = (amc_buf_t)AMC_BUF_INIT;
  if (luaL_newmetatable(L, "amc.json.buf")) {
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  char err[256];
  if (encode(L, 1, b, err, sizeof err, pretty, NULL) < 0)
    return luaL_error(L, "json.encode: %s", err);
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  amc_buf_free(b);
  return 1;
}

static int l_encode(lua_State *L) {
  return l_encode_common(L, 0);
}

static int l_pretty(lua_State *L) {
  return l_encode_common(L, 1);
}

int amc_json_open(lua_State *L) {
  lua_createtable(L, 0, 5);
  lua_pushcfunction(L, l_decode);
  lua_setfield(L, -2, "decode");
  lua_pushcfunction(L, l_encode);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, l_pretty);
  lua_setfield(L, -2, "pretty");
  lua_pushlightuserdata(L, AMC_JSON_NULL);
  lua_setfield(L, -2, "null");
  push_array_mt(L);
  lua_setfield(L, -2, "array_mt");
  return 1;
}
