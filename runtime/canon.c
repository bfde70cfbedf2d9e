/* canon.c - see canon.h.
 *
 * The writer is a second implementation of json.h's canonical form (key
 * order, string escapes, number forms), not a call into json.c: the
 * encoder there walks Lua tables. Both must give the same bytes for the
 * same value; test_canon.c and the fuzzers compare them on every input
 * the direct path takes. */
#include "canon.h"
#include "json.h"
#include "loader.h"
#include "yaml_fast.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAST_APPLIED "kubectl.kubernetes.io/last-applied-configuration"

/* Texts longer than this are declined (node and string sizes are 32-bit). */
#define MAX_TEXT ((size_t)1 << 30)

struct amc_canon_key {
  const char *k;
  uint32_t klen;
  uint32_t node;
};

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q)
    abort();
  return q;
}

amc_canon_t *amc_canon_new(void) {
  amc_canon_t *c = calloc(1, sizeof *c);
  if (!c)
    abort();
  return c;
}

void amc_canon_free(amc_canon_t *c) {
  if (!c)
    return;
  free(c->node);
  free(c->scratch);
  free(c->keys);
  amc_buf_free(&c->out);
  amc_buf_free(&c->names);
  free(c);
}

size_t amc_canon_memory(const amc_canon_t *c) {
  return c->cap * sizeof *c->node + c->scap + c->kcap * sizeof *c->keys +
         c->out.cap + c->names.cap;
}

const char *amc_canon_why(const amc_canon_t *c) {
  return c->why ? c->why : "";
}

static int decline(amc_canon_t *c, const char *why) {
  c->why = why;
  return AMC_CANON_DECLINED;
}

int amc_canon_begin(amc_canon_t *c, size_t len) {
  c->n = 0;
  c->slen = 0;
  c->why = NULL;
  if (len > MAX_TEXT)
    return decline(c, "text too long");
  /* Every string's unescaped bytes are at most its bytes in the text, so
   * the scratch area never moves while the tree is built. */
  if (c->scap < len + 1) {
    free(c->scratch);
    c->scap = len + 1 > 256 ? len + 1 : 256;
    c->scratch = malloc(c->scap);
    if (!c->scratch)
      abort();
  }
  return 0;
}

uint32_t amc_canon_add(amc_canon_t *c, int type) {
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 64;
    c->node = xrealloc(c->node, c->cap * sizeof *c->node);
  }
  amc_canon_node_t *nd = &c->node[c->n];
  memset(nd, 0, sizeof *nd);
  nd->type = (uint8_t)type;
  return c->n++;
}

/* ------------------------------------------------------------------------ */
/* JSON text -> tree (what json.c's decoder takes, to the same values)       */

typedef struct {
  amc_canon_t *c;
  const char *p, *end;
} jp_t;

