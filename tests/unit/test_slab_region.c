/* test_slab_region.c - util/slab_region: slabs from one reserved range,
 * advised for huge pages, released to the system when given back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/slab_region.h"

#define SLAB (64 * 1024)

/* Pages of [p, p + n) the kernel has in memory now. */
static size_t resident_pages(const void *p, size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE), count = 0;
  unsigned char vec[SLAB / 4096];
  assert_true(n / page <= sizeof vec);
  assert_int_equal(mincore((void *)p, n, vec), 0);
  for (size_t i = 0; i < n / page; i++)
    count += vec[i] & 1;
  return count;
}

static void test_sizes_refused(void **state) {
  (void)state;
  assert_null(amc_slab_region_new(0, SLAB));
  assert_null(amc_slab_region_new(1000, SLAB));     /* not whole pages */
  assert_null(amc_slab_region_new(3 * 4096, SLAB)); /* not a chunk divisor */
  assert_null(amc_slab_region_new(SLAB, 0));
  assert_false(amc_slab_region_owns(NULL, &state));
  assert_int_equal(amc_slab_region_in_use(NULL), 0);
  amc_slab_region_free(NULL);
}

#define PER_CHUNK ((int)(AMC_SLAB_REGION_CHUNK / SLAB))

/* Distinct, aligned slabs inside the range, in address order, until the
 * room asked for is used up (rounded up to whole chunks). */
static void test_carves_until_full(void **state) {
  (void)state;
  amc_slab_region_t *r = amc_slab_region_new(SLAB, 3 * SLAB + 1);
  assert_non_null(r);
  static char *s[PER_CHUNK];
  for (int i = 0; i < PER_CHUNK; i++) {
    s[i] = amc_slab_region_get(r);
    assert_non_null(s[i]);
    assert_true(amc_slab_region_owns(r, s[i]));
    assert_true(amc_slab_region_owns(r, s[i] + SLAB - 1));
    assert_int_equal((uintptr_t)s[i] % SLAB, 0);
    memset(s[i], i + 1, SLAB); /* all of it is usable */
  }
  assert_int_equal((uintptr_t)s[0] % AMC_SLAB_REGION_CHUNK, 0);
  for (int i = 1; i < PER_CHUNK; i++)
    assert_ptr_equal(s[i], s[i - 1] + SLAB);
  assert_null(amc_slab_region_get(r));
  assert_int_equal(amc_slab_region_in_use(r), PER_CHUNK);
  assert_false(amc_slab_region_owns(r, s[PER_CHUNK - 1] + SLAB));
  assert_false(amc_slab_region_owns(r, s[0] - 1));
  int local;
  assert_false(amc_slab_region_owns(r, &local));
  for (int i = 0; i < PER_CHUNK; i++)
    assert_int_equal(s[i][SLAB / 2], (char)(i + 1)); /* no overlap */
  amc_slab_region_free(r);
}

/* Memory goes back a whole chunk at a time: a chunk stays resident while
 * one of its slabs is in use, and is released (not resident, zeros when
 * touched again) when its last one is given back. */
static void test_put_releases_whole_chunks(void **state) {
  (void)state;
  amc_slab_region_t *r = amc_slab_region_new(SLAB, AMC_SLAB_REGION_CHUNK);
  assert_non_null(r);
  char *a = amc_slab_region_get(r), *b = amc_slab_region_get(r);
  memset(a, 0xab, SLAB);
  memset(b, 0xcd, SLAB);
  size_t pages = SLAB / (size_t)sysconf(_SC_PAGESIZE);
  amc_slab_region_put(r, a);
  assert_int_equal(amc_slab_region_in_use(r), 1);
  assert_int_equal(resident_pages(a, SLAB), pages); /* b holds the chunk */
  assert_int_equal((unsigned char)a[100], 0xab);
  amc_slab_region_put(r, b);
  assert_int_equal(amc_slab_region_in_use(r), 0);
  assert_int_equal(resident_pages(a, SLAB), 0);
  assert_int_equal(resident_pages(b, SLAB), 0);
  /* handed out again, first by address, before the range grows */
  assert_ptr_equal(amc_slab_region_get(r), a);
  assert_ptr_equal(amc_slab_region_get(r), b);
  for (size_t i = 0; i < SLAB; i += 4096)
    assert_int_equal(a[i] | b[i], 0);
  assert_ptr_equal(amc_slab_region_get(r), b + SLAB);
  amc_slab_region_free(r);
}

/* Given-back slabs in a chunk still in memory are handed out before
 * those of a released chunk (which would be faulted in again whole). */
static void test_reuses_resident_chunks_first(void **state) {
  (void)state;
  amc_slab_region_t *r = amc_slab_region_new(SLAB, 2 * AMC_SLAB_REGION_CHUNK);
  assert_non_null(r);
  static char *s[2 * PER_CHUNK];
  for (int i = 0; i < 2 * PER_CHUNK; i++) {
    s[i] = amc_slab_region_get(r);
    s[i][0] = 1;
  }
  assert_null(amc_slab_region_get(r));
  for (int i = 0; i < PER_CHUNK; i++) /* the first chunk: released */
    amc_slab_region_put(r, s[i]);
  amc_slab_region_put(r, s[PER_CHUNK + 5]); /* the second stays */
  amc_slab_region_put(r, s[PER_CHUNK + 2]);
  assert_int_equal(resident_pages(s[0], SLAB), 0);
  assert_int_equal(resident_pages(s[PER_CHUNK + 2], SLAB),
                   SLAB / (size_t)sysconf(_SC_PAGESIZE));
  assert_ptr_equal(amc_slab_region_get(r), s[PER_CHUNK + 2]);
  assert_ptr_equal(amc_slab_region_get(r), s[PER_CHUNK + 5]);
  for (int i = 0; i < PER_CHUNK; i++) /* then the released chunk's */
    assert_ptr_equal(amc_slab_region_get(r), s[i]);
  assert_null(amc_slab_region_get(r));
  assert_int_equal(amc_slab_region_in_use(r), 2 * PER_CHUNK);
  amc_slab_region_free(r);
}

