/* json_project.c - see json_project.h.
 *
 * The paths become a small trie (node 0 is the top object; a node's
 * children are the keys looked for in the object at that node). The text
 * is walked once: an object on a path is entered member by member, a key
 * found in the trie is either copied with its whole value (a path ends
 * there) or entered (its value is an object), and everything else is
 * skipped by skip_value, which checks syntax and copies nothing. */
#include "json_project.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define MAX_NODES                                                              \
  (1 + AMC_JSON_PROJECT_MAX_PATHS * AMC_JSON_PROJECT_MAX_SEGMENTS)

typedef struct {
  const char *key; /* into the projection's copy of the paths */
  uint32_t klen;
  uint16_t child; /* first child (0: none; node 0 is never a child) */
  uint16_t next;  /* next sibling (0: none) */
  uint8_t whole;  /* a path ends here: the value is kept whole */
} pnode_t;

struct amc_json_projection {
  pnode_t node[MAX_NODES];
  uint16_t n;
  char *text; /* the paths, copied */
};

static void set_err(char *err, size_t errlen, const char *fmt, size_t i,
                    const char *path) {
  if (err && errlen)
    snprintf(err, errlen, fmt, i + 1, path);
}

/* The child of `parent` for key [k, k + n), made when `add`; 0 when none. */
static uint16_t child_of(amc_json_projection_t *p, uint16_t parent,
                         const char *k, size_t n, int add) {
  uint16_t *link = &p->node[parent].child;
  for (uint16_t c = *link; c; c = p->node[c].next) {
    if (p->node[c].klen == n && memcmp(p->node[c].key, k, n) == 0)
      return c;
    link = &p->node[c].next;
  }
  if (!add)
    return 0;
  uint16_t c = p->n++;
  p->node[c] = (pnode_t){k, (uint32_t)n, 0, 0, 0};
  *link = c; /* at the end: the trie keeps the paths' order */
  return c;
}

amc_json_projection_t *amc_json_projection_new(const char *const *paths,
                                               size_t n, char *err,
                                               size_t errlen) {
  if (n < 1 || n > AMC_JSON_PROJECT_MAX_PATHS) {
    if (err && errlen)
      snprintf(err, errlen, "%zu paths (1 to %d allowed)", n,
               AMC_JSON_PROJECT_MAX_PATHS);
    return NULL;
  }
  /* Check every path before allocating anything. */
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    const char *s = paths[i];
    if (!s) {
      set_err(err, errlen, "path %zu%s: missing", i, "");
      return NULL;
    }
    size_t segs = 1, len = strlen(s);
    for (size_t k = 0; k < len; k++)
      segs += s[k] == '.';
    if (!len || s[0] == '.' || s[len - 1] == '.' || strstr(s, "..")) {
      set_err(err, errlen, "path %zu \"%s\": empty key", i, s);
      return NULL;
    }
    /* Such a key is escaped in JSON text, and keys are matched as
     * written: it could never match (or, with a backslash, match another
     * key's escapes). */
    for (size_t k = 0; k < len; k++)
      if (s[k] == '"' || s[k] == '\\' || (unsigned char)s[k] < 0x20) {
        set_err(err, errlen,
                "path %zu \"%s\": a key with '\"', '\\' or a control "
                "character",
                i, s);
        return NULL;
      }
    if (segs > AMC_JSON_PROJECT_MAX_SEGMENTS) {
      if (err && errlen)
        snprintf(err, errlen, "path %zu \"%s\": more than %d keys", i + 1, s,
                 AMC_JSON_PROJECT_MAX_SEGMENTS);
      return NULL;
    }
    total += len + 1;
  }
  amc_json_projection_t *p = calloc(1, sizeof *p);
  char *text = malloc(total);
  if (!p || !text) {
    free(p);
    free(text);
    if (err && errlen)
      snprintf(err, errlen, "out of memory");
    return NULL;
  }
  p->text = text;
  p->n = 1;
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(paths[i]);
    char *s = memcpy(text, paths[i], len + 1);
    text += len + 1;
    uint16_t at = 0;
    for (const char *k = s;;) {
      const char *dot = memchr(k, '.', (size_t)(s + len - k));
      const char *e = dot ? dot : s + len;
      at = child_of(p, at, k, (size_t)(e - k), 1);
      if (p->node[at].whole)
        break; /* a shorter path keeps all of it already */
      if (!dot) {
        p->node[at].whole = 1;
        break;
      }
      k = dot + 1;
    }
  }
  return p;
}

