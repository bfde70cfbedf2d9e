/* yaml_fast.c - see yaml_fast.h. */
#include "yaml_fast.h"
#include "canon.h"
#include "json.h"
#include "loader.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Plain scalars: the core schema (loader.h)                                 */

static int all_digits(const char *s, size_t n, int base) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    int ok = base == 16  ? ((ch >= '0' && ch <= '9') ||
                           (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'))
             : base == 8 ? (ch >= '0' && ch <= '7')
                         : (ch >= '0' && ch <= '9');
    if (!ok)
      return 0;
  }
  return 1;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_float(const char *s, size_t n) {
  size_t i = 0, d = 0;
  if (i < n && (s[i] == '-' || s[i] == '+'))
    i++;
  while (i < n && s[i] >= '0' && s[i] <= '9')
    i++, d++;
  if (i < n && s[i] == '.') {
    i++;
    size_t f = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++, f++;
    if (d == 0 && f == 0)
      return 0;
  } else if (d == 0) {
    return 0;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '-' || s[i] == '+'))
      i++;
    size_t e = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++, e++;
    if (e == 0)
      return 0;
  }
  return i == n;
}

static int eq(const char *s, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* A float as json.h keeps it: integral values in int64 range as integers. */
static void set_double(amc_canon_node_t *nd, double v) {
  if (v >= -9223372036854775808.0 && v < 9223372036854775808.0 &&
      v == floor(v)) {
    nd->type = AMC_CN_INT;
    nd->u.i = (int64_t)v;
  } else {
    nd->type = AMC_CN_FLT;
    nd->u.d = v;
  }
}

static void set_string(amc_canon_node_t *nd, const char *s, size_t n) {
  nd->type = AMC_CN_STR;
  nd->u.s = s;
  nd->n = (uint32_t)n;
}

void amc_yaml_plain(const char *s, size_t n, amc_canon_node_t *nd) {
  if (n == 0 || eq(s, n, "~") || eq(s, n, "null") || eq(s, n, "Null") ||
      eq(s, n, "NULL")) {
    nd->type = AMC_CN_NULL;
    return;
  }
  if (eq(s, n, "true") || eq(s, n, "True") || eq(s, n, "TRUE")) {
    nd->type = AMC_CN_TRUE;
    return;
  }
  if (eq(s, n, "false") || eq(s, n, "False") || eq(s, n, "FALSE")) {
    nd->type = AMC_CN_FALSE;
    return;
  }
  char c0 = s[0];
  if (!((c0 >= '0' && c0 <= '9') || c0 == '-' || c0 == '+' || c0 == '.')) {
    set_string(nd, s, n);
    return;
  }
  char tmp[128];
  if (n >= sizeof tmp) {
    set_string(nd, s, n);
    return;
  }
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  size_t sign = (c0 == '-' || c0 == '+') ? 1 : 0;
  if (all_digits(s + sign, n - sign, 10)) {
    errno = 0;
    long long v = strtoll(tmp, NULL, 10);
    if (errno == ERANGE) {
      set_double(nd, strtod(tmp, NULL));
    } else {
      nd->type = AMC_CN_INT;
      nd->u.i = v;
    }
    return;
  }
  if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    int base = s[1] == 'x' ? 16 : 8;
    if (all_digits(s + 2, n - 2, base)) {
      errno = 0;
      unsigned long long v = strtoull(tmp + 2, NULL, base);
      if (errno != ERANGE && v <= (unsigned long long)INT64_MAX) {
        nd->type = AMC_CN_INT;
        nd->u.i = (int64_t)v;
        return;
      }
    }
    set_string(nd, s, n);
    return;
  }
  if (is_float(s, n)) {
    set_double(nd, strtod(tmp, NULL));
    return;
  }
  const char *t = s + sign;
  size_t tn = n - sign;
  if (eq(t, tn, ".inf") || eq(t, tn, ".Inf") || eq(t, tn, ".INF")) {
    nd->type = AMC_CN_FLT;
    nd->u.d = c0 == '-' ? -HUGE_VAL : HUGE_VAL;
    return;
  }
  if (!sign && (eq(s, n, ".nan") || eq(s, n, ".NaN") || eq(s, n, ".NAN"))) {
    nd->type = AMC_CN_FLT;
    nd->u.d = NAN;
    return;
  }
  set_string(nd, s, n);
}