/* Prefaulting: the chunks the next slabs come from are made resident
 * (nothing touched when they are already), released chunks before new
 * ones, as get() will hand them out. */
static void test_prefault(void **state) {
  (void)state;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  amc_slab_region_t *r = amc_slab_region_new(SLAB, 3 * AMC_SLAB_REGION_CHUNK);
  assert_non_null(r);
  assert_int_equal(amc_slab_region_prefault(NULL, 4), 0);
  char *first = amc_slab_region_get(r); /* chunk 0 in use */
  first[0] = 1;
  amc_slab_region_put(r, first); /* released again */
  assert_int_equal(resident_pages(first, SLAB), 0);
  /* the next slab is the released chunk's: it is touched, not chunk 1 */
  assert_int_equal(amc_slab_region_prefault(r, 4), 1);
  assert_int_equal(resident_pages(first, SLAB), SLAB / page);
  assert_int_equal(amc_slab_region_prefault(r, 4), 0); /* room already */
  {
    /* a chunk made resident by prefaulting (none of it in use) is handed
     * out before a released one, even one at a lower address */
    amc_slab_region_t *q = amc_slab_region_new(SLAB, 2 * AMC_SLAB_REGION_CHUNK);
    static char *t[2 * PER_CHUNK];
    for (int i = 0; i < 2 * PER_CHUNK; i++)
      t[i] = amc_slab_region_get(q);
    for (int i = PER_CHUNK; i < 2 * PER_CHUNK; i++)
      amc_slab_region_put(q, t[i]);                      /* chunk 1 released */
    assert_int_equal(amc_slab_region_prefault(q, 4), 1); /* chunk 1 back */
    for (int i = 0; i < PER_CHUNK; i++)
      amc_slab_region_put(q, t[i]); /* chunk 0 released */
    assert_int_equal(resident_pages(t[0], SLAB), 0);
    assert_ptr_equal(amc_slab_region_get(q), t[PER_CHUNK]);
    amc_slab_region_free(q);
  }
  char *chunk1 = first + AMC_SLAB_REGION_CHUNK;
  assert_int_equal(resident_pages(chunk1, SLAB), 0);
  /* take all of chunk 0: the next slabs are carved from chunk 1 */
  for (int i = 0; i < PER_CHUNK; i++)
    assert_true((char *)amc_slab_region_get(r) < chunk1);
  assert_int_equal(amc_slab_region_prefault(r, 4), 1);
  assert_int_equal(resident_pages(chunk1, SLAB), SLAB / page);
  assert_int_equal(resident_pages(chunk1 + AMC_SLAB_REGION_CHUNK, SLAB), 0);
  /* near the end of chunk 1, room for 4 reaches into chunk 2 */
  for (int i = 0; i < PER_CHUNK - 2; i++)
    assert_true((char *)amc_slab_region_get(r) <
                chunk1 + AMC_SLAB_REGION_CHUNK);
  assert_int_equal(amc_slab_region_prefault(r, 4), 1);
  assert_int_equal(resident_pages(chunk1 + AMC_SLAB_REGION_CHUNK, SLAB),
                   SLAB / page);
  amc_slab_region_free(r);
}

/* Many chunks given back and taken again. */
static void test_many_released(void **state) {
  (void)state;
  enum { N = 300 };
  amc_slab_region_t *r = amc_slab_region_new(SLAB, N * SLAB);
  assert_non_null(r);
  static char *s[N];
  for (int i = 0; i < N; i++) {
    s[i] = amc_slab_region_get(r);
    s[i][0] = 1;
  }
  for (int i = N - 1; i >= 0; i--)
    amc_slab_region_put(r, s[i]);
  assert_int_equal(amc_slab_region_in_use(r), 0);
  for (int i = 0; i < N; i++)
    assert_ptr_equal(amc_slab_region_get(r), s[i]);
  amc_slab_region_free(r);
}

/* The range carries the huge-page advice where the kernel has
 * transparent huge pages ("hg" in its VmFlags). */
static void test_advised_huge(void **state) {
  (void)state;
  if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) {
    skip();
  }
  amc_slab_region_t *r = amc_slab_region_new(SLAB, 64 * SLAB);
  assert_non_null(r);
  uintptr_t p = (uintptr_t)amc_slab_region_get(r);
  FILE *f = fopen("/proc/self/smaps", "r");
  assert_non_null(f);
  char line[512];
  int inside = 0, advised = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') &&
        line[strspn(line, "0123456789abcdef")] == '-') {
      inside = p >= lo && p < hi;
    } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
      advised = strstr(line, " hg") != NULL;
    }
  }
  fclose(f);
  assert_true(advised);
  amc_slab_region_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes_refused),
      cmocka_unit_test(test_carves_until_full),
      cmocka_unit_test(test_put_releases_whole_chunks),
      cmocka_unit_test(test_reuses_resident_chunks_first),
      cmocka_unit_test(test_prefault),
      cmocka_unit_test(test_many_released),
      cmocka_unit_test(test_advised_huge),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
