/* deps.c - dependency index from recorded reads. */
#include "deps.h"

#include "json.h"
#include "util/buf.h"
#include "util/strmap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Index entries are strings with a one-letter type and '\x1f' separators:
 *   "o\x1fkind\x1fns\x1fname"  one object (rt.get)
 *   "n\x1fkind\x1fns"          a list of one namespace (rt.list(kind, {ns}))
 *   "a\x1fkind"                a list of all namespaces
 *   "f\x1fkind\x1fns\x1fpath\x1fvalue"  a filtered list of one namespace
 *   "F\x1fkind\x1fpath\x1fvalue"        a filtered list of all namespaces
 * where path is "f:spec.gateways" (field) or "l:<label key>" (label).
 * Each maps to the set of keys whose last translation made that read.
 *
 * Memory: an index entry is read by one key in most meshes (a
 * VirtualService by its gateway), so a set is a small array of key
 * pointers with the first key inline, not a hash map. The keys are the
 * interned copies held by `by_key` (they live until unlink_key, which
 * takes the key out of its sets first), and a key's reads point at its
 * sets, whose `entry` is by_entry's copy of the index string. */
#define SEP "\x1f"

typedef struct {
  const char *entry; /* by_entry's copy of the index entry */
  uint32_t n, cap;   /* keys, and room in `many` (0: only `one`) */
  union {
    const char *one;   /* n <= 1 and cap == 0 */
    const char **many; /* cap > 0 */
  } k;
} keyset_t;

typedef struct {
  keyset_t **sets; /* the sets this key's reads put it in */
  size_t n;
} key_reads_t;

struct amc_deps {
  char *root_kind;
  amc_strmap_t by_key;   /* key -> key_reads_t */
  amc_strmap_t by_entry; /* index entry -> keyset_t */
  amc_strmap_t paths;    /* kind -> amc_strmap_t* (set of paths filtered
                            on); never shrinks (a few per kind) */
};

static const char *set_key(const keyset_t *s, size_t i) {
  return s->cap ? s->k.many[i] : s->k.one;
}

static void set_add(keyset_t *s, const char *key) {
  if (s->n == 0 && s->cap == 0) {
    s->k.one = key;
    s->n = 1;
    return;
  }
  if (s->cap == 0) {
    const char **v = malloc(4 * sizeof *v);
    if (!v)
      abort();
    v[0] = s->k.one;
    s->k.many = v;
    s->cap = 4;
  } else if (s->n == s->cap) {
    const char **v = realloc(s->k.many, 2 * s->cap * sizeof *v);
    if (!v)
      abort();
    s->k.many = v;
    s->cap *= 2;
  }
  s->k.many[s->n++] = key;
}

/* Removes `key` (an interned pointer: compared by address). */
static void set_del(keyset_t *s, const char *key) {
  if (s->cap == 0) {
    if (s->n == 1 && s->k.one == key)
      s->n = 0;
    return;
  }
  for (uint32_t i = 0; i < s->n; i++) {
    if (s->k.many[i] == key) {
      s->k.many[i] = s->k.many[--s->n];
      return;
    }
  }
}

static void free_keyset(void *p) {
  keyset_t *s = p;
  if (s->cap)
    free(s->k.many);
  free(s);
}

static void read_path(amc_buf_t *b, const amc_read_t *r) {
  amc_buf_puts(b, r->field ? "f:" : "l:");
  amc_buf_puts(b, r->field ? r->field : r->label);
}

/* Appends SEP then s (puts, not printf: this runs for every read of every
 * translated key). */
static void put_sep(amc_buf_t *b, const char *s) {
  amc_buf_puts(b, SEP);
  amc_buf_puts(b, s);
}

static void read_entry(amc_buf_t *b, const amc_read_t *r) {
  amc_buf_reset(b);
  const char *ns = r->namespace_ ? r->namespace_ : "";
  if (!r->name && r->value && (r->field || r->label)) {
    amc_buf_puts(b, r->namespace_ ? "f" : "F");
    put_sep(b, r->kind);
    if (r->namespace_)
      put_sep(b, ns);
    amc_buf_puts(b, SEP);
    read_path(b, r);
    put_sep(b, r->value);
  } else if (r->name) {
    amc_buf_putc(b, 'o');
    put_sep(b, r->kind);
    put_sep(b, ns);
    put_sep(b, r->name);
  } else if (r->namespace_) {
    amc_buf_putc(b, 'n');
    put_sep(b, r->kind);
    put_sep(b, ns);
  } else {
    amc_buf_putc(b, 'a');
    put_sep(b, r->kind);
  }
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
  free(kr->sets);
  free(kr);
}

void amc_deps_free(amc_deps_t *d) {
  if (!d)
    return;
  amc_strmap_clear(&d->by_key, free_key_reads);
  amc_strmap_clear(&d->by_entry, free_keyset);
  amc_strmap_clear(&d->paths, free_set);
  free(d->root_kind);
  free(d);
}