/* Pushes a scalar node's value. */
static void push_scalar(lua_State *L, const amc_canon_node_t *nd) {
  switch (nd->type) {
  case AMC_CN_NULL:
    lua_pushlightuserdata(L, AMC_JSON_NULL);
    break;
  case AMC_CN_FALSE:
  case AMC_CN_TRUE:
    lua_pushboolean(L, nd->type == AMC_CN_TRUE);
    break;
  case AMC_CN_INT:
    lua_pushinteger(L, (lua_Integer)nd->u.i);
    break;
  case AMC_CN_FLT:
    lua_pushnumber(L, nd->u.d);
    break;
  default:
    lua_pushlstring(L, nd->u.s, nd->n);
    break;
  }
}

void amc_yaml_push_plain(lua_State *L, const char *s, size_t n) {
  amc_canon_node_t nd;
  memset(&nd, 0, sizeof nd);
  amc_yaml_plain(s, n, &nd);
  push_scalar(L, &nd);
}

/* ------------------------------------------------------------------------ */
/* The block subset                                                          */

/* Nesting the fast path takes on (libyaml's path refuses deeper than
 * AMC_JSON_MAX_DEPTH; deep texts are not manifests anyway). */
#define FAST_MAX_DEPTH AMC_CANON_MAX_DEPTH
/* libyaml refuses a key longer than 1024 characters (to its ':'): longer
 * keys are left to it, plain or quoted, in blocks and in flows. */
#define FAST_MAX_KEY 1000

typedef struct {
  amc_canon_t *c;
  const char *p, *end;
  const char *ls; /* start of the line p is on */
  size_t line;    /* of p, 0-based */
  long ind;       /* after next_line: p's column, or -1 at the end */
  int depth;
  long nodes;
} fy_t;

/* Parsers return the node they made (>= 0) or DECLINE. */
#define DECLINE (-1)

static int is_blank_or_end(const fy_t *y, const char *q) {
  return q >= y->end || *q == ' ' || *q == '\n';
}

/* Byte classes, one table look-up per byte in the scanning loops. */
enum {
  YC_IND = 1,  /* cannot start a plain scalar (or starts what the fast path
                  leaves to libyaml; '-' is handled by the callers) */
  YC_FLOW = 2, /* ends or breaks a plain scalar in a flow: , ] } : # [ { LF */
  YC_LINE = 4  /* matters in a plain key or scalar of a block: : # LF */
};
static const unsigned char ycls[256] = {['?'] = YC_IND,
                                        [':'] = YC_IND | YC_FLOW | YC_LINE,
                                        [','] = YC_IND | YC_FLOW,
                                        ['['] = YC_IND | YC_FLOW,
                                        [']'] = YC_IND | YC_FLOW,
                                        ['{'] = YC_IND | YC_FLOW,
                                        ['}'] = YC_IND | YC_FLOW,
                                        ['#'] = YC_IND | YC_FLOW | YC_LINE,
                                        ['&'] = YC_IND,
                                        ['*'] = YC_IND,
                                        ['!'] = YC_IND,
                                        ['|'] = YC_IND,
                                        ['>'] = YC_IND,
                                        ['\''] = YC_IND,
                                        ['"'] = YC_IND,
                                        ['%'] = YC_IND,
                                        ['@'] = YC_IND,
                                        ['`'] = YC_IND,
                                        ['\n'] = YC_FLOW | YC_LINE};

static int indicator(char ch) {
  return ycls[(unsigned char)ch] & YC_IND;
}

/* Moves p past the line end at or after q: 1, or 0 at the text's end (p
 * there, y->ind -1). */
static int past_line_end(fy_t *y, const char *q) {
  const char *nl = q < y->end ? memchr(q, '\n', (size_t)(y->end - q)) : NULL;
  if (!nl) {
    y->p = y->end;
    y->ind = -1;
    return 0;
  }
  y->p = nl + 1;
  y->line++;
  return 1;
}

