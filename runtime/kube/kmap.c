/* kmap.c - string -> string hash map (see kmap.h). */
#include "kube/kmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h;
}

static void grow(amc_kmap_t *m) {
  size_t n = m->nslots ? m->nslots * 2 : 64;
  amc_kmap_entry_t **slots = calloc(n, sizeof *slots);
  if (!slots)
    abort();
  for (size_t i = 0; i < m->nslots; i++) {
    amc_kmap_entry_t *e = m->slots[i];
    while (e) {
      amc_kmap_entry_t *next = e->next;
      size_t j = hash(e->key) & (n - 1);
      e->next = slots[j];
      slots[j] = e;
      e = next;
    }
  }
  free(m->slots);
  m->slots = slots;
  m->nslots = n;
}

static amc_kmap_entry_t **find(const amc_kmap_t *m, const char *key) {
  if (!m->nslots)
    return NULL;
  amc_kmap_entry_t **pp = &m->slots[hash(key) & (m->nslots - 1)];
  while (*pp && strcmp((*pp)->key, key) != 0)
    pp = &(*pp)->next;
  return pp;
}

const char *amc_kmap_get(const amc_kmap_t *m, const char *key) {
  amc_kmap_entry_t **pp = find(m, key);
  return pp && *pp ? (*pp)->val : NULL;
}

void amc_kmap_set(amc_kmap_t *m, const char *key, const char *val) {
  amc_kmap_entry_t **pp = find(m, key);
  if (pp && *pp) {
    char *v = strdup(val);
    if (!v)
      abort();
    free((*pp)->val);
    (*pp)->val = v;
    return;
  }
  if (m->count + 1 > m->nslots * 3 / 4)
    grow(m);
  amc_kmap_entry_t *e = malloc(sizeof *e);
  if (!e)
    abort();
  e->key = strdup(key);
  e->val = strdup(val);
  if (!e->key || !e->val)
    abort();
  size_t j = hash(key) & (m->nslots - 1);
  e->next = m->slots[j];
  m->slots[j] = e;
  m->count++;
}

int amc_kmap_del(amc_kmap_t *m, const char *key) {
  amc_kmap_entry_t **pp = find(m, key);
  if (!pp || !*pp)
    return 0;
  amc_kmap_entry_t *e = *pp;
  *pp = e->next;
  free(e->key);
  free(e->val);
  free(e);
  m->count--;
  return 1;
}

void amc_kmap_clear(amc_kmap_t *m) {
  for (size_t i = 0; i < m->nslots; i++) {
    amc_kmap_entry_t *e = m->slots[i];
    while (e) {
      amc_kmap_entry_t *next = e->next;
      free(e->key);
      free(e->val);
      free(e);
      e = next;
    }
  }
  free(m->slots);
  m->slots = NULL;
  m->nslots = 0;
  m->count = 0;
}

const amc_kmap_entry_t *amc_kmap_next(const amc_kmap_t *m, size_t *slot,
                                      const amc_kmap_entry_t *e) {
  if (e && e->next)
    return e->next;
  size_t i = e ? *slot + 1 : *slot;
  for (; i < m->nslots; i++) {
    if (m->slots[i]) {
      *slot = i;
      return m->slots[i];
    }
  }
  *slot = m->nslots;
  return NULL;
}