void amc_json_projection_free(amc_json_projection_t *p) {
  if (!p)
    return;
  free(p->text);
  free(p);
}

/* ---- the scanner --------------------------------------------------------
 * Functions take the position and the end of the text and return the
 * position after what they read, or NULL when the text is malformed there.
 * No function reads at or past `end`. */

static inline const char *ws(const char *p, const char *end) {
  /* one test for canonical text, where no token starts at or below ' ' */
  while (p < end && (unsigned char)*p <= ' ' &&
         (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  return p;
}

/* Bytes a string's contents cannot run over: its end, an escape, and the
 * control characters JSON wants escaped. */
static const unsigned char str_stop[256] = {
    [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1};

static const unsigned char hex_digit[256] = {
    ['0' ... '9'] = 1, ['a' ... 'f'] = 1, ['A' ... 'F'] = 1};

/* The rest of a string, p just past its opening quote. */
static const char *skip_string(const char *p, const char *end) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  for (;;) {
    /* Eight bytes at a time: each test flags a byte's high bit, exactly
     * for the lowest byte that matches (a borrow only flags bytes above
     * a true match), so the lowest flag of the three is a true stop. */
    while (end - p >= 8) {
      uint64_t x, q, b, c;
      memcpy(&x, p, 8);
      q = x ^ (ones * '"');
      b = x ^ (ones * '\\');
      q = (q - ones) & ~q;
      b = (b - ones) & ~b;
      c = (x - ones * 0x20) & ~x; /* bytes below 0x20 */
      uint64_t t = (q | b | c) & highs;
      if (t) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        p += __builtin_ctzll(t) >> 3;
#endif
        break;
      }
      p += 8;
    }
    while (p < end && !str_stop[(unsigned char)*p])
      p++;
    if (p >= end)
      return NULL;
    if (*p == '"')
      return p + 1;
    if (*p != '\\')
      return NULL; /* a raw control character */
    if (end - p < 2)
      return NULL;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
      p += 2;
      break;
    case 'u':
      if (end - p < 6 || !hex_digit[(unsigned char)p[2]] ||
          !hex_digit[(unsigned char)p[3]] || !hex_digit[(unsigned char)p[4]] ||
          !hex_digit[(unsigned char)p[5]])
        return NULL;
      p += 6;
      break;
    default:
      return NULL;
    }
  }
}

static inline const char *digits(const char *p, const char *end) {
  while (p < end && *p >= '0' && *p <= '9')
    p++;
  return p;
}

/* A number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (what comes
 * after it is the caller's to check: "01" fails there). */
static const char *skip_number(const char *p, const char *end) {
  if (*p == '-')
    p++;
  if (p >= end)
    return NULL;
  if (*p == '0')
    p++;
  else if (*p >= '1' && *p <= '9')
    p = digits(p + 1, end);
  else
    return NULL;
  if (p < end && *p == '.') {
    const char *d = ++p;
    if ((p = digits(p, end)) == d)
      return NULL;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    const char *d = p;
    if ((p = digits(p, end)) == d)
      return NULL;
  }
  return p;
}