/* Moves p to the first content of the next line that has any (skipping blank
 * and comment-only lines) and sets y->ind to its column, or -1 at the end.
 * p must be at a line start. Returns DECLINE at a document marker. */
static int next_line(fy_t *y) {
  for (;;) {
    if (y->p >= y->end) {
      y->ind = -1;
      return 0;
    }
    const char *ls = y->p, *q = ls;
    if (y->end - q >= 3 &&
        (memcmp(q, "---", 3) == 0 || memcmp(q, "...", 3) == 0) &&
        is_blank_or_end(y, q + 3))
      return DECLINE;
    while (q < y->end && *q == ' ')
      q++;
    if (q < y->end && *q != '\n' && *q != '#') {
      y->ls = ls;
      y->p = q;
      y->ind = (long)(q - ls);
      return 0;
    }
    if (!past_line_end(y, q))
      return 0;
  }
}

/* After a node on its line: blanks, an optional comment, the line's end.
 * Then on to the next content line. */
static int end_line(fy_t *y) {
  const char *q = y->p;
  while (q < y->end && *q == ' ')
    q++;
  if (q < y->end && *q == '#' && q > y->ls && q[-1] != ' ')
    return DECLINE; /* a comment needs a blank before it */
  if (q < y->end && *q != '\n' && *q != '#')
    return DECLINE;
  return past_line_end(y, q) ? next_line(y) : 0;
}

static int count_node(fy_t *y) {
  return ++y->nodes > AMC_LOADER_MAX_NODES ? DECLINE : 0;
}

/* A new node of `type`. */
static int new_node(fy_t *y, int type) {
  return (int)amc_canon_add(y->c, type);
}

/* A quoted scalar on one line at p: its text (unescaped into the tree's
 * scratch area when it must be), p after the quote. */
static int quoted_text(fy_t *y, const char **text, size_t *n) {
  char q = *y->p;
  const char *s = y->p + 1, *e = s;
  int plain_run = 1; /* no escapes: the text is the bytes between quotes */
  for (;; e++) {
    if (e >= y->end || *e == '\n')
      return DECLINE;
    if (*e == q) {
      if (q == '\'' && e + 1 < y->end && e[1] == '\'') {
        plain_run = 0;
        e++;
        continue;
      }
      break;
    }
    if (*e == '\\' && q == '"') {
      plain_run = 0;
      e++;
      if (e >= y->end || *e == '\0' || !strchr("\\\"ntr", *e))
        return DECLINE;
    }
  }
  if (plain_run) {
    *text = s;
    *n = (size_t)(e - s);
  } else {
    /* (never longer than the quoted text: the scratch area has room) */
    char *w0 = y->c->scratch + y->c->slen, *w = w0;
    for (const char *c = s; c < e; c++) {
      char ch = *c;
      if (q == '\'' && ch == '\'') {
        c++; /* '' */
      } else if (q == '"' && ch == '\\') {
        c++;
        ch = *c == 'n' ? '\n' : *c == 't' ? '\t' : *c == 'r' ? '\r' : *c;
      }
      *w++ = ch;
    }
    y->c->slen += (size_t)(w - w0);
    *text = w0;
    *n = (size_t)(w - w0);
  }
  y->p = e + 1;
  return count_node(y);
}

/* A quoted scalar as a node. */
static int quoted(fy_t *y) {
  const char *s;
  size_t n;
  if (quoted_text(y, &s, &n) < 0)
    return DECLINE;
  int v = new_node(y, AMC_CN_STR);
  set_string(&y->c->node[v], s, n);
  return v;
}

/* A plain scalar as a node (the core schema: amc_yaml_plain). */
static int plain(fy_t *y, const char *s, size_t n) {
  if (count_node(y) < 0)
    return DECLINE;
  int v = new_node(y, AMC_CN_NULL);
  amc_yaml_plain(s, n, &y->c->node[v]);
  return v;
}

static int flow_node(fy_t *y);