static void jws(jp_t *j) {
  const char *p = j->p;
  while (p < j->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  j->p = p;
}

/* 1 for the bytes a JSON string holds as they are: 0x20-0x7F but '"' and
 * '\\' (bytes >= 0x80 are checked as UTF-8). */
#define R4(c)  [c] = 1, [c + 1] = 1, [c + 2] = 1, [c + 3] = 1
#define R16(c) R4(c), R4(c + 4), R4(c + 8), R4(c + 12)
static const unsigned char str_plain[256] = {
    [0x20] = 1, [0x21] = 1, [0x23] = 1, R4(0x24), R4(0x28), R4(0x2C),
    R16(0x30),  R16(0x40),  R4(0x50),   R4(0x54), R4(0x58), [0x5D] = 1,
    [0x5E] = 1, [0x5F] = 1, R16(0x60),  R16(0x70)};
#undef R16
#undef R4

/* The escape the canonical form writes for a byte (0: none; 'u': \u00XX). */
#define U4(c) [c] = 'u', [c + 1] = 'u', [c + 2] = 'u', [c + 3] = 'u'
static const unsigned char str_escape[256] = {
    U4(0x00),     U4(0x04),     [0x08] = 'b', [0x09] = 't',
    [0x0A] = 'n', [0x0B] = 'u', [0x0C] = 'f', [0x0D] = 'r',
    [0x0E] = 'u', [0x0F] = 'u', U4(0x10),     U4(0x14),
    U4(0x18),     U4(0x1C),     ['"'] = '"',  ['\\'] = '\\'};
#undef U4

/* Length of the valid UTF-8 sequence at p (1..4), or 0: overlong forms,
 * surrogates and code points above U+10FFFF are invalid (as in json.c). */
static int utf8_seq(const unsigned char *p, const unsigned char *end) {
  unsigned b = p[0];
  int n = b < 0x80   ? 1
          : b < 0xC2 ? 0
          : b < 0xE0 ? 2
          : b < 0xF0 ? 3
          : b < 0xF5 ? 4
                     : 0;
  if (n <= 1)
    return n;
  if (end - p < n)
    return 0;
  for (int i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
  }
  if ((b == 0xE0 && p[1] < 0xA0) || (b == 0xED && p[1] >= 0xA0) ||
      (b == 0xF0 && p[1] < 0x90) || (b == 0xF4 && p[1] >= 0x90))
    return 0;
  return n;
}

static int hexval(const char *p, unsigned *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    char ch = p[i];
    unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                 : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                 : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
                                          : 16;
    if (d == 16)
      return -1;
    *v = *v << 4 | d;
  }
  return 0;
}

static char *put_cp(char *w, unsigned cp) {
  if (cp < 0x80) {
    *w++ = (char)cp;
  } else if (cp < 0x800) {
    *w++ = (char)(0xC0 | cp >> 6);
    *w++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *w++ = (char)(0xE0 | cp >> 12);
    *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *w++ = (char)(0x80 | (cp & 0x3F));
  } else {
    *w++ = (char)(0xF0 | cp >> 18);
    *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
    *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *w++ = (char)(0x80 | (cp & 0x3F));
  }
  return w;
}

/* The string at j->p (its opening quote): its bytes, unescaped (into the
 * scratch area when it has escapes). */
static int jstring(jp_t *j, const char **s, uint32_t *n) {
  amc_canon_t *c = j->c;
  const unsigned char *p = (const unsigned char *)j->p + 1;
  const unsigned char *end = (const unsigned char *)j->end;
  const unsigned char *run = p;
  char *w0 = NULL, *w = NULL; /* the scratch copy, from the first escape */
  for (;;) {
    while (p < end && str_plain[*p])
      p++;
    if (p >= end)
      return decline(c, "unterminated string");
    unsigned ch = *p;
    if (ch == '"')
      break;
    if (ch < 0x20)
      return decline(c, "control character in a string");
    if (ch >= 0x80) {
      int k = utf8_seq(p, end);
      if (!k)
        return decline(c, "invalid UTF-8");
      p += k;
      continue;
    }
    if (!w)
      w = w0 = c->scratch + c->slen;
    memcpy(w, run, (size_t)(p - run));
    w += p - run;
    if (end - p < 2)
      return decline(c, "unterminated string");
    char e = (char)p[1];
    p += 2;
    switch (e) {
    case '"':
    case '\\':
    case '/':
      *w++ = e;
      break;
    case 'b':
      *w++ = '\b';
      break;
    case 'f':
      *w++ = '\f';
      break;
    case 'n':
      *w++ = '\n';
      break;
    case 'r':
      *w++ = '\r';
      break;
    case 't':
      *w++ = '\t';
      break;
    case 'u': {
      unsigned cp, lo;
      if (end - p < 4 || hexval((const char *)p, &cp) < 0)
        return decline(c, "invalid \\u escape");
      p += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
            hexval((const char *)p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
          return decline(c, "unpaired surrogate");
        p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return decline(c, "unpaired surrogate");
      }
      w = put_cp(w, cp);
      break;
    }
    default:
      return decline(c, "invalid escape");
    }
    run = p;
  }
  if (!w) {
    *s = (const char *)run;
    *n = (uint32_t)(p - run);
  } else {
    memcpy(w, run, (size_t)(p - run));
    w += p - run;
    *s = w0;
    *n = (uint32_t)(w - w0);
    c->slen += (size_t)(w - w0);
  }
  j->p = (const char *)p + 1;
  return 0;
}

