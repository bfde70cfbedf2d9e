/* lz.c - LZ77 against a preset dictionary (see lz.h). */
#include "util/lz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_MATCH 4
#define MAX_MATCH (0x7f + MIN_MATCH)
#define MAX_RUN   0x80
#define HASH_BITS 11
#define MAX_CHAIN 8

static uint32_t hash4(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return (v * 2654435761u) >> (32 - HASH_BITS);
}

static void insert(int32_t *head, int32_t *prev, const uint8_t *v, size_t i) {
  uint32_t h = hash4(v + i);
  prev[i] = head[h];
  head[h] = (int32_t)i;
}

/* How many of the first `max` bytes of a and b agree (8 at a time). */
static size_t match_len(const uint8_t *a, const uint8_t *b, size_t max) {
  size_t k = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; k + 8 <= max; k += 8) {
    uint64_t x, y;
    memcpy(&x, a + k, 8);
    memcpy(&y, b + k, 8);
    if (x != y)
      return k + (size_t)(__builtin_ctzll(x ^ y) >> 3);
  }
#endif
  while (k < max && a[k] == b[k])
    k++;
  return k;
}

static void put_varint(amc_buf_t *out, size_t v) {
  uint8_t b[10];
  size_t n = 0;
  do {
    b[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  amc_buf_append(out, b, n);
}

static void flush_literals(amc_buf_t *out, const uint8_t *p, size_t n) {
  while (n) {
    size_t k = n > MAX_RUN ? MAX_RUN : n;
    uint8_t t = (uint8_t)(k - 1);
    amc_buf_append(out, &t, 1);
    amc_buf_append(out, p, k);
    p += k;
    n -= k;
  }
}

struct amc_lz_dict {
  uint8_t *bytes;
  size_t len;
  int32_t *prev; /* the dictionary's hash chains, as compress builds them */
  int32_t head[1 << HASH_BITS];
};

amc_lz_dict_t *amc_lz_dict_new(const void *dict, size_t dlen) {
  amc_lz_dict_t *d = malloc(sizeof *d);
  if (!d)
    abort();
  d->len = dlen;
  d->bytes = malloc(dlen ? dlen : 1);
  d->prev = calloc(dlen ? dlen : 1, sizeof *d->prev);
  if (!d->bytes || !d->prev)
    abort();
  if (dlen)
    memcpy(d->bytes, dict, dlen);
  memset(d->head, 0xff, sizeof d->head); /* -1: empty */
  for (size_t i = 0; i + MIN_MATCH <= dlen; i++)
    insert(d->head, d->prev, d->bytes, i);
  return d;
}

void amc_lz_dict_free(amc_lz_dict_t *d) {
  if (!d)
    return;
  free(d->bytes);
  free(d->prev);
  free(d);
}

const void *amc_lz_dict_bytes(const amc_lz_dict_t *d, size_t *len) {
  *len = d->len;
  return d->bytes;
}

/* Compresses against dict[0..dlen), whose hash chains are `pd`'s when it
 * is not NULL. */
static void compress(const void *dict, size_t dlen, const amc_lz_dict_t *pd,
                     const void *in, size_t n, amc_buf_t *out) {
  /* The virtual text: dictionary then input, so that one search covers
   * both. */
  size_t total = dlen + n;
  uint8_t *v = malloc(total ? total : 1);
  if (!v)
    abort();
  if (dlen)
    memcpy(v, dict, dlen);
  if (n)
    memcpy(v + dlen, in, n);
  /* Hash chains: head[h] the latest position with hash h, prev[i] the one
   * before i; the longest of the first MAX_CHAIN candidates wins. */
  int32_t head[1 << HASH_BITS];
  int32_t *prev = malloc((total ? total : 1) * sizeof *prev);
  if (!prev)
    abort();
  if (pd) {
    memcpy(head, pd->head, sizeof head);
    if (dlen)
      memcpy(prev, pd->prev, dlen * sizeof *prev);
  } else {
    memset(head, 0xff, sizeof head); /* -1: empty */
    for (size_t i = 0; i + MIN_MATCH <= dlen; i++)
      insert(head, prev, v, i);
  }
  size_t i = dlen, lit = dlen;
  while (i < total) {
    size_t best = 0, from = 0;
    if (i + MIN_MATCH <= total) {
      size_t max = total - i < MAX_MATCH ? total - i : MAX_MATCH;
      int32_t c = head[hash4(v + i)];
      for (int depth = 0; c >= 0 && depth < MAX_CHAIN && best < max;
           depth++, c = prev[c]) {
        size_t k = match_len(v + c, v + i, max);
        if (k > best) {
          best = k;
          from = (size_t)c;
        }
      }
      if (best < MIN_MATCH)
        best = 0;
    }
    if (!best) {
      if (i + MIN_MATCH <= total)
        insert(head, prev, v, i);
      i++;
      continue;
    }
    flush_literals(out, v + lit, i - lit);
    uint8_t t = (uint8_t)(0x80 | (best - MIN_MATCH));
    amc_buf_append(out, &t, 1);
    put_varint(out, i - from);
    for (size_t j = i; j < i + best && j + MIN_MATCH <= total; j++)
      insert(head, prev, v, j);
    i += best;
    lit = i;
  }
  free(prev);
  flush_literals(out, v + lit, total - lit);
  free(v);
}

void amc_lz_compress(const void *dict, size_t dlen, const void *in, size_t n,
                     amc_buf_t *out) {
  compress(dict, dlen, NULL, in, n, out);
}

void amc_lz_compress_dict(const amc_lz_dict_t *d, const void *in, size_t n,
                          amc_buf_t *out) {
  compress(d->bytes, d->len, d, in, n, out);
}

/* Reads the token at *p: a literal run (returns 0, *len bytes follow at
 * *p, checked to be there) or a match (returns 1: *len bytes from *dist
 * back). Returns -1 on a truncated or malformed token. */
static inline __attribute__((always_inline)) int
next_token(const uint8_t **p, const uint8_t *end, size_t *len, size_t *dist) {
  uint8_t t = *(*p)++;
  if (t < 0x80) {
    *len = (size_t)t + 1;
    return (size_t)(end - *p) < *len ? -1 : 0;
  }
  *len = (size_t)(t & 0x7f) + MIN_MATCH;
  if (*p < end && **p < 0x80) { /* most distances: one byte */
    *dist = *(*p)++;
    return 1;
  }
  *dist = 0;
  for (unsigned shift = 0;; shift += 7) {
    if (*p == end || shift > 56)
      return -1;
    uint8_t b = *(*p)++;
    *dist |= (size_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      return 1;
  }
}

int amc_lz_decompress(const void *dict, size_t dlen, const void *in, size_t n,
                      amc_buf_t *out) {
  /* Decompress after a copy of the dictionary: matches are then plain
   * back-references; the copy is removed at the end. */
  size_t base = out->len;
  if (dlen)
    amc_buf_append(out, dict, dlen);
  const uint8_t *p = in, *end = p + n;
  while (p < end) {
    size_t len, dist;
    int kind = next_token(&p, end, &len, &dist);
    if (kind < 0)
      return -1;
    if (kind == 0) {
      amc_buf_append(out, p, len);
      p += len;
      continue;
    }
    size_t have = out->len - base;
    if (dist == 0 || dist > have)
      return -1;
    char *dst = amc_buf_reserve(out, len);
    const char *src = dst - dist; /* reserve may move data: take it after */
    if (dist >= len) {
      memcpy(dst, src, len);
    } else {
      for (size_t k = 0; k < len; k++) /* overlaps: byte by byte */
        dst[k] = src[k];
    }
    amc_buf_commit(out, len);
  }
  /* drop the dictionary copy */
  if (dlen) {
    memmove(out->data + base, out->data + base + dlen, out->len - base - dlen);
    out->len -= dlen;
    out->data[out->len] = '\0';
  }
  return 0;
}

/* Copies 16 bytes as two words, the second read after the first is
 * written: for the short tokens that are most of a text, where a memcpy
 * call costs more than the copy. Writing up to 16 bytes for a shorter
 * token is fine when the room is there (what follows is written later).
 * A match at least 8 back comes out as the byte-by-byte copy would. */
static inline void copy16(uint8_t *dst, const uint8_t *src) {
  uint64_t a, b;
  memcpy(&a, src, 8);
  memcpy(dst, &a, 8);
  memcpy(&b, src + 8, 8);
  memcpy(dst + 8, &b, 8);
}

int amc_lz_decompress_to(const void *dict, size_t dlen, const void *in,
                         size_t n, void *out, size_t out_len) {
  const uint8_t *p = in, *end = p + n, *d = dict;
  uint8_t *o = out;
  size_t have = 0;
  while (p < end) {
    size_t len, dist;
    int kind = next_token(&p, end, &len, &dist);
    if (kind < 0)
      return -1;
    if (kind == 0) {
      if (out_len - have < len)
        return -1;
      if (len <= 16 && end - p >= 16 && out_len - have >= 16)
        copy16(o + have, p);
      else
        memcpy(o + have, p, len);
      p += len;
      have += len;
      continue;
    }
    if (dist == 0 || dist > have + dlen || out_len - have < len)
      return -1;
    uint8_t *dst = o + have;
    if (dist <= have && dist >= 8 && len <= 16 && out_len - have >= 16) {
      copy16(dst, dst - dist); /* (see copy16) */
    } else if (dist > have) {
      /* starts in the dictionary, may run on into the output's start
       * (what follows the dictionary in the virtual text) */
      size_t back = dist - have, k = back < len ? back : len;
      memcpy(dst, d + dlen - back, k);
      for (; k < len; k++)
        dst[k] = o[k - back];
    } else if (dist >= len) {
      memcpy(dst, dst - dist, len);
    } else {
      const uint8_t *src = dst - dist;
      for (size_t k = 0; k < len; k++) /* overlaps: byte by byte */
        dst[k] = src[k];
    }
    have += len;
  }
  return have == out_len ? 0 : -1;
}
