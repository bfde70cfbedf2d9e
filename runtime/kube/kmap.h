/* kmap.h - a string -> string hash map (open hashing, owned copies).
 *
 * The reflectors keep "namespace/name" -> resourceVersion for every object
 * they delivered (so a relist knows what vanished), and the status writer
 * keeps "kind/namespace/name" -> last written status. Keys and values are
 * copied in and freed by the map. */
#ifndef AMC_KUBE_KMAP_H
#define AMC_KUBE_KMAP_H

#include <stddef.h>

typedef struct amc_kmap_entry {
  char *key;
  char *val;
  struct amc_kmap_entry *next;
} amc_kmap_entry_t;

typedef struct {
  amc_kmap_entry_t **slots;
  size_t nslots;
  size_t count;
} amc_kmap_t;

#define AMC_KMAP_INIT                                                          \
  { NULL, 0, 0 }

/* Returns the value or NULL. */
const char *amc_kmap_get(const amc_kmap_t *m, const char *key);
/* Inserts or replaces (val may be "" but not NULL). */
void amc_kmap_set(amc_kmap_t *m, const char *key, const char *val);
/* Returns 1 if removed, 0 if absent. */
int amc_kmap_del(amc_kmap_t *m, const char *key);
void amc_kmap_clear(amc_kmap_t *m);
/* Iteration: start with *slot = 0, *e = NULL; returns the next entry or NULL.
 * The map must not change during iteration. */
const amc_kmap_entry_t *amc_kmap_next(const amc_kmap_t *m, size_t *slot,
                                      const amc_kmap_entry_t *e);

#endif
