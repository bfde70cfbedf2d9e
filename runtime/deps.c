/* deps.c - dependency index from recorded reads. */
#include "deps.h"

#include "util/buf.h"
#include "util/strmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Index entries are strings with a one-letter type and '\x1f' separators:
 *   "o\x1fkind\x1fns\x1fname"  one object (rt.get)
 *   "n\x1fkind\x1fns"          a list of one namespace (rt.list(kind, {ns}))
 *   "a\x1fkind"                a list of all namespaces
 * Each maps to a set (strmap with NULL values) of keys. */
#define SEP "\x1f"

typedef struct {
  char **entries; /* index entries this key's reads created */
  size_t n;
} key_reads_t;

struct amc_deps {
  char *root_kind;
  amc_strmap_t by_key;   /* key -> key_reads_t */
  amc_strmap_t by_entry; /* index entry -> amc_strmap_t* (set of keys) */
};

static void read_entry(amc_buf_t *b, const amc_read_t *r) {
  amc_buf_reset(b);
  const char *ns = r->namespace_ ? r->namespace_ : "";
  if (r->name)
    amc_buf_printf(b, "o" SEP "%s" SEP "%s" SEP "%s", r->kind, ns, r->name);
  else if (r->namespace_)
    amc_buf_printf(b, "n" SEP "%s" SEP "%s", r->kind, ns);
  else
    amc_buf_printf(b, "a" SEP "%s", r->kind);
}

amc_deps_t *amc_deps_new(const char *root_kind) {
  amc_deps_t *d = calloc(1, sizeof *d);
  if (!d)
    return NULL;
  d->root_kind = strdup(root_kind);
  if (!d->root_kind) {
    free(d);
    return NULL;
  }
  return d;
}

static void free_set(void *p) {
  amc_strmap_t *s = p;
  amc_strmap_clear(s, NULL);
  free(s);
}

static void free_key_reads(void *p) {
  key_reads_t *kr = p;
  for (size_t i = 0; i < kr->n; i++)
    free(kr->entries[i]);
  free(kr->entries);
  free(kr);
}

void amc_deps_free(amc_deps_t *d) {
  if (!d)
    return;
  amc_strmap_clear(&d->by_key, free_key_reads);
  amc_strmap_clear(&d->by_entry, free_set);
  free(d->root_kind);
  free(d);
}

int amc_deps_key(const amc_deps_t *d, const char *ns, const char *name,
                 char *out, size_t outlen) {
  return snprintf(out, outlen, "%s/%s/%s", d->root_kind, ns ? ns : "", name);
}

static void unlink_key(amc_deps_t *d, const char *key) {
  key_reads_t *kr = amc_strmap_del(&d->by_key, key);
  if (!kr)
    return;
  for (size_t i = 0; i < kr->n; i++) {
    amc_strmap_t *set = amc_strmap_get(&d->by_entry, kr->entries[i]);
    if (!set)
      continue;
    amc_strmap_del(set, key);
    if (set->count == 0) {
      amc_strmap_del(&d->by_entry, kr->entries[i]);
      free_set(set);
    }
  }
  free_key_reads(kr);
}

void amc_deps_update(amc_deps_t *d, const char *key, const amc_read_t *reads,
                     size_t n) {
  unlink_key(d, key);
  key_reads_t *kr = calloc(1, sizeof *kr);
  if (!kr)
    abort();
  kr->entries = calloc(n ? n : 1, sizeof *kr->entries);
  if (!kr->entries)
    abort();
  amc_buf_t b = AMC_BUF_INIT;
  for (size_t i = 0; i < n; i++) {
    if (!reads[i].kind)
      continue;
    read_entry(&b, &reads[i]);
    amc_strmap_t *set = amc_strmap_get(&d->by_entry, b.data);
    if (!set) {
      set = calloc(1, sizeof *set);
      if (!set)
        abort();
      amc_strmap_put(&d->by_entry, b.data, set, NULL);
    }
    if (amc_strmap_find(set, key))
      continue; /* duplicate read */
    amc_strmap_put(set, key, NULL, NULL);
    kr->entries[kr->n++] = amc_buf_steal(&b);
  }
  amc_buf_free(&b);
  amc_strmap_put(&d->by_key, key, kr, NULL);
}

void amc_deps_remove(amc_deps_t *d, const char *key) {
  unlink_key(d, key);
}

typedef struct {
  const char **keys;
  size_t n, cap;
  amc_strmap_t seen;
} collect_t;

static void collect_one(collect_t *c, const char *key) {
  if (amc_strmap_find(&c->seen, key))
    return;
  amc_strmap_entry_t *e = amc_strmap_put(&c->seen, key, NULL, NULL);
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 16;
    c->keys = realloc(c->keys, c->cap * sizeof *c->keys);
    if (!c->keys)
      abort();
  }
  c->keys[c->n++] = e->key; /* interned in `seen` */
}

static int collect_visit(const char *key, void *value, void *data) {
  (void)value;
  collect_one(data, key);
  return 0;
}

static void collect_entry(amc_deps_t *d, collect_t *c, const char *entry) {
  amc_strmap_t *set = amc_strmap_get(&d->by_entry, entry);
  if (set)
    amc_strmap_foreach(set, collect_visit, c);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t amc_deps_affected(amc_deps_t *d, const char *kind, const char *ns,
                         const char *name, amc_deps_key_fn fn, void *data) {
  if (!ns)
    ns = "";
  collect_t c = {0};
  amc_buf_t b = AMC_BUF_INIT;
  if (strcmp(kind, d->root_kind) == 0) {
    amc_buf_printf(&b, "%s/%s/%s", d->root_kind, ns, name);
    collect_one(&c, b.data);
  }
  amc_buf_reset(&b);
  amc_buf_printf(&b, "o" SEP "%s" SEP "%s" SEP "%s", kind, ns, name);
  collect_entry(d, &c, b.data);
  amc_buf_reset(&b);
  amc_buf_printf(&b, "n" SEP "%s" SEP "%s", kind, ns);
  collect_entry(d, &c, b.data);
  amc_buf_reset(&b);
  amc_buf_printf(&b, "a" SEP "%s", kind);
  collect_entry(d, &c, b.data);
  amc_buf_free(&b);
  if (c.n > 1)
    qsort(c.keys, c.n, sizeof *c.keys, cmp_str);
  for (size_t i = 0; i < c.n; i++)
    fn(c.keys[i], data);
  size_t n = c.n;
  free(c.keys);
  amc_strmap_clear(&c.seen, NULL);
  return n;
}

size_t amc_deps_count(const amc_deps_t *d) {
  return d->by_key.count;
}

typedef struct {
  amc_deps_key_fn fn;
  void *data;
} foreach_t;

static int foreach_visit(const char *key, void *value, void *data) {
  (void)value;
  foreach_t *f = data;
  f->fn(key, f->data);
  return 0;
}

void amc_deps_foreach_key(amc_deps_t *d, amc_deps_key_fn fn, void *data) {
  foreach_t f = {fn, data};
  amc_strmap_foreach(&d->by_key, foreach_visit, &f);
}