/* Numbers become what json.c's decoder makes of them: an integer when
 * the text is one that fits in int64 or its value is integral and in
 * range, else a float. */
static int jnumber(jp_t *j, uint32_t *out) {
  amc_canon_t *c = j->c;
  const char *s = j->p, *p = s, *end = j->end;
  int neg = 0, plain = 1;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  if (p >= end || *p < '0' || *p > '9')
    return decline(c, "invalid number");
  if (*p == '0') {
    p++;
    if (p < end && *p >= '0' && *p <= '9')
      return decline(c, "invalid number");
  } else {
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  }
  const char *int_end = p;
  if (p < end && *p == '.') {
    plain = 0;
    p++;
    if (p >= end || *p < '0' || *p > '9')
      return decline(c, "invalid number");
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    plain = 0;
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    if (p >= end || *p < '0' || *p > '9')
      return decline(c, "invalid number");
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  }
  j->p = p;
  if (plain && int_end - s <= 19) {
    uint64_t v = 0;
    for (const char *q = s + neg; q < int_end; q++)
      v = v * 10 + (uint64_t)(*q - '0');
    if (v <= (uint64_t)INT64_MAX + (uint64_t)neg) {
      *out = amc_canon_add(c, AMC_CN_INT);
      c->node[*out].u.i = neg ? (int64_t)(0 - v) : (int64_t)v;
      return 0;
    }
  }
  char tmp[400];
  size_t n = (size_t)(p - s);
  if (n >= sizeof tmp)
    return decline(c, "number too long");
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  double d = strtod(tmp, NULL);
  if (isinf(d))
    return decline(c, "number out of range");
  if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
      d == floor(d)) {
    *out = amc_canon_add(c, AMC_CN_INT);
    c->node[*out].u.i = (int64_t)d;
  } else {
    *out = amc_canon_add(c, AMC_CN_FLT);
    c->node[*out].u.d = d;
  }
  return 0;
}

static int jliteral(jp_t *j, const char *lit, size_t n, int type,
                    uint32_t *out) {
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
    return decline(j->c, "invalid literal");
  j->p += n;
  *out = amc_canon_add(j->c, type);
  return 0;
}

static int jvalue(jp_t *j, int depth, uint32_t *out);

static int jcontainer(jp_t *j, int depth, uint32_t *out) {
  amc_canon_t *c = j->c;
  int map = *j->p == '{';
  char close = map ? '}' : ']';
  if (depth >= AMC_CANON_MAX_DEPTH)
    return decline(c, "nesting too deep");
  uint32_t t = amc_canon_add(c, map ? AMC_CN_MAP : AMC_CN_SEQ);
  *out = t;
  j->p++;
  jws(j);
  if (j->p < j->end && *j->p == close) {
    j->p++;
    return 0;
  }
  for (;;) {
    const char *k = NULL;
    uint32_t kn = 0, v;
    if (map) {
      if (j->p >= j->end || *j->p != '"')
        return decline(c, "object key expected");
      if (jstring(j, &k, &kn) < 0)
        return AMC_CANON_DECLINED;
      jws(j);
      if (j->p >= j->end || *j->p != ':')
        return decline(c, "':' expected");
      j->p++;
      jws(j);
    }
    if (jvalue(j, depth + 1, &v) < 0)
      return AMC_CANON_DECLINED;
    c->node[v].key = k;
    c->node[v].klen = kn;
    amc_canon_link(c, t, v);
    jws(j);
    if (j->p >= j->end)
      return decline(c, "unexpected end");
    if (*j->p == close) {
      j->p++;
      return 0;
    }
    if (*j->p != ',')
      return decline(c, "',' expected");
    j->p++;
    jws(j);
  }
}

