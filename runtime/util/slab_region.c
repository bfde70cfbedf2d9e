/* slab_region.c - fixed-size slabs from one reserved, huge-page range.
 * See slab_region.h. */
#include "util/slab_region.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

struct amc_slab_region {
  void *map; /* the mapping as mmap gave it (for munmap) */
  size_t map_len;
  char *base; /* AMC_SLAB_REGION_CHUNK-aligned start of the slabs */
  size_t slab_bytes;
  size_t per_chunk;     /* slabs per chunk */
  size_t n_max;         /* slabs that fit */
  size_t n_carved;      /* slabs [0, n_carved) have been handed out once */
  size_t in_use;        /* handed out and not given back */
  size_t n_free;        /* given back and not handed out again */
  uint64_t *free_bits;  /* bit i: slab i is given back */
  uint32_t *chunk_used; /* per chunk: its slabs handed out, not given back */
  uint32_t *chunk_free; /* per chunk: its slabs given back, not handed out */
  uint8_t *resident;    /* per chunk: touched since last released */
  size_t n_chunks;
};

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (!p)
    abort(); /* a few bytes per slab, once */
  return p;
}

amc_slab_region_t *amc_slab_region_new(size_t slab_bytes, size_t max_bytes) {
  const size_t chunk = AMC_SLAB_REGION_CHUNK;
  if (slab_bytes == 0 || slab_bytes % 4096 != 0 || chunk % slab_bytes != 0)
    return NULL;
  size_t n_max = (max_bytes + slab_bytes - 1) / slab_bytes;
  if (n_max == 0 || n_max > (SIZE_MAX - 2 * chunk) / slab_bytes)
    return NULL;
  size_t per_chunk = chunk / slab_bytes;
  n_max = (n_max + per_chunk - 1) / per_chunk * per_chunk; /* whole chunks */
  amc_slab_region_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->map_len = n_max * slab_bytes + chunk;
  /* MAP_NORESERVE: only what is touched counts, so a region sized for the
   * Lua state's memory cap costs address space, not memory. */
  r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r->map == MAP_FAILED) {
    free(r);
    return NULL;
  }
  uintptr_t a = ((uintptr_t)r->map + chunk - 1) & ~(uintptr_t)(chunk - 1);
  r->base = (char *)a;
  r->slab_bytes = slab_bytes;
  r->per_chunk = per_chunk;
  r->n_max = n_max;
  r->free_bits = xcalloc((n_max + 63) / 64, sizeof *r->free_bits);
  r->n_chunks = n_max / per_chunk;
  r->chunk_used = xcalloc(r->n_chunks, sizeof *r->chunk_used);
  r->chunk_free = xcalloc(r->n_chunks, sizeof *r->chunk_free);
  r->resident = xcalloc(r->n_chunks, 1);
  /* Advice only: refused where transparent huge pages are compiled out,
   * and then the range simply has small pages. */
  (void)madvise(r->base, n_max * slab_bytes, MADV_HUGEPAGE);
  return r;
}

/* A given-back slab to hand out again: the first (by address) in a chunk
 * still in memory, else the first; SIZE_MAX when none. Reusing a chunk in
 * memory costs nothing, while a released one is faulted in again whole. */
static size_t pick_free(const amc_slab_region_t *r) {
  size_t words = (r->n_carved + 63) / 64, first = SIZE_MAX;
  for (size_t w = 0; w < words; w++) {
    uint64_t bits = r->free_bits[w];
    while (bits) {
      size_t i = w * 64 + (size_t)__builtin_ctzll(bits);
      if (r->resident[i / r->per_chunk])
        return i;
      if (first == SIZE_MAX)
        first = i;
      /* a released chunk: none of it in use, skip the rest of it */
      size_t next = (i / r->per_chunk + 1) * r->per_chunk;
      if (next >= (w + 1) * 64)
        break;
      bits &= ~((UINT64_C(1) << (next % 64)) - 1);
    }
  }
  return first;
}

void *amc_slab_region_get(amc_slab_region_t *r) {
  size_t i;
  if (r->n_free) {
    i = pick_free(r);
    r->free_bits[i / 64] &= ~(UINT64_C(1) << (i % 64));
    r->n_free--;
    r->chunk_free[i / r->per_chunk]--;
  } else if (r->n_carved < r->n_max) {
    i = r->n_carved++;
  } else {
    return NULL;
  }
  r->chunk_used[i / r->per_chunk]++;
  r->resident[i / r->per_chunk] = 1;
  r->in_use++;
  return r->base + i * r->slab_bytes;
}

void amc_slab_region_put(amc_slab_region_t *r, void *slab) {
  size_t i = (size_t)((char *)slab - r->base) / r->slab_bytes;
  size_t c = i / r->per_chunk;
  r->free_bits[i / 64] |= UINT64_C(1) << (i % 64);
  r->n_free++;
  r->chunk_free[c]++;
  r->in_use--;
  /* Memory goes back a whole chunk at a time: releasing part of a huge
   * page would split it (and the kernel's khugepaged may put it together
   * again later, resident whole). */
  if (--r->chunk_used[c] == 0) {
    (void)madvise(r->base + c * AMC_SLAB_REGION_CHUNK, AMC_SLAB_REGION_CHUNK,
                  MADV_DONTNEED);
    r->resident[c] = 0;
  }
}

/* Writes every page of chunk c (none of it in use): one fault for a huge
 * page, or one per page where there are none. */
static void touch_chunk(amc_slab_region_t *r, size_t c) {
  volatile char *p = r->base + c * AMC_SLAB_REGION_CHUNK;
  for (size_t off = 0; off < AMC_SLAB_REGION_CHUNK; off += 4096)
    p[off] = 0;
  r->resident[c] = 1;
}

int amc_slab_region_prefault(amc_slab_region_t *r, size_t n) {
  if (!r)
    return 0;
  int touched = 0;
  for (;;) {
    /* What get() hands out next: free slabs in chunks in memory, then
     * those of released chunks, then never used ones. */
    size_t room = 0, released = SIZE_MAX;
    for (size_t c = 0; c < r->n_chunks; c++) {
      if (r->resident[c])
        room += r->chunk_free[c];
      else if (r->chunk_free[c] && released == SIZE_MAX)
        released = c;
    }
    if (room >= n)
      return touched;
    if (released != SIZE_MAX) {
      touch_chunk(r, released);
      touched = 1;
      continue;
    }
    size_t left = r->n_max - r->n_carved, c = r->n_carved / r->per_chunk;
    size_t in_chunk = r->per_chunk - r->n_carved % r->per_chunk;
    if (left == 0)
      return touched;
    if (!r->resident[c]) { /* the carving reaches a chunk not touched */
      touch_chunk(r, c);
      touched = 1;
    }
    room += in_chunk;
    if (room >= n || in_chunk == left)
      return touched;
    if (!r->resident[c + 1]) {
      touch_chunk(r, c + 1);
      touched = 1;
    }
    return touched;
  }
}

int amc_slab_region_owns(const amc_slab_region_t *r, const void *p) {
  if (!r)
    return 0;
  uintptr_t a = (uintptr_t)p, b = (uintptr_t)r->base;
  return a >= b && a - b < r->n_max * r->slab_bytes;
}

size_t amc_slab_region_in_use(const amc_slab_region_t *r) {
  return r ? r->in_use : 0;
}

void amc_slab_region_free(amc_slab_region_t *r) {
  if (!r)
    return;
  munmap(r->map, r->map_len);
  free(r->free_bits);
  free(r->chunk_used);
  free(r->chunk_free);
  free(r->resident);
  free(r);
}