int amc_deps_key(const amc_deps_t *d, const char *ns, const char *name,
                 char *out, size_t outlen) {
  return snprintf(out, outlen, "%s/%s/%s", d->root_kind, ns ? ns : "", name);
}

/* Remembers that `r` filters its kind on its path. */
static void note_path(amc_deps_t *d, amc_buf_t *tmp, const amc_read_t *r) {
  amc_strmap_t *set = amc_strmap_get(&d->paths, r->kind);
  if (!set) {
    set = calloc(1, sizeof *set);
    if (!set)
      abort();
    amc_strmap_put(&d->paths, r->kind, set, NULL);
  }
  amc_buf_reset(tmp);
  read_path(tmp, r);
  if (!amc_strmap_find(set, tmp->data))
    amc_strmap_put(set, tmp->data, NULL, NULL);
}

static void unlink_key(amc_deps_t *d, const char *key) {
  amc_strmap_entry_t *ke = amc_strmap_find(&d->by_key, key);
  if (!ke)
    return;
  key_reads_t *kr = ke->value;
  for (size_t i = 0; i < kr->n; i++) {
    keyset_t *set = kr->sets[i];
    set_del(set, ke->key);
    if (set->n == 0) {
      amc_strmap_del(&d->by_entry, set->entry);
      free_keyset(set);
    }
  }
  amc_strmap_del(&d->by_key, key); /* ke->key goes only now */
  free_key_reads(kr);
}

/* 1 when `reads` make exactly the entries `key` has (the usual case when a
 * key is translated again after an unrelated change): nothing to update. */
static int same_reads(amc_deps_t *d, const char *key, const amc_read_t *reads,
                      size_t n) {
  key_reads_t *kr = amc_strmap_get(&d->by_key, key);
  if (!kr)
    return 0;
  amc_buf_t b = AMC_BUF_INIT;
  size_t j = 0;
  int same = 1;
  for (size_t i = 0; i < n && same; i++) {
    if (!reads[i].kind)
      continue;
    read_entry(&b, &reads[i]);
    same = j < kr->n && strcmp(b.data, kr->sets[j]->entry) == 0;
    j++;
  }
  amc_buf_free(&b);
  return same && j == kr->n;
}

