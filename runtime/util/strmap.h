/* strmap.h - a hash map from NUL-terminated strings to pointers.
 *
 * Chained buckets, FNV-1a hashing, doubling at load factor 1. The map owns a
 * copy of every key; values are borrowed (the map never frees them; use
 * amc_strmap_clear with a free function to release them).
 *
 * Iteration order is unspecified. Adding or deleting entries during
 * amc_strmap_foreach is not allowed, except deleting the entry being visited
 * (return 1 from the callback to delete it). Allocation failure aborts, like
 * util/buf.h. */
#ifndef AMC_UTIL_STRMAP_H
#define AMC_UTIL_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct amc_strmap_entry amc_strmap_entry_t;
struct amc_strmap_entry {
  amc_strmap_entry_t *next;
  void *value;
  uint32_t hash; /* 32 bits: an entry is a block of its own, keep it small */
  char key[];    /* owned by the entry */
};

typedef struct {
  amc_strmap_entry_t **buckets;
  size_t n_buckets; /* 0 or a power of two */
  size_t count;
} amc_strmap_t;

#define AMC_STRMAP_INIT                                                        \
  { NULL, 0, 0 }

/* Returns the value for `key`, or NULL. */
void *amc_strmap_get(const amc_strmap_t *m, const char *key);
/* Returns the entry for `key`, or NULL. Its `key` is a stable string that
 * lives as long as the entry (handy as an interned copy). */
amc_strmap_entry_t *amc_strmap_find(const amc_strmap_t *m, const char *key);
/* Sets `key` to `value`; returns the entry. *old (when non-NULL) receives
 * the previous value, or NULL if the key is new. */
amc_strmap_entry_t *amc_strmap_put(amc_strmap_t *m, const char *key,
                                   void *value, void **old);
/* Removes `key`; returns its value, or NULL if absent. */
void *amc_strmap_del(amc_strmap_t *m, const char *key);

/* Calls fn(key, value, data) for each entry; a non-zero return deletes the
 * entry just visited. */
typedef int (*amc_strmap_visit_fn)(const char *key, void *value, void *data);
void amc_strmap_foreach(amc_strmap_t *m, amc_strmap_visit_fn fn, void *data);

/* For maps whose values are malloc'd strings: sets `key` to a copy of `val`
 * (not NULL; "" is fine) and free()s the previous value. Release such a map
 * with amc_strmap_clear(m, free) and a deleted value with
 * free(amc_strmap_del(m, key)). */
void amc_strmap_set_str(amc_strmap_t *m, const char *key, const char *val);

/* Removes every entry, calling free_value(value) when non-NULL. The map is
 * reusable afterwards. */
void amc_strmap_clear(amc_strmap_t *m, void (*free_value)(void *));

#endif