/* A plain scalar inside a flow collection: up to , ] } (blanks trimmed).
 * Anything that might make it more than that (':' '#' brackets) declines.
 * With `key` set it is a mapping's key (its text, up to the ':'; returns
 * 0), else a value (returns its node). */
static int flow_plain(fy_t *y, const char **key, size_t *klen) {
  const char *s = y->p, *e = s;
  if (indicator(*s) || (*s == '-' && is_blank_or_end(y, s + 1)))
    return DECLINE;
  while (e < y->end && !(ycls[(unsigned char)*e] & YC_FLOW))
    e++;
  if (e >= y->end || *e == '\n' || *e == '[' || *e == '{' || *e == '#' ||
      (*e == ':' && !key))
    return DECLINE;
  const char *t = e;
  while (t > s && t[-1] == ' ')
    t--;
  if (t == s)
    return DECLINE;
  y->p = t;
  if (!key)
    return plain(y, s, (size_t)(t - s));
  if (*e != ':' || t != e || !is_blank_or_end(y, e + 1) ||
      e - s > FAST_MAX_KEY || (e - s == 2 && s[0] == '<' && s[1] == '<'))
    return DECLINE; /* "{a}" "{a :b}" "{a:b}", too long, a merge key */
  *key = s;
  *klen = (size_t)(t - s);
  return count_node(y);
}

static void skip_spaces(fy_t *y) {
  while (y->p < y->end && *y->p == ' ')
    y->p++;
}

/* Makes `v` the entry `key` of the mapping `t`. (Duplicate keys are found
 * by the tree's users: amc_yaml_fast_document, canon.c's writer.) */
static void map_set(fy_t *y, int t, const char *key, size_t klen, int v) {
  amc_canon_node_t *nd = &y->c->node[v];
  nd->key = key;
  nd->klen = (uint32_t)klen;
  amc_canon_link(y->c, (uint32_t)t, (uint32_t)v);
}

/* Enters a collection: its new node, or DECLINE. */
static int enter(fy_t *y, int type) {
  if (++y->depth > FAST_MAX_DEPTH || count_node(y) < 0)
    return DECLINE;
  return new_node(y, type);
}

static int flow_mapping(fy_t *y) {
  int t = enter(y, AMC_CN_MAP);
  if (t < 0)
    return DECLINE;
  y->p++; /* { */
  skip_spaces(y);
  if (y->p < y->end && *y->p == '}') {
    y->p++;
    y->depth--;
    return t;
  }
  for (;;) {
    const char *k;
    size_t kn;
    if (y->p >= y->end)
      return DECLINE;
    if (*y->p == '"' || *y->p == '\'') {
      const char *ks = y->p;
      if (quoted_text(y, &k, &kn) < 0)
        return DECLINE;
      if (y->p >= y->end || *y->p != ':' || !is_blank_or_end(y, y->p + 1) ||
          y->p - ks > FAST_MAX_KEY)
        return DECLINE;
    } else if (flow_plain(y, &k, &kn) < 0) {
      return DECLINE;
    }
    y->p++; /* : */
    skip_spaces(y);
    if (y->p >= y->end || *y->p == ',' || *y->p == '}')
      return DECLINE; /* an empty value */
    int v = flow_node(y);
    if (v < 0)
      return DECLINE;
    map_set(y, t, k, kn, v);
    skip_spaces(y);
    if (y->p >= y->end)
      return DECLINE;
    if (*y->p == '}') {
      y->p++;
      break;
    }
    if (*y->p != ',')
      return DECLINE;
    y->p++;
    skip_spaces(y);
    if (y->p < y->end && *y->p == '}')
      return DECLINE; /* a trailing comma */
  }
  y->depth--;
  return t;
}

