/* hash.h - FNV-1a 64, the one byte-string hash amc uses.
 *
 * amc_fnv64(p, n) hashes n bytes; amc_fnv64_update(h, p, n) continues a
 * hash (start from AMC_FNV64_INIT), so pieces can be hashed as one string;
 * amc_fnv64_str(s) hashes a NUL-terminated string.
 *
 * Its values are stored: the amc-cksum marker on every AVI object amc
 * writes is amc_fnv64 of the object's canonical JSON (translation.h), so
 * this function must never change. Other users (hash maps, memo keys,
 * change detection) only keep values in memory.
 *
 * Header-only (static inline): the callers are hot loops. */
#ifndef AMC_UTIL_HASH_H
#define AMC_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define AMC_FNV64_INIT  14695981039346656037ULL
#define AMC_FNV64_PRIME 1099511628211ULL

static inline uint64_t amc_fnv64_update(uint64_t h, const void *data,
                                        size_t n) {
  const unsigned char *p = data, *end = p + n;
  /* Eight bytes per iteration: the multiplies are a chain either way;
   * unrolling drops the loop's own instructions. */
  for (; end - p >= 8; p += 8) {
    h = (h ^ p[0]) * AMC_FNV64_PRIME;
    h = (h ^ p[1]) * AMC_FNV64_PRIME;
    h = (h ^ p[2]) * AMC_FNV64_PRIME;
    h = (h ^ p[3]) * AMC_FNV64_PRIME;
    h = (h ^ p[4]) * AMC_FNV64_PRIME;
    h = (h ^ p[5]) * AMC_FNV64_PRIME;
    h = (h ^ p[6]) * AMC_FNV64_PRIME;
    h = (h ^ p[7]) * AMC_FNV64_PRIME;
  }
  for (; p < end; p++)
    h = (h ^ *p) * AMC_FNV64_PRIME;
  return h;
}

static inline uint64_t amc_fnv64(const void *data, size_t n) {
  return amc_fnv64_update(AMC_FNV64_INIT, data, n);
}

static inline uint64_t amc_fnv64_str(const char *s) {
  uint64_t h = AMC_FNV64_INIT;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    h = (h ^ *p) * AMC_FNV64_PRIME;
  return h;
}

#endif
