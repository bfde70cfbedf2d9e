/* kjson.c - span-based JSON scanning (see kjson.h). */
#include "kube/kjson.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

static int is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

/* Returns the byte after the closing quote, or NULL. `p` is at '"'. */
static const char *skip_string(const char *p, const char *end) {
  p++;
  while (p < end) {
    unsigned char c = (unsigned char)*p;
    if (c == '"')
      return p + 1;
    if (c < 0x20)
      return NULL;
    if (c == '\\') {
      if (p + 1 >= end)
        return NULL;
      char e = p[1];
      if (e == 'u') {
        if (p + 6 > end)
          return NULL;
        for (int i = 2; i < 6; i++)
          if (!is_hex(p[i]))
            return NULL;
        p += 6;
        continue;
      }
      if (!strchr("\"\\/bfnrt", e) || e == 0)
        return NULL;
      p += 2;
      continue;
    }
    p++;
  }
  return NULL;
}

static const char *skip_number(const char *p, const char *end) {
  const char *s = p;
  if (p < end && *p == '-')
    p++;
  if (p >= end)
    return NULL;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  } else {
    return NULL;
  }
  if (p < end && *p == '.') {
    p++;
    const char *d = p;
    while (p < end && *p >= '0' && *p <= '9')
      p++;
    if (p == d)
      return NULL;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    const char *d = p;
    while (p < end && *p >= '0' && *p <= '9')
      p++;
    if (p == d)
      return NULL;
  }
  return p > s ? p : NULL;
}

static const char *skip_value(const char *p, const char *end, int depth);

static const char *skip_container(const char *p, const char *end, int depth) {
  char close = *p == '{' ? '}' : ']';
  int is_obj = *p == '{';
  if (depth >= AMC_KJSON_MAX_DEPTH)
    return NULL;
  p = skip_ws(p + 1, end);
  if (p < end && *p == close)
    return p + 1;
  for (;;) {
    if (is_obj) {
      if (p >= end || *p != '"')
        return NULL;
      p = skip_string(p, end);
      if (!p)
        return NULL;
      p = skip_ws(p, end);
      if (p >= end || *p != ':')
        return NULL;
      p = skip_ws(p + 1, end);
    }
    p = skip_value(p, end, depth + 1);
    if (!p)
      return NULL;
    p = skip_ws(p, end);
    if (p >= end)
      return NULL;
    if (*p == close)
      return p + 1;
    if (*p != ',')
      return NULL;
    p = skip_ws(p + 1, end);
  }
}

static const char *skip_lit(const char *p, const char *end, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(end - p) < n || memcmp(p, lit, n) != 0)
    return NULL;
  return p + n;
}

static const char *skip_value(const char *p, const char *end, int depth) {
  if (p >= end)
    return NULL;
  switch (*p) {
  case '{':
  case '[':
    return skip_container(p, end, depth);
  case '"':
    return skip_string(p, end);
  case 't':
    return skip_lit(p, end, "true");
  case 'f':
    return skip_lit(p, end, "false");
  case 'n':
    return skip_lit(p, end, "null");
  default:
    return skip_number(p, end);
  }
}

int amc_kjson_parse(const char *s, size_t n, amc_kjson_t *out) {
  const char *end = s + n;
  const char *p = skip_ws(s, end);
  const char *v = skip_value(p, end, 0);
  if (!v || skip_ws(v, end) != end)
    return -1;
  out->p = p;
  out->n = (size_t)(v - p);
  return 0;
}

char amc_kjson_type(amc_kjson_t v) {
  if (!v.p || v.n == 0)
    return 0;
  switch (v.p[0]) {
  case '{':
    return 'o';
  case '[':
    return 'a';
  case '"':
    return 's';
  case 't':
    return 't';
  case 'f':
    return 'f';
  case 'n':
    return 'z';
  default:
    return 'n';
  }
}

int amc_kjson_object_next(amc_kjson_t obj, size_t *pos, amc_kjson_t *key,
                          amc_kjson_t *val) {
  if (amc_kjson_type(obj) != 'o')
    return -1;
  const char *end = obj.p + obj.n;
  const char *p = obj.p + (*pos ? *pos : 1);
  p = skip_ws(p, end);
  if (p < end && *p == ',')
    p = skip_ws(p + 1, end);
  if (p >= end)
    return -1;
  if (*p == '}')
    return 0;
  if (*p != '"')
    return -1;
  const char *k = p;
  p = skip_string(p, end);
  if (!p)
    return -1;
  key->p = k;
  key->n = (size_t)(p - k);
  p = skip_ws(p, end);
  if (p >= end || *p != ':')
    return -1;
  p = skip_ws(p + 1, end);
  const char *v = p;
  p = skip_value(p, end, 1);
  if (!p)
    return -1;
  val->p = v;
  val->n = (size_t)(p - v);
  *pos = (size_t)(p - obj.p);
  return 1;
}

