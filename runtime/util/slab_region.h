/* slab_region.h - fixed-size slabs from one reserved, huge-page range.
 *
 * The rules engine's Lua allocator carves its small blocks out of 64 KiB
 * slabs (rules_engine.c). A translation allocates megabytes of short-lived
 * tables; with slabs from malloc, the heap it runs through is backed by
 * 4 KiB pages: one page fault per fresh page (~3,200 in `amc translate` of
 * the 1k mesh) and one TLB entry per page touched. A region hands out
 * slabs from a single address range reserved up front (mmap, no memory
 * committed until touched) and advised MADV_HUGEPAGE, so that with
 * transparent huge pages in "madvise" or "always" mode the kernel backs
 * it with 2 MiB pages: a fault per 2 MiB, and a few TLB entries for the
 * whole Lua heap. Where huge pages are off it behaves as plain pages.
 *
 * Slabs are carved in address order. Given-back slabs are handed out
 * again before the range grows, first those in a chunk (the 2 MiB a huge
 * page covers) that is still in memory. Memory returns to the system a
 * chunk at a time: when the last slab of a chunk in use is given back,
 * the whole chunk is released (MADV_DONTNEED; it reads as zeros when
 * touched again). Releasing part of a huge page would split it, and the
 * kernel's khugepaged may later put it together again, resident whole:
 * so a chunk with one slab in use stays in memory whole. The range never
 * moves and never grows: when it is used up (or could not be reserved)
 * amc_slab_region_get returns NULL and the caller falls back to malloc,
 * telling the two apart with amc_slab_region_owns.
 *
 * Memory: the region owns its range and its table of released slabs;
 * slabs belong to the region (never free() one). Not thread-safe: one
 * region per Lua state, used on the thread that runs it. */
#ifndef AMC_UTIL_SLAB_REGION_H
#define AMC_UTIL_SLAB_REGION_H

#include <stddef.h>

/* What a huge page covers (x86-64, arm64 with 4 KiB pages): the unit in
 * which the range is aligned and memory is released. */
#define AMC_SLAB_REGION_CHUNK ((size_t)2 << 20)

typedef struct amc_slab_region amc_slab_region_t;

/* Reserves room for at least `max_bytes` (rounded up to whole chunks) of
 * `slab_bytes` slabs (a multiple of 4096 dividing AMC_SLAB_REGION_CHUNK).
 * Returns NULL when the range
 * cannot be reserved (address space limits, strict overcommit) or out of
 * memory: the caller then uses malloc. */
amc_slab_region_t *amc_slab_region_new(size_t slab_bytes, size_t max_bytes);

/* A slab of slab_bytes, aligned to slab_bytes: a given-back one if any
 * (see above), else the next never used one. Its contents are undefined.
 * NULL when the range is used up. */
void *amc_slab_region_get(amc_slab_region_t *r);

/* Gives a slab back; when it was the last one in use in its chunk, the
 * chunk's memory is released to the system now. `slab` must come from
 * amc_slab_region_get on this region and not be given back already. */
void amc_slab_region_put(amc_slab_region_t *r, void *slab);

/* Makes sure the next `n` slabs amc_slab_region_get hands out are in
 * memory, touching (faulting in) the chunks they lie in when they are
 * not: for callers that know when a moment is idle. A fresh huge page
 * costs its zeroing (~0.2 ms), and several milliseconds on a virtual
 * machine whose host backs guest memory only when first touched; paid
 * here, not by the next allocation. n is meant to be what one operation
 * allocates, at most a chunk's worth of slabs; then no more than two
 * chunks are touched. Returns
 * 1 when it touched a chunk, else 0 (NULL region: 0). */
int amc_slab_region_prefault(amc_slab_region_t *r, size_t n);

/* Whether p points into the region's range (a slab it handed out). NULL
 * region: never. */
int amc_slab_region_owns(const amc_slab_region_t *r, const void *p);

/* Slabs handed out and not given back. */
size_t amc_slab_region_in_use(const amc_slab_region_t *r);

/* Unmaps the range (every slab with it) and frees the region. NULL: no-op. */
void amc_slab_region_free(amc_slab_region_t *r);

#endif