static int jvalue(jp_t *j, int depth, uint32_t *out) {
  if (j->p >= j->end)
    return decline(j->c, "unexpected end");
  switch (*j->p) {
  case '{':
  case '[':
    return jcontainer(j, depth, out);
  case '"': {
    const char *s;
    uint32_t n;
    uint32_t v = amc_canon_add(j->c, AMC_CN_STR);
    if (jstring(j, &s, &n) < 0)
      return AMC_CANON_DECLINED;
    j->c->node[v].u.s = s;
    j->c->node[v].n = n;
    *out = v;
    return 0;
  }
  case 't':
    return jliteral(j, "true", 4, AMC_CN_TRUE, out);
  case 'f':
    return jliteral(j, "false", 5, AMC_CN_FALSE, out);
  case 'n':
    return jliteral(j, "null", 4, AMC_CN_NULL, out);
  default:
    if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))
      return jnumber(j, out);
    return decline(j->c, "unexpected character");
  }
}

int amc_canon_parse_json(amc_canon_t *c, const char *text, size_t len) {
  if (amc_canon_begin(c, len) < 0)
    return AMC_CANON_DECLINED;
  jp_t j = {c, text, text + len};
  uint32_t root;
  jws(&j);
  if (jvalue(&j, 0, &root) < 0)
    return AMC_CANON_DECLINED;
  jws(&j);
  if (j.p != j.end)
    return decline(c, "text after the value");
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Tree -> canonical JSON (json.h's amc_json_encode, byte for byte)          */

/* Quoted and escaped as json.c does: '"', '\\' and the control characters
 * (\n \r \t \b \f by name, others as \u00xx); everything else as it is
 * (the producers took only valid UTF-8). */
static void put_string(amc_buf_t *o, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  if (o->len + n + 3 <= o->cap) {
    /* The usual string, nothing to escape: checked eight bytes at a time
     * (a byte below 0x20, '"' or '\\' flags its word) and copied once. */
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t x;
      memcpy(&x, p + i, 8);
      uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
      if (((x - ones * 0x20) | (q - ones) | (b - ones)) & ~x & highs)
        break;
    }
    while (i < n && !str_escape[p[i]])
      i++;
    if (i == n) {
      char *w = o->data + o->len;
      w[0] = '"';
      memcpy(w + 1, s, n);
      w[n + 1] = '"';
      o->len += n + 2;
      return;
    }
  }
  amc_buf_put1(o, '"');
  while (p < end) {
    const unsigned char *run = p;
    while (p < end && !str_escape[*p])
      p++;
    amc_buf_putn(o, (const char *)run, (size_t)(p - run));
    if (p == end)
      break;
    unsigned char e = str_escape[*p];
    if (e == 'u') {
      char u[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
      amc_buf_putn(o, u, 6);
    } else {
      char b[2] = {'\\', (char)e};
      amc_buf_putn(o, b, 2);
    }
    p++;
  }
  amc_buf_put1(o, '"');
}

static void put_int(amc_buf_t *o, int64_t v) {
  char tmp[24], *q = tmp + sizeof tmp;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do {
    *--q = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    *--q = '-';
  amc_buf_putn(o, q, (size_t)(tmp + sizeof tmp - q));
}

/* An integral float in int64 range as an integer; any other as the
 * shortest of %.15g, %.16g and %.17g that reads back the same. */
static int put_float(amc_canon_t *c, double d) {
  if (isnan(d) || isinf(d))
    return decline(c, "NaN or infinity (the encoder refuses them)");
  if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
      d == floor(d)) {
    put_int(&c->out, (int64_t)d);
    return 0;
  }
  char tmp[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (prec == 17 || strtod(tmp, NULL) == d)
      break;
  }
  amc_buf_putn(&c->out, tmp, strlen(tmp));
  return 0;
}

static int key_cmp(const void *a, const void *b) {
  const amc_canon_key_t *x = a, *y = b;
  return amc_json_key_order(x->k, x->klen, y->k, y->klen);
}

/* Sorts the keys of the MAP `t` into c->keys[base...]; refuses duplicates
 * (the loader's error). */
static int sort_keys(amc_canon_t *c, uint32_t t, size_t base) {
  const amc_canon_node_t *m = &c->node[t];
  size_t n = m->n;
  if (base + n > c->kcap) {
    c->kcap = 2 * (base + n) > 64 ? 2 * (base + n) : 64;
    c->keys = xrealloc(c->keys, c->kcap * sizeof *c->keys);
  }
  amc_canon_key_t *k = c->keys + base;
  size_t i = 0;
  for (uint32_t e = m->u.kids.first; e; e = c->node[e].next, i++)
    k[i] = (amc_canon_key_t){c->node[e].key, c->node[e].klen, e};
  if (n > 12) {
    qsort(k, n, sizeof *k, key_cmp);
  } else {
    for (i = 1; i < n; i++) {
      amc_canon_key_t x = k[i];
      size_t j = i;
      while (j > 0 && key_cmp(&k[j - 1], &x) > 0) {
        k[j] = k[j - 1];
        j--;
      }
      k[j] = x;
    }
  }
  for (i = 1; i < n; i++) {
    if (key_cmp(&k[i - 1], &k[i]) == 0)
      return decline(c, "duplicate key");
  }
  return 0;
}

/* Where a value is in the object, for the store's strip rules. */
enum { AT_ANY, AT_ROOT, AT_META, AT_ANNOTATIONS };

static int key_is(const amc_canon_key_t *k, const char *lit, size_t n) {
  return k->klen == n && memcmp(k->k, lit, n) == 0;
}

/* Writes node `i` (nothing when `dry`: a stripped value is only checked
 * for what the loader would refuse in it, duplicate keys). */
static int put_value(amc_canon_t *c, uint32_t i, int at, int pod, int dry) {
  const amc_canon_node_t *nd = &c->node[i];
  amc_buf_t *o = &c->out;
  switch (nd->type) {
  case AMC_CN_MAP: {
    size_t base = c->nkeys, n = nd->n;
    if (sort_keys(c, i, base) < 0)
      return AMC_CANON_DECLINED;
    c->nkeys = base + n;
    int rc = 0, first = 1;
    if (!dry)
      amc_buf_put1(o, '{');
    for (size_t e = 0; e < n && rc == 0; e++) {
      const amc_canon_key_t *k = &c->keys[base + e];
      uint32_t v = k->node;
      int sub = AT_ANY, skip = dry;
      if (at == AT_ROOT) {
        if (!pod && key_is(k, "status", 6))
          skip = 1;
        else if (key_is(k, "metadata", 8))
          sub = AT_META;
      } else if (at == AT_META) {
        if (key_is(k, "managedFields", 13))
          skip = 1;
        else if (key_is(k, "annotations", 11))
          sub = AT_ANNOTATIONS;
      } else if (at == AT_ANNOTATIONS &&
                 key_is(k, LAST_APPLIED, sizeof LAST_APPLIED - 1)) {
        skip = 1;
      }
      if (!skip) {
        if (!first)
          amc_buf_put1(o, ',');
        first = 0;
        put_string(o, k->k, k->klen);
        amc_buf_put1(o, ':');
      }
      /* (k may move: the call sorts deeper keys) */
      rc = put_value(c, v, sub, pod, skip);
    }
    c->nkeys = base;
    if (!dry)
      amc_buf_put1(o, '}');
    return rc;
  }
  case AMC_CN_SEQ: {
    if (!dry)
      amc_buf_put1(o, '[');
    for (uint32_t e = nd->u.kids.first; e; e = c->node[e].next) {
      if (!dry && e != c->node[i].u.kids.first)
        amc_buf_put1(o, ',');
      if (put_value(c, e, AT_ANY, pod, dry) < 0)
        return AMC_CANON_DECLINED;
    }
    if (!dry)
      amc_buf_put1(o, ']');
    return 0;
  }
  default:
    break;
  }
  if (dry)
    return 0;
  switch (nd->type) {
  case AMC_CN_NULL:
    amc_buf_putn(o, "null", 4);
    return 0;
  case AMC_CN_FALSE:
    amc_buf_putn(o, "false", 5);
    return 0;
  case AMC_CN_TRUE:
    amc_buf_putn(o, "true", 4);
    return 0;
  case AMC_CN_INT:
    put_int(o, nd->u.i);
    return 0;
  case AMC_CN_FLT:
    return put_float(c, nd->u.d);
  default: /* AMC_CN_STR */
    put_string(o, nd->u.s, nd->n);
    return 0;
  }
}

int amc_canon_unique_keys(amc_canon_t *c) {
  c->nkeys = 0;
  return c->n ? put_value(c, 0, AT_ANY, 0, 1) : 0;
}

/* The entry of the MAP `t` with key `k` (the first: duplicates are
 * declined when written), or 0. */
static uint32_t member(const amc_canon_t *c, uint32_t t, const char *k) {
  size_t n = strlen(k);
  for (uint32_t e = c->node[t].u.kids.first; e; e = c->node[e].next) {
    if (c->node[e].klen == n && memcmp(c->node[e].key, k, n) == 0)
      return e;
  }
  return 0;
}

/* A STR entry of `t` with no NUL byte (the loader's callers read these
 * as C strings), non-empty unless `empty_ok`: its node, else 0. */
static uint32_t string_member(const amc_canon_t *c, uint32_t t, const char *k,
                              int empty_ok) {
  uint32_t e = member(c, t, k);
  if (!e || c->node[e].type != AMC_CN_STR || (!empty_ok && c->node[e].n == 0) ||
      memchr(c->node[e].u.s, '\0', c->node[e].n))
    return 0;
  return e;
}

int amc_canon_object(amc_canon_t *c, const char *default_ns,
                     amc_canon_obj_t *obj) {
  /* The loader's checks (loader.c's check_object): anything it would
   * refuse, and a List it would take apart, is its business. */
  if (c->n == 0 || c->node[0].type != AMC_CN_MAP)
    return decline(c, "not a mapping");
  uint32_t kind = string_member(c, 0, "kind", 0);
  uint32_t md = member(c, 0, "metadata");
  if (!string_member(c, 0, "apiVersion", 0) || !kind || !md ||
      c->node[md].type != AMC_CN_MAP)
    return decline(c, "no apiVersion, kind or metadata");
  uint32_t name = string_member(c, md, "name", 0);
  uint32_t ns = member(c, md, "namespace");
  if (!name || (ns && !string_member(c, md, "namespace", 1)))
    return decline(c, "no metadata.name, or a namespace that is no string");
  const amc_canon_node_t *kn = &c->node[kind];
  if (kn->n == 4 && memcmp(kn->u.s, "List", 4) == 0)
    return decline(c, "a List");
  int pod = kn->n == 3 && memcmp(kn->u.s, "Pod", 3) == 0;
  amc_buf_reset(&c->names);
  amc_buf_append(&c->names, kn->u.s, kn->n);
  amc_buf_putc(&c->names, '\0');
  kn = NULL; /* (nodes move when one is added) */
  if ((!ns || c->node[ns].n == 0) && default_ns &&
      !amc_loader_cluster_scoped(c->names.data)) {
    if (!ns) {
      ns = amc_canon_add(c, AMC_CN_STR);
      c->node[ns].key = "namespace";
      c->node[ns].klen = 9;
      amc_canon_link(c, md, ns);
    }
    size_t dl = strlen(default_ns);
    if (dl > MAX_TEXT)
      return decline(c, "default namespace too long");
    c->node[ns].u.s = default_ns;
    c->node[ns].n = (uint32_t)dl;
  }
  size_t name_at = c->names.len;
  amc_buf_append(&c->names, c->node[name].u.s, c->node[name].n);
  amc_buf_putc(&c->names, '\0');
  size_t ns_at = c->names.len;
  if (ns)
    amc_buf_append(&c->names, c->node[ns].u.s, c->node[ns].n);
  amc_buf_putc(&c->names, '\0');
  amc_buf_reset(&c->out);
  c->nkeys = 0;
  if (put_value(c, 0, AT_ROOT, pod, 0) < 0)
    return AMC_CANON_DECLINED;
  if (!c->out.data)
    amc_buf_putc(&c->out, '\0'); /* (cannot happen: "{...}") */
  c->out.data[c->out.len] = '\0';
  obj->kind = c->names.data;
  obj->name = c->names.data + name_at;
  obj->ns = c->names.data + ns_at;
  obj->json = c->out.data;
  obj->len = c->out.len;
  obj->line = 0;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Spans                                                                     */

int amc_canon_yaml(amc_canon_t *c, const char *text, size_t len,
                   const char *default_ns, amc_canon_obj_t *obj) {
  size_t line, col;
  if (amc_canon_begin(c, len) < 0)
    return AMC_CANON_DECLINED;
  if (!amc_yaml_fast_tree(c, text, len, &line, &col))
    return decline(c, "outside the YAML subset");
  if (amc_canon_object(c, default_ns, obj) < 0)
    return AMC_CANON_DECLINED;
  obj->line = line;
  return 0;
}

int amc_canon_json(amc_canon_t *c, const char *text, size_t len,
                   const char *default_ns, amc_canon_obj_t *obj) {
  if (amc_canon_parse_json(c, text, len) < 0)
    return AMC_CANON_DECLINED;
  return amc_canon_object(c, default_ns, obj);
}

/* ------------------------------------------------------------------------ */
/* From a Lua table (the loader's objects)                                   */

static const char *str_field(lua_State *L, int t, const char *f) {
  lua_getfield(L, t, f);
  const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the table keeps the string alive */
  return v;
}

static void clear_field(lua_State *L, int t, const char *f) {
  if (lua_type(L, t) != LUA_TTABLE)
    return;
  lua_pushnil(L);
  lua_setfield(L, t, f);
}

int amc_canon_lua(amc_canon_t *c, lua_State *L, int idx, amc_canon_obj_t *obj,
                  char *err, size_t errlen) {
  int top = lua_gettop(L);
  int o = lua_absindex(L, idx);
  /* Strip what the store strips (store.h); the table is ours to change.
   * A Pod's status (podIP, readiness) is kept: rules read it. */
  const char *kind0 = str_field(L, o, "kind");
  if (!kind0 || strcmp(kind0, "Pod") != 0)
    clear_field(L, o, "status");
  lua_getfield(L, o, "metadata");
  int md = lua_gettop(L);
  clear_field(L, md, "managedFields");
  if (lua_type(L, md) == LUA_TTABLE) {
    lua_getfield(L, md, "annotations");
    clear_field(L, lua_gettop(L), LAST_APPLIED);
    lua_pop(L, 1);
  }
  const char *kind = str_field(L, o, "kind");
  const char *name =
      lua_type(L, md) == LUA_TTABLE ? str_field(L, md, "name") : NULL;
  const char *ns =
      lua_type(L, md) == LUA_TTABLE ? str_field(L, md, "namespace") : NULL;
  if (!kind || !name) {
    snprintf(err, errlen, "object without kind or metadata.name");
    lua_settop(L, top);
    return -1;
  }
  amc_buf_reset(&c->out);
  if (amc_json_encode(L, o, &c->out, err, errlen) != 0) {
    lua_settop(L, top);
    return -1;
  }
  lua_settop(L, top);
  obj->kind = kind;
  obj->ns = ns ? ns : "";
  obj->name = name;
  obj->json = c->out.data;
  obj->len = c->out.len;
  obj->line = 0;
  return 0;
}