void amc_deps_update(amc_deps_t *d, const char *key, const amc_read_t *reads,
                     size_t n) {
  if (same_reads(d, key, reads, n))
    return;
  unlink_key(d, key);
  key_reads_t *kr = calloc(1, sizeof *kr);
  if (!kr)
    abort();
  kr->sets = calloc(n ? n : 1, sizeof *kr->sets);
  if (!kr->sets)
    abort();
  const char *k = amc_strmap_put(&d->by_key, key, kr, NULL)->key;
  amc_buf_t b = AMC_BUF_INIT, tmp = AMC_BUF_INIT;
  for (size_t i = 0; i < n; i++) {
    if (!reads[i].kind)
      continue;
    if (!reads[i].name && reads[i].value && (reads[i].field || reads[i].label))
      note_path(d, &tmp, &reads[i]);
    read_entry(&b, &reads[i]);
    amc_strmap_entry_t *se = amc_strmap_find(&d->by_entry, b.data);
    if (!se) {
      keyset_t *set = calloc(1, sizeof *set);
      if (!set)
        abort();
      se = amc_strmap_put(&d->by_entry, b.data, set, NULL);
      set->entry = se->key;
    }
    keyset_t *set = se->value;
    /* This key's earlier additions to a set are its last element (no
     * other key adds in between). */
    if (set->n && set_key(set, set->n - 1) == k)
      continue; /* duplicate read */
    set_add(set, k);
    kr->sets[kr->n++] = set;
  }
  amc_buf_free(&b);
  amc_buf_free(&tmp);
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

static void collect_entry(amc_deps_t *d, collect_t *c, const char *entry) {
  const keyset_t *set = amc_strmap_get(&d->by_entry, entry);
  for (size_t i = 0; set && i < set->n; i++)
    collect_one(c, set_key(set, i));
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

#define PATH_MAX_DEPTH 16

typedef struct {
  amc_deps_t *d;
  collect_t *c;
  const char *kind, *ns, *path;
  amc_buf_t b;
} filter_t;

/* amc_json_string_fn: collects the keys of filtered lists on `value`. */
static void filter_value(const char *s, size_t len, void *ud) {
  filter_t *f = ud;
  amc_buf_reset(&f->b);
  amc_buf_putc(&f->b, 'f');
  put_sep(&f->b, f->kind);
  put_sep(&f->b, f->ns);
  put_sep(&f->b, f->path);
  amc_buf_puts(&f->b, SEP);
  amc_buf_append(&f->b, s, len);
  collect_entry(f->d, f->c, f->b.data);
  amc_buf_reset(&f->b);
  amc_buf_putc(&f->b, 'F');
  put_sep(&f->b, f->kind);
  put_sep(&f->b, f->path);
  amc_buf_puts(&f->b, SEP);
  amc_buf_append(&f->b, s, len);
  collect_entry(f->d, f->c, f->b.data);
}

typedef struct {
  filter_t *f;
  const char *old_json, *new_json;
} paths_t;

void amc_deps_path_values(const char *path, const char *old_json,
                          const char *new_json,
                          void (*fn)(const char *s, size_t len, void *data),
                          void *data) {
  const char *segs[PATH_MAX_DEPTH];
  size_t depth = 0;
  char buf[256];
  if (path[0] == 'l') {
    segs[0] = "metadata";
    segs[1] = "labels";
    segs[2] = path + 2;
    depth = 3;
  } else {
    size_t len = strlen(path + 2);
    if (len == 0 || len >= sizeof buf)
      return;
    memcpy(buf, path + 2, len + 1);
    for (char *s = buf;;) {
      char *dot = strchr(s, '.');
      if (dot)
        *dot = '\0';
      if (!*s || depth == PATH_MAX_DEPTH)
        return; /* amc_store_find finds nothing on such paths */
      segs[depth++] = s;
      if (!dot)
        break;
      s = dot + 1;
    }
  }
  if (old_json)
    amc_json_strings_at(old_json, strlen(old_json), segs, depth, fn, data);
  if (new_json)
    amc_json_strings_at(new_json, strlen(new_json), segs, depth, fn, data);
}

/* Visits one path filtered on: the lists on the object's values there
 * before and after the change are affected. */
static int path_visit(const char *path, void *value, void *data) {
  (void)value;
  paths_t *p = data;
  p->f->path = path;
  amc_deps_path_values(path, p->old_json, p->new_json, filter_value, p->f);
  return 0;
}

size_t amc_deps_affected(amc_deps_t *d, const char *kind, const char *ns,
                         const char *name, const char *old_json,
                         const char *new_json, amc_deps_key_fn fn, void *data) {
  if (!ns)
    ns = "";
  collect_t c = {0};
  amc_buf_t b = AMC_BUF_INIT;
  if (strcmp(kind, d->root_kind) == 0) {
    amc_buf_puts(&b, d->root_kind);
    amc_buf_putc(&b, '/');
    amc_buf_puts(&b, ns);
    amc_buf_putc(&b, '/');
    amc_buf_puts(&b, name);
    collect_one(&c, b.data);
  }
  /* The entries read_entry makes for reads of this object. */
  amc_read_t r = {
      .kind = (char *)kind, .namespace_ = (char *)ns, .name = (char *)name};
  read_entry(&b, &r);
  collect_entry(d, &c, b.data);
  r.name = NULL;
  read_entry(&b, &r);
  collect_entry(d, &c, b.data);
  r.namespace_ = NULL;
  read_entry(&b, &r);
  collect_entry(d, &c, b.data);
  amc_buf_free(&b);
  amc_strmap_t *paths = amc_strmap_get(&d->paths, kind);
  if (paths && (old_json || new_json)) {
    filter_t f = {d, &c, kind, ns, NULL, AMC_BUF_INIT};
    paths_t p = {&f, old_json, new_json};
    amc_strmap_foreach(paths, path_visit, &p);
    amc_buf_free(&f.b);
  }
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

/* Rebuilds an amc_read_t from an index entry (see the top): `buf` is a
 * writable copy of the entry, cut in place. Returns 0, or -1 if malformed. */
static int entry_read(char *buf, amc_read_t *r) {
  char *f[6];
  size_t n = 0;
  for (char *p = buf; n < 6;) {
    f[n++] = p;
    char *s = strchr(p, SEP[0]);
    if (!s)
      break;
    *s = '\0';
    p = s + 1;
  }
  memset(r, 0, sizeof *r);
  if (n < 2)
    return -1;
  r->kind = f[1];
  switch (f[0][0]) {
  case 'o':
    if (n != 4)
      return -1;
    r->namespace_ = f[2][0] ? f[2] : NULL;
    r->name = f[3];
    return 0;
  case 'n':
    if (n != 3)
      return -1;
    r->namespace_ = f[2];
    return 0;
  case 'a':
    return n == 2 ? 0 : -1;
  case 'f':
  case 'F': {
    size_t at = f[0][0] == 'f' ? 3 : 2;
    if (n != at + 2 || strlen(f[at]) < 2)
      return -1;
    if (f[0][0] == 'f')
      r->namespace_ = f[2];
    if (f[at][0] == 'f')
      r->field = f[at] + 2;
    else
      r->label = f[at] + 2;
    r->value = f[at + 1];
    return 0;
  }
  }
  return -1;
}

size_t amc_deps_foreach_read(amc_deps_t *d, const char *key,
                             amc_deps_read_fn fn, void *data) {
  key_reads_t *kr = amc_strmap_get(&d->by_key, key);
  if (!kr)
    return 0;
  amc_buf_t b = AMC_BUF_INIT;
  size_t n = 0;
  for (size_t i = 0; i < kr->n; i++) {
    amc_buf_reset(&b);
    amc_buf_puts(&b, kr->sets[i]->entry);
    amc_read_t r;
    if (entry_read(b.data, &r) == 0) {
      fn(&r, data);
      n++;
    }
  }
  amc_buf_free(&b);
  return n;
}
