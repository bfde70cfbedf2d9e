/* strmap.c - chained string hash map. */
#include "util/strmap.h"
#include "util/hash.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a 64, folded to the entry's 32 bits. */
static uint32_t hash_str(const char *s) {
  uint64_t h = amc_fnv64_str(s);
  return (uint32_t)(h ^ (h >> 32));
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (!p) {
    fputs("amc: out of memory\n", stderr);
    abort();
  }
  return p;
}

amc_strmap_entry_t *amc_strmap_find(const amc_strmap_t *m, const char *key) {
  if (m->n_buckets == 0)
    return NULL;
  uint32_t h = hash_str(key);
  for (amc_strmap_entry_t *e = m->buckets[h & (m->n_buckets - 1)]; e;
       e = e->next) {
    if (e->hash == h && strcmp(e->key, key) == 0)
      return e;
  }
  return NULL;
}

void *amc_strmap_get(const amc_strmap_t *m, const char *key) {
  amc_strmap_entry_t *e = amc_strmap_find(m, key);
  return e ? e->value : NULL;
}

static void grow(amc_strmap_t *m) {
  size_t n = m->n_buckets ? m->n_buckets * 2 : 16;
  amc_strmap_entry_t **b = xcalloc(n, sizeof *b);
  for (size_t i = 0; i < m->n_buckets; i++) {
    amc_strmap_entry_t *e = m->buckets[i];
    while (e) {
      amc_strmap_entry_t *next = e->next;
      size_t j = e->hash & (n - 1);
      e->next = b[j];
      b[j] = e;
      e = next;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->n_buckets = n;
}

amc_strmap_entry_t *amc_strmap_put(amc_strmap_t *m, const char *key,
                                   void *value, void **old) {
  amc_strmap_entry_t *e = amc_strmap_find(m, key);
  if (e) {
    if (old)
      *old = e->value;
    e->value = value;
    return e;
  }
  if (old)
    *old = NULL;
  if (m->count + 1 > m->n_buckets)
    grow(m);
  size_t len = strlen(key);
  e = xcalloc(1, offsetof(amc_strmap_entry_t, key) + len + 1);
  memcpy(e->key, key, len + 1);
  e->hash = hash_str(key);
  e->value = value;
  size_t j = e->hash & (m->n_buckets - 1);
  e->next = m->buckets[j];
  m->buckets[j] = e;
  m->count++;
  return e;
}

void amc_strmap_set_str(amc_strmap_t *m, const char *key, const char *val) {
  size_t len = strlen(val);
  char *copy = xcalloc(1, len + 1);
  memcpy(copy, val, len);
  void *old = NULL;
  amc_strmap_put(m, key, copy, &old);
  free(old);
}

void *amc_strmap_del(amc_strmap_t *m, const char *key) {
  if (m->n_buckets == 0)
    return NULL;
  uint32_t h = hash_str(key);
  amc_strmap_entry_t **pp = &m->buckets[h & (m->n_buckets - 1)];
  for (; *pp; pp = &(*pp)->next) {
    amc_strmap_entry_t *e = *pp;
    if (e->hash == h && strcmp(e->key, key) == 0) {
      void *v = e->value;
      *pp = e->next;
      free(e);
      m->count--;
      return v;
    }
  }
  return NULL;
}

void amc_strmap_foreach(amc_strmap_t *m, amc_strmap_visit_fn fn, void *data) {
  for (size_t i = 0; i < m->n_buckets; i++) {
    amc_strmap_entry_t **pp = &m->buckets[i];
    while (*pp) {
      amc_strmap_entry_t *e = *pp;
      if (fn(e->key, e->value, data)) {
        *pp = e->next;
        free(e);
        m->count--;
      } else {
        pp = &e->next;
      }
    }
  }
}

void amc_strmap_clear(amc_strmap_t *m, void (*free_value)(void *)) {
  for (size_t i = 0; i < m->n_buckets; i++) {
    amc_strmap_entry_t *e = m->buckets[i];
    while (e) {
      amc_strmap_entry_t *next = e->next;
      if (free_value && e->value)
        free_value(e->value);
      free(e);
      e = next;
    }
  }
  free(m->buckets);
  m->buckets = NULL;
  m->n_buckets = 0;
  m->count = 0;
}