static inline const char *literal(const char *p, const char *end,
                                  const char *word, size_t n) {
  return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

/* One value of any kind at p (whitespace before it allowed), inside
 * `depth` containers. Iterative: the open containers are a bit stack (1:
 * object), at most AMC_JSON_MAX_DEPTH deep counting the outer ones. */
static const char *skip_value(const char *p, const char *end, int depth) {
  uint64_t obj[(AMC_JSON_MAX_DEPTH + 63) / 64] = {0};
  int lvl = 0; /* containers open in this value */
value:
  p = ws(p, end);
  if (p >= end)
    return NULL;
  switch (*p) {
  case '"':
    p = skip_string(p + 1, end);
    break;
  case '{':
    if (depth + lvl >= AMC_JSON_MAX_DEPTH)
      return NULL;
    obj[lvl >> 6] |= 1ULL << (lvl & 63);
    lvl++;
    p = ws(p + 1, end);
    if (p < end && *p == '}') {
      p++;
      lvl--;
      break;
    }
    goto key;
  case '[':
    if (depth + lvl >= AMC_JSON_MAX_DEPTH)
      return NULL;
    obj[lvl >> 6] &= ~(1ULL << (lvl & 63));
    lvl++;
    p = ws(p + 1, end);
    if (p < end && *p == ']') {
      p++;
      lvl--;
      break;
    }
    goto value;
  case 't':
    p = literal(p, end, "true", 4);
    break;
  case 'f':
    p = literal(p, end, "false", 5);
    break;
  case 'n':
    p = literal(p, end, "null", 4);
    break;
  default:
    p = skip_number(p, end);
    break;
  }
  if (!p)
    return NULL;
after: /* a value ended: what follows it in its container */
  if (lvl == 0)
    return p;
  p = ws(p, end);
  if (p >= end)
    return NULL;
  int in_obj = (int)(obj[(lvl - 1) >> 6] >> ((lvl - 1) & 63)) & 1;
  if (*p == ',') {
    p++;
    if (in_obj)
      goto key;
    goto value;
  }
  if (*p != (in_obj ? '}' : ']'))
    return NULL;
  p++;
  lvl--;
  goto after;
key: /* a member's key and colon; its value next */
  p = ws(p, end);
  if (p >= end || *p != '"' || !(p = skip_string(p + 1, end)))
    return NULL;
  p = ws(p, end);
  if (p >= end || *p != ':')
    return NULL;
  p++;
  goto value;
}

/* ---- the walk ------------------------------------------------------------
 */

typedef struct {
  const amc_json_projection_t *proj;
  const char *end;
  amc_buf_t *out;
} walk_t;

/* The members of the object whose '{' is just before p (the object is
 * `depth` deep, the top one 1), looked up among the children of trie
 * node `nd`: kept ones are appended to out (comma-separated, no braces).
 * Returns the position after the '}' and sets *kept to how many were
 * kept, or NULL. */
static const char *members(walk_t *w, const char *p, uint16_t nd, int depth,
                           int *kept) {
  const pnode_t *node = w->proj->node;
  const char *end = w->end;
  amc_buf_t *out = w->out;
  *kept = 0;
  p = ws(p, end);
  if (p < end && *p == '}')
    return p + 1;
  for (;;) {
    if (p >= end || *p != '"')
      return NULL;
    const char *k = p;
    if (!(p = skip_string(p + 1, end)))
      return NULL;
    /* the key's raw text, between its quotes */
    const char *kt = k + 1;
    size_t kn = (size_t)(p - 1 - kt);
    p = ws(p, end);
    if (p >= end || *p != ':')
      return NULL;
    p = ws(p + 1, end);
    uint16_t c = node[nd].child;
    while (c && (node[c].klen != kn || memcmp(node[c].key, kt, kn) != 0))
      c = node[c].next;
    if (c && node[c].whole) {
      const char *v = p;
      if (!(p = skip_value(p, end, depth)))
        return NULL;
      if ((*kept)++)
        amc_buf_put1(out, ',');
      amc_buf_putn(out, k, (size_t)(kt + kn + 1 - k));
      amc_buf_put1(out, ':');
      amc_buf_putn(out, v, (size_t)(p - v));
    } else if (c && p < end && *p == '{') {
      if (depth >= AMC_JSON_MAX_DEPTH)
        return NULL;
      size_t mark = out->len;
      if (*kept)
        amc_buf_put1(out, ',');
      amc_buf_putn(out, k, (size_t)(kt + kn + 1 - k));
      amc_buf_putn(out, ":{", 2);
      int under;
      if (!(p = members(w, p + 1, c, depth + 1, &under)))
        return NULL;
      if (under) {
        amc_buf_put1(out, '}');
        ++*kept;
      } else {
        out->len = mark; /* nothing under it: no object on the way */
      }
    } else if (!(p = skip_value(p, end, depth))) {
      return NULL;
    }
    p = ws(p, end);
    if (p >= end)
      return NULL;
    if (*p == '}')
      return p + 1;
    if (*p != ',')
      return NULL;
    p = ws(p + 1, end);
  }
}

int amc_json_project(const amc_json_projection_t *p, const char *s, size_t len,
                     amc_buf_t *out) {
  size_t at = out->len;
  const char *end = s + len;
  const char *q = ws(s, end);
  walk_t w = {p, end, out};
  int kept;
  if (q < end && *q == '{') {
    amc_buf_put1(out, '{');
    q = members(&w, q + 1, 0, 1, &kept);
    if (q && ws(q, end) == end) {
      amc_buf_append(out, "}", 1); /* (and the NUL) */
      return 0;
    }
  }
  out->len = at;
  if (out->data)
    out->data[at] = '\0';
  return -1;
}