static int flow_sequence(fy_t *y) {
  int t = enter(y, AMC_CN_SEQ);
  if (t < 0)
    return DECLINE;
  y->p++; /* [ */
  skip_spaces(y);
  if (y->p < y->end && *y->p == ']') {
    y->p++;
    y->depth--;
    return t;
  }
  for (;;) {
    if (y->p >= y->end || *y->p == ',' || *y->p == ']')
      return DECLINE;
    int v = flow_node(y);
    if (v < 0)
      return DECLINE;
    amc_canon_link(y->c, (uint32_t)t, (uint32_t)v);
    skip_spaces(y);
    if (y->p >= y->end)
      return DECLINE;
    if (*y->p == ']') {
      y->p++;
      break;
    }
    if (*y->p != ',') /* also "a": b, a single-pair mapping */
      return DECLINE;
    y->p++;
    skip_spaces(y);
    if (y->p < y->end && *y->p == ']')
      return DECLINE;
  }
  y->depth--;
  return t;
}

static int flow_node(fy_t *y) {
  switch (*y->p) {
  case '{':
    return flow_mapping(y);
  case '[':
    return flow_sequence(y);
  case '"':
  case '\'':
    return quoted(y);
  default:
    return flow_plain(y, NULL, NULL);
  }
}

/* Whether the line at p (from its column on) is "key: ..." or "key:" (a
 * plain or quoted key on one line). Sets *colon to the ':'. */
static int key_ahead(const fy_t *y, const char **colon) {
  const char *s = y->p, *e;
  if (*s == '"' || *s == '\'') {
    e = s + 1;
    while (e < y->end && *e != *s && *e != '\n')
      e++; /* (a quoted key with '' or escapes declines later) */
    if (e >= y->end || *e != *s)
      return 0;
    e++;
    if (e < y->end && *e == ':' && is_blank_or_end(y, e + 1) &&
        e - s <= FAST_MAX_KEY) {
      *colon = e;
      return 1;
    }
    return 0;
  }
  if (indicator(*s) || *s == '-')
    return 0;
  /* (a ':' is looked for up to one past FAST_MAX_KEY, as a walk that
   * gives up after that byte would) */
  const char *lim =
      y->end - s > FAST_MAX_KEY + 2 ? s + FAST_MAX_KEY + 2 : y->end;
  for (e = s;; e++) {
    while (e < lim && !(ycls[(unsigned char)*e] & YC_LINE))
      e++;
    if (e >= lim || *e == '\n')
      return 0;
    if (*e == ':' && is_blank_or_end(y, e + 1)) {
      *colon = e;
      return 1;
    }
    if (*e == '#' && e[-1] == ' ')
      return 0;
  }
}

/* A plain scalar in a block: the rest of the line up to a comment. */
static int block_plain(fy_t *y) {
  const char *s = y->p, *e = s;
  for (;; e++) {
    while (e < y->end && !(ycls[(unsigned char)*e] & YC_LINE))
      e++;
    if (e >= y->end || *e == '\n')
      break;
    if (*e == ':' && is_blank_or_end(y, e + 1))
      return DECLINE; /* "a: b: c" is an error */
    if (*e == '#' && e[-1] == ' ')
      break;
  }
  const char *t = e;
  while (t > s && t[-1] == ' ')
    t--;
  y->p = t;
  return plain(y, s, (size_t)(t - s));
}

static int block_mapping(fy_t *y, long m);
static int block_sequence(fy_t *y, long s);

/* A scalar or flow collection that starts at p and ends on its line, in a
 * collection whose entries are at column `owner`; on to the next line. A
 * more indented next line would continue the scalar (or be an error). */
static int inline_value(fy_t *y, long owner) {
  char ch = *y->p;
  int v;
  if (ch == '{' || ch == '[')
    v = flow_node(y);
  else if (ch == '"' || ch == '\'')
    v = quoted(y);
  else if (indicator(ch) || (ch == '-' && is_blank_or_end(y, y->p + 1)))
    return DECLINE;
  else
    v = block_plain(y);
  if (v < 0 || end_line(y) < 0)
    return DECLINE;
  return y->ind > owner ? DECLINE : v;
}

/* A block collection starting at p, at column `col`. */
static int block_node(fy_t *y, long col) {
  const char *colon;
  if (*y->p == '-' && is_blank_or_end(y, y->p + 1))
    return block_sequence(y, col);
  if (key_ahead(y, &colon))
    return block_mapping(y, col);
  return DECLINE; /* a scalar on a line of its own (maybe several lines) */
}

