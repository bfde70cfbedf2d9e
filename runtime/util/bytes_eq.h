/* bytes_eq.h - equality of short byte strings without a call.
 *
 * The JSON decoder's key cache and the schema proof's field lookup compare
 * many short names (mostly under 16 bytes) whose length is already known
 * equal; a memcmp call costs more than the comparison itself there. */
#ifndef AMC_UTIL_BYTES_EQ_H
#define AMC_UTIL_BYTES_EQ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* a[0..n) == b[0..n). Up to 16 bytes: two (overlapping) words or halves,
 * or the (at most three) bytes there are; longer: memcmp. */
static inline int amc_bytes_eq(const void *a, const void *b, size_t n) {
  const unsigned char *x = a, *y = b;
  if (n >= 8) {
    if (n > 16)
      return memcmp(x, y, n) == 0;
    uint64_t p, q, r, s;
    memcpy(&p, x, 8);
    memcpy(&q, y, 8);
    memcpy(&r, x + n - 8, 8);
    memcpy(&s, y + n - 8, 8);
    return ((p ^ q) | (r ^ s)) == 0;
  }
  if (n >= 4) {
    uint32_t p, q, r, s;
    memcpy(&p, x, 4);
    memcpy(&q, y, 4);
    memcpy(&r, x + n - 4, 4);
    memcpy(&s, y + n - 4, 4);
    return ((p ^ q) | (r ^ s)) == 0;
  }
  return n == 0 ||
         (x[0] == y[0] && x[n / 2] == y[n / 2] && x[n - 1] == y[n - 1]);
}

#endif