int amc_kjson_array_next(amc_kjson_t arr, size_t *pos, amc_kjson_t *elem) {
  if (amc_kjson_type(arr) != 'a')
    return -1;
  const char *end = arr.p + arr.n;
  const char *p = arr.p + (*pos ? *pos : 1);
  p = skip_ws(p, end);
  if (p < end && *p == ',')
    p = skip_ws(p + 1, end);
  if (p >= end)
    return -1;
  if (*p == ']')
    return 0;
  const char *v = p;
  p = skip_value(p, end, 1);
  if (!p)
    return -1;
  elem->p = v;
  elem->n = (size_t)(p - v);
  *pos = (size_t)(p - arr.p);
  return 1;
}

int amc_kjson_get(amc_kjson_t obj, const char *key, amc_kjson_t *out) {
  size_t pos = 0;
  amc_kjson_t k, v;
  int r;
  while ((r = amc_kjson_object_next(obj, &pos, &k, &v)) == 1) {
    if (amc_kjson_streq(k, key)) {
      *out = v;
      return 0;
    }
  }
  return -1;
}

int amc_kjson_path(amc_kjson_t obj, const char *path, amc_kjson_t *out) {
  char seg[128];
  amc_kjson_t cur = obj;
  while (*path) {
    const char *dot = strchr(path, '.');
    size_t n = dot ? (size_t)(dot - path) : strlen(path);
    if (n >= sizeof seg)
      return -1;
    memcpy(seg, path, n);
    seg[n] = 0;
    if (amc_kjson_get(cur, seg, &cur) != 0)
      return -1;
    path += n;
    if (*path == '.')
      path++;
  }
  *out = cur;
  return 0;
}

static unsigned hexval(const char *p) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (unsigned)(c - 'a' + 10);
    else
      v |= (unsigned)(c - 'A' + 10);
  }
  return v;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

char *amc_kjson_strdup(amc_kjson_t v) {
  if (amc_kjson_type(v) != 's' || v.n < 2)
    return NULL;
  /* Unescaped text is never longer than the escaped text. */
  char *out = malloc(v.n);
  if (!out)
    return NULL;
  size_t o = 0;
  const char *p = v.p + 1, *end = v.p + v.n - 1;
  while (p < end) {
    if (*p != '\\') {
      out[o++] = *p++;
      continue;
    }
    char e = p[1];
    p += 2;
    switch (e) {
    case 'b':
      out[o++] = '\b';
      break;
    case 'f':
      out[o++] = '\f';
      break;
    case 'n':
      out[o++] = '\n';
      break;
    case 'r':
      out[o++] = '\r';
      break;
    case 't':
      out[o++] = '\t';
      break;
    case 'u': {
      unsigned cp = hexval(p);
      p += 4;
      if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' &&
          p[1] == 'u') {
        unsigned lo = hexval(p + 2);
        if (lo >= 0xDC00 && lo < 0xE000) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          p += 6;
        }
      }
      if (cp == 0) {
        free(out);
        return NULL;
      }
      o += put_utf8(out + o, cp);
      break;
    }
    default:
      out[o++] = e;
    }
  }
  out[o] = 0;
  return out;
}

int amc_kjson_streq(amc_kjson_t v, const char *s) {
  if (amc_kjson_type(v) != 's')
    return 0;
  size_t n = strlen(s);
  /* Fast path: no escapes. */
  if (v.n == n + 2 && memcmp(v.p + 1, s, n) == 0)
    return 1;
  if (!memchr(v.p, '\\', v.n))
    return 0;
  char *u = amc_kjson_strdup(v);
  int eq = u && strcmp(u, s) == 0;
  free(u);
  return eq;
}

int amc_kjson_int(amc_kjson_t v, long long *out) {
  if (amc_kjson_type(v) != 'n' || v.n > 20)
    return -1;
  char tmp[24];
  memcpy(tmp, v.p, v.n);
  tmp[v.n] = 0;
  if (strpbrk(tmp, ".eE"))
    return -1;
  char *e;
  long long x = strtoll(tmp, &e, 10);
  if (*e)
    return -1;
  *out = x;
  return 0;
}

void amc_kjson_quote(amc_buf_t *out, const char *s) {
  amc_buf_putc(out, '"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      amc_buf_putc(out, '\\');
      amc_buf_putc(out, (char)c);
    } else if (c < 0x20) {
      amc_buf_printf(out, "\\u%04x", c);
    } else {
      amc_buf_putc(out, (char)c);
    }
  }
  amc_buf_putc(out, '"');
}