/* The value of a key or "-" with nothing after it on its line (but a
 * comment): the block below, more indented than `owner` (or, for a key,
 * a sequence at the key's own column), else null. On to the next line. */
static int value_below(fy_t *y, long owner, int seq_at_owner) {
  if (end_line(y) < 0)
    return DECLINE;
  if (y->ind > owner)
    return block_node(y, y->ind);
  if (seq_at_owner && y->ind == owner && *y->p == '-' &&
      is_blank_or_end(y, y->p + 1))
    return block_sequence(y, owner);
  return plain(y, "", 0);
}

/* p is at a key at column m (at the start of its line or after "- "). */
static int block_mapping(fy_t *y, long m) {
  int t = enter(y, AMC_CN_MAP);
  if (t < 0)
    return DECLINE;
  for (;;) {
    const char *colon, *k;
    size_t kn;
    if (!key_ahead(y, &colon))
      return DECLINE;
    if (*y->p == '"' || *y->p == '\'') {
      if (quoted_text(y, &k, &kn) < 0 || y->p != colon)
        return DECLINE;
    } else {
      if (colon[-1] == ' ' ||
          (colon - y->p == 2 && y->p[0] == '<' && y->p[1] == '<'))
        return DECLINE; /* "key :" (trimmed by libyaml), merge keys */
      k = y->p;
      kn = (size_t)(colon - y->p);
      if (count_node(y) < 0)
        return DECLINE;
    }
    y->p = colon + 1;
    skip_spaces(y);
    int v;
    if (y->p >= y->end || *y->p == '\n' || (*y->p == '#' && y->p[-1] == ' '))
      v = value_below(y, m, 1); /* on the next lines, or empty */
    else
      v = inline_value(y, m);
    if (v < 0)
      return DECLINE;
    map_set(y, t, k, kn, v);
    if (y->ind < m)
      break;
    if (y->ind > m)
      return DECLINE;
  }
  y->depth--;
  return t;
}

/* p is at the "-" of the first entry, at column s. */
static int block_sequence(fy_t *y, long s) {
  int t = enter(y, AMC_CN_SEQ);
  if (t < 0)
    return DECLINE;
  for (;;) {
    y->p++; /* - */
    skip_spaces(y);
    const char *colon;
    int v;
    if (y->p >= y->end || *y->p == '\n' || (*y->p == '#' && y->p[-1] == ' ')) {
      v = value_below(y, s, 0);
    } else {
      long col = (long)(y->p - y->ls);
      if (*y->p == '-' && is_blank_or_end(y, y->p + 1))
        v = block_sequence(y, col);
      else if (key_ahead(y, &colon))
        v = block_mapping(y, col);
      else
        v = inline_value(y, s);
    }
    if (v < 0)
      return DECLINE;
    amc_canon_link(y->c, (uint32_t)t, (uint32_t)v);
    if (y->ind != s || *y->p != '-' || !is_blank_or_end(y, y->p + 1))
      break; /* the owner decides what a line at column s is */
  }
  if (y->ind > s)
    return DECLINE;
  y->depth--;
  return t;
}

/* Bytes the fast path takes: printable ASCII, spaces and line feeds.
 * (Eight bytes at a time: line feeds become '*' (0x0A | 0x20), then a
 * word passes when no byte is below 0x20 or above 0x7E.) */
static int plain_ascii(const char *s, size_t n) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  const uint64_t lows = 0x7F7F7F7F7F7F7F7FULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, z;
    memcpy(&x, s + i, 8);
    z = x ^ (ones * '\n');
    /* 0x80 in exactly the bytes of z that are zero (the line feeds) */
    uint64_t lf = ~(((z & lows) + lows) | z | lows);
    x |= lf >> 2;
    if (((x - ones * 0x20) | (x + ones) | x) & highs)
      return 0;
  }
  for (; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch < 0x20 && ch != '\n') || ch >= 0x7f)
      return 0;
  }
  return 1;
}

/* Whether a line after p starts with "---" or "..." (another document,
 * or an end marker). */
static int marker_after(const char *p, const char *end) {
  while ((p = memchr(p, '\n', (size_t)(end - p)))) {
    p++;
    if (end - p >= 3 && (memcmp(p, "---", 3) == 0 || memcmp(p, "...", 3) == 0))
      return 1;
  }
  return 0;
}

int amc_yaml_fast_tree(amc_canon_t *c, const char *buf, size_t len,
                       size_t *line, size_t *col) {
  if (!plain_ascii(buf, len) || amc_canon_begin(c, len) < 0)
    return 0;
  fy_t y = {c, buf, buf + len, buf, 0, -1, 0, 0};
  /* blank and comment lines, at most one "---" line alone, blank and
   * comment lines again */
  int marker = 0;
  for (;;) {
    if (next_line(&y) == 0)
      break;
    /* a document marker at y.p (a line start) */
    if (marker || memcmp(y.p, "---", 3) != 0)
      return 0;
    marker = 1;
    y.p += 3;
    if (end_line(&y) < 0) /* "--- value" is left to libyaml */
      return 0;
    if (y.ind >= 0)
      break;
  }
  if (y.ind < 0 || *y.p == '%')
    return 0;
  /* Another document (or an end marker) after this one: libyaml's (before
   * building a value only to drop it). */
  if (marker_after(y.p, y.end))
    return 0;
  *line = y.line;
  *col = (size_t)y.ind;
  /* (the root is the first node made: node 0) */
  if (block_node(&y, y.ind) != 0 || y.ind != -1)
    return 0;
  return 1;
}

/* Pushes node `i` of the tree; DECLINE (with the stack as it was) at a
 * duplicate key, which libyaml's path reports. Memory errors are
 * raised. */
static int push_node(lua_State *L, const amc_canon_t *c, uint32_t i,
                     int array_mt) {
  const amc_canon_node_t *nd = &c->node[i];
  if (nd->type != AMC_CN_MAP && nd->type != AMC_CN_SEQ) {
    push_scalar(L, nd);
    return 0;
  }
  if (!lua_checkstack(L, 8))
    return DECLINE;
  int top = lua_gettop(L);
  /* sized as loader.c's libyaml path sizes them, and filled in the same
   * order: next() visits the keys alike */
  if (nd->type == AMC_CN_MAP) {
    lua_createtable(L, 0, 4);
    for (uint32_t e = nd->u.kids.first; e; e = c->node[e].next) {
      lua_pushlstring(L, c->node[e].key, c->node[e].klen);
      if (push_node(L, c, e, array_mt) < 0) {
        lua_settop(L, top);
        return DECLINE;
      }
      lua_pushvalue(L, -2);
      if (lua_rawget(L, top + 1) != LUA_TNIL) {
        lua_settop(L, top);
        return DECLINE;
      }
      lua_pop(L, 1);
      lua_rawset(L, top + 1);
    }
    return 0;
  }
  lua_createtable(L, 0, 0);
  lua_pushvalue(L, array_mt);
  lua_setmetatable(L, -2);
  lua_Integer k = 1;
  for (uint32_t e = nd->u.kids.first; e; e = c->node[e].next) {
    if (push_node(L, c, e, array_mt) < 0) {
      lua_settop(L, top);
      return DECLINE;
    }
    lua_rawseti(L, top + 1, k++);
  }
  return 0;
}

int amc_yaml_fast_document(lua_State *L, const char *buf, size_t len,
                           int array_mt, size_t *line, size_t *col) {
  /* One tree, reused (a Lua error may leave at any point: nothing here
   * needs freeing). Per thread. */
  static _Thread_local amc_canon_t *tree;
  if (!tree)
    tree = amc_canon_new();
  if (amc_canon_memory(tree) > ((size_t)1 << 20)) {
    amc_canon_free(tree); /* (after a large text) */
    tree = amc_canon_new();
  }
  if (!amc_yaml_fast_tree(tree, buf, len, line, col))
    return 0;
  return push_node(L, tree, 0, lua_absindex(L, array_mt)) == 0;
}
