/* store.c - objects by kind/namespace/name as canonical JSON.
 *
 * Layout: one chained hash table over all objects for get/put/delete, and per
 * kind a vector of the kind's objects that is sorted lazily (on the first
 * list after an unordered insert), since loads and watch relists are bulk
 * appends and lists are what rules do many times between changes. An
 * object's identity (namespace, name) lives in the entry itself, and so
 * does, when the object is created, its blob: the stored JSON,
 * resourceVersion and source. A modification writes the new blob over the
 * old one when it fits, else into a block of its own, so entries (which
 * vectors and hash chains point to) never move.
 *
 * Compression: a kind's first object of at least DICT_MIN bytes becomes
 * the kind's LZ dictionary (util/lz.h); every object of at least
 * LZ_MIN bytes after that is stored compressed against it when that saves
 * space. Objects of a kind share most of their text (keys, apiVersion,
 * label and annotation names, the usual values), so an object costs about
 * what makes it different. Decompression is a byte copy loop, cheap next
 * to the JSON decode every read does anyway.
 *
 * Field indexes (amc_store_find): per kind, per path that was asked for,
 * a hash of value -> vector of objects, built on the first lookup by
 * scanning the kind's JSON and kept current by every put and delete of
 * the kind (which re-scan only that object). Rules ask for a handful of
 * paths; a kind keeps at most MAX_INDEXES, dropping the least recently
 * used, so rules that change their paths cannot grow the store forever. */
#include "store.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util/buf.h"
#include "util/hash.h"
#include "util/lz.h"

#define DICT_MIN 64   /* bytes: smaller objects do not make a dictionary */
#define DICT_MAX 2048 /* bytes of the dictionary (compressing scans it) */
#define LZ_MIN   32   /* bytes: smaller objects are stored as they are */

typedef struct kind kind_t;

/* An object. Its kind is pub.kind (the kind_t's interned name); pub.stored
 * starts its blob: the stored JSON (body_len bytes of LZ, or when body_len
 * is 0 the JSON itself and a \0), then resourceVersion \0 and source \0
 * when present (see set_blob). The blob is either in the entry's block,
 * after ids (`room` bytes there), or a block of its own. */
typedef struct entry {
  amc_store_obj_t pub; /* first: list vectors point here */
  struct entry *next;  /* hash chain */
  uint32_t hash;       /* key_hash */
  uint32_t body_len;   /* compressed length; 0: stored as is */
  uint32_t room;       /* bytes for a blob after ids */
  char ids[];          /* namespace \0 name \0 [blob] */
} entry_t;

/* Where an in-entry blob goes. */
static char *inline_blob(entry_t *e) {
  return (char *)e->pub.name + strlen(e->pub.name) + 1;
}

/* Frees the entry's blob when it has a block of its own. */
static void blob_free(entry_t *e) {
  if (e->pub.stored && (char *)e->pub.stored != inline_blob(e))
    free((void *)e->pub.stored);
  e->pub.stored = NULL;
}

/* A field index: the objects of one kind by the strings at one path
 * (see amc_store_find). Values hash into chained buckets; each bucket is a
 * vector of objects, sorted lazily like a kind's vector. Most values are
 * one object's (a Service's name label), so a bucket of one object keeps
 * it inline and has no vector. */
typedef struct bucket {
  struct bucket *next;
  union {
    amc_store_obj_t *one;   /* cap == 0 (n <= 1) */
    amc_store_obj_t **many; /* cap > 0 */
  } o;
  uint32_t hash;
  uint32_t n, cap;
  uint32_t len;
  uint8_t sorted;
  char value[]; /* NUL-terminated */
} bucket_t;

static amc_store_obj_t **bucket_objs(bucket_t *b) {
  return b->cap ? b->o.many : &b->o.one;
}

typedef struct findex {
  struct findex *next;
  char **path;
  size_t depth;
  uint64_t used; /* s->finds at the last lookup (for eviction) */
  bucket_t **buckets;
  size_t nbuckets, nvalues;
} findex_t;

struct kind {
  amc_store_obj_t **objs;
  size_t n, cap;
  int sorted;
  findex_t *indexes;
  size_t nindexes;
  amc_lz_dict_t *lz; /* NULL until an object makes the dictionary */
  const void *dict;  /* its bytes */
  size_t dict_len;
  char name[]; /* interned: objects' pub.kind points here */
};

/* The kind of an object, from its interned kind name. */
static const kind_t *kind_of(const amc_store_obj_t *o) {
  return (const kind_t *)(o->kind - offsetof(kind_t, name));
}

struct amc_store {
  entry_t **buckets;
  size_t nbuckets, count;
  kind_t **kinds; /* sorted by name */
  const char **kind_names;
  size_t nkinds;
  uint64_t revision;
  amc_store_listener_fn listener;
  void *listener_data;
  amc_store_change_fn change_listener;
  void *change_data;
  amc_buf_t scratch;
  amc_buf_t args;   /* put's arguments, copied */
  amc_buf_t old;    /* an object's JSON before its change */
  amc_buf_t lz;     /* a JSON being compressed */
  amc_buf_t json;   /* an object's JSON for an index */
  uint64_t finds;   /* amc_store_find calls (index recency) */
  amc_buf_t values; /* an object's index values: len-prefixed strings */
  amc_buf_t values2;
};

static void index_free(struct findex *fi);

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "amc: out of memory\n");
    abort();
  }
  return p;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) {
    fprintf(stderr, "amc: out of memory\n");
    abort();
  }
  return p;
}

amc_store_t *amc_store_new(void) {
  amc_store_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->nbuckets = 256;
  s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
  if (!s->buckets) {
    free(s);
    return NULL;
  }
  return s;
}

void amc_store_free(amc_store_t *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->nbuckets; i++) {
    entry_t *e = s->buckets[i];
    while (e) {
      entry_t *next = e->next;
      blob_free(e);
      free(e);
      e = next;
    }
  }
  free(s->buckets);
  for (size_t i = 0; i < s->nkinds; i++) {
    while (s->kinds[i]->indexes) {
      findex_t *next = s->kinds[i]->indexes->next;
      index_free(s->kinds[i]->indexes);
      s->kinds[i]->indexes = next;
    }
    amc_lz_dict_free(s->kinds[i]->lz);
    free(s->kinds[i]->objs);
    free(s->kinds[i]);
  }
  free(s->kinds);
  free(s->kind_names);
  amc_buf_free(&s->scratch);
  amc_buf_free(&s->args);
  amc_buf_free(&s->old);
  amc_buf_free(&s->lz);
  amc_buf_free(&s->json);
  amc_buf_free(&s->values);
  amc_buf_free(&s->values2);
  free(s);
}

void amc_store_set_listener(amc_store_t *s, amc_store_listener_fn fn,
                            void *data) {
  s->listener = fn;
  s->listener_data = data;
}

void amc_store_set_change_listener(amc_store_t *s, amc_store_change_fn fn,
                                   void *data) {
  s->change_listener = fn;
  s->change_data = data;
}

static kind_t *find_kind(amc_store_t *s, const char *name, int create) {
  size_t lo = 0, hi = s->nkinds;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(s->kinds[mid]->name, name);
    if (c == 0)
      return s->kinds[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (!create)
    return NULL;
  size_t nl = strlen(name) + 1;
  kind_t *k = calloc(1, sizeof *k + nl);
  if (!k)
    abort();
  memcpy(k->name, name, nl);
  k->sorted = 1;
  s->kinds = xrealloc(s->kinds, (s->nkinds + 1) * sizeof *s->kinds);
  s->kind_names =
      xrealloc(s->kind_names, (s->nkinds + 1) * sizeof *s->kind_names);
  memmove(s->kinds + lo + 1, s->kinds + lo,
          (s->nkinds - lo) * sizeof *s->kinds);
  memmove(s->kind_names + lo + 1, s->kind_names + lo,
          (s->nkinds - lo) * sizeof *s->kind_names);
  s->kinds[lo] = k;
  s->kind_names[lo] = k->name;
  s->nkinds++;
  return k;
}

/* FNV-1a 64 over kind, namespace and name (with separators), folded to
 * the 32 bits an entry keeps. */
static uint32_t key_hash(const char *kind, const char *ns, const char *name) {
  static const unsigned char sep = 0xff;
  uint64_t h = AMC_FNV64_INIT;
  const char *parts[3] = {kind, ns, name};
  for (int i = 0; i < 3; i++) {
    h = amc_fnv64_update(h, parts[i], strlen(parts[i]));
    h = amc_fnv64_update(h, &sep, 1);
  }
  return (uint32_t)(h ^ (h >> 32));
}

static entry_t **find_slot(amc_store_t *s, kind_t *k, const char *ns,
                           const char *name, uint32_t h) {
  entry_t **pp = &s->buckets[h & (s->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->next) {
    entry_t *e = *pp;
    if (e->hash == h && e->pub.kind == k->name &&
        strcmp(e->pub.name, name) == 0 && strcmp(e->ids, ns) == 0)
      return pp;
  }
  return pp;
}

static void grow(amc_store_t *s) {
  size_t nb = s->nbuckets * 2;
  entry_t **b = calloc(nb, sizeof *b);
  if (!b)
    return; /* keep the longer chains */
  for (size_t i = 0; i < s->nbuckets; i++) {
    entry_t *e = s->buckets[i];
    while (e) {
      entry_t *next = e->next;
      e->next = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
      e = next;
    }
  }
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = nb;
}

/* (namespace, name) order; cluster-scoped ("") first. */
static int obj_cmp(const amc_store_obj_t *a, const amc_store_obj_t *b) {
  const char *an = a->namespace_ ? a->namespace_ : "";
  const char *bn = b->namespace_ ? b->namespace_ : "";
  int c = strcmp(an, bn);
  return c ? c : strcmp(a->name, b->name);
}

static int obj_pcmp(const void *a, const void *b) {
  return obj_cmp(*(const amc_store_obj_t *const *)a,
                 *(const amc_store_obj_t *const *)b);
}

static void kind_sort(kind_t *k) {
  if (!k->sorted) {
    qsort(k->objs, k->n, sizeof *k->objs, obj_pcmp);
    k->sorted = 1;
  }
}

/* The stored form of `json` for kind k into s->lz: its LZ when that is
 * smaller (returns the length, > 0), else nothing (returns 0: store it as
 * is). The kind's first object of DICT_MIN bytes makes the dictionary. */
static uint32_t pack(amc_store_t *s, kind_t *k, const char *json, size_t len) {
  if (!k->lz && len >= DICT_MIN) {
    k->lz = amc_lz_dict_new(json, len < DICT_MAX ? len : DICT_MAX);
    k->dict = amc_lz_dict_bytes(k->lz, &k->dict_len);
  }
  if (!k->lz || len < LZ_MIN || len > UINT32_MAX / 2)
    return 0;
  amc_buf_reset(&s->lz);
  amc_lz_compress_dict(k->lz, json, len, &s->lz);
  return s->lz.len < len ? (uint32_t)s->lz.len : 0;
}

/* The size of a blob: the stored JSON, resourceVersion and source. */
static size_t blob_size(uint32_t body_len, size_t json_len, const char *rv,
                        const char *source) {
  return (body_len ? body_len : json_len + 1) + (rv ? strlen(rv) + 1 : 0) +
         (source ? strlen(source) + 1 : 0);
}

/* Writes the blob at b and points e's fields into it. */
static void blob_fill(entry_t *e, char *b, uint32_t body_len, const char *lz,
                      const char *json, size_t len, const char *rv,
                      const char *source) {
  char *p = b;
  if (body_len) {
    memcpy(p, lz, body_len);
    p += body_len;
  } else {
    memcpy(p, json, len);
    p[len] = '\0';
    p += len + 1;
  }
  e->pub.stored = b;
  e->pub.json_len = len;
  e->body_len = body_len;
  e->pub.resource_version = NULL;
  e->pub.source = NULL;
  if (rv) {
    size_t rl = strlen(rv) + 1;
    memcpy(p, rv, rl);
    e->pub.resource_version = p;
    p += rl;
  }
  if (source)
    memcpy(p, source, strlen(source) + 1), e->pub.source = p;
}

/* Gives `e` a new blob for json/rv/source, over the old one when it fits
 * in the entry. The old JSON is gone afterwards (copy it first); rv and
 * source must not point into the old blob. */
static void set_blob(amc_store_t *s, kind_t *k, entry_t *e, const char *json,
                     size_t len, const char *rv, const char *source) {
  uint32_t body_len = pack(s, k, json, len);
  size_t size = blob_size(body_len, len, rv, source);
  blob_free(e);
  char *b = size <= e->room ? inline_blob(e) : xmalloc(size);
  blob_fill(e, b, body_len, s->lz.data, json, len, rv, source);
}

/* The object's JSON copied into `b` (replacing its contents). */
static void json_copy(const amc_store_obj_t *o, amc_buf_t *b) {
  size_t n;
  const char *j = amc_store_json(o, b, &n);
  if (j != b->data) {
    amc_buf_reset(b);
    amc_buf_append(b, j, n);
  }
}

/* `old` is the JSON before the change (NULL when added), new_json the JSON
 * after it (NULL when deleted). */
static void notify(amc_store_t *s, entry_t *e, amc_store_event_t ev,
                   const char *old, const char *new_json) {
  if (s->listener)
    s->listener(e->pub.kind, e->pub.namespace_, e->pub.name, ev,
                s->listener_data);
  if (s->change_listener)
    s->change_listener(e->pub.kind, e->pub.namespace_, e->pub.name, ev, old,
                       new_json, s->change_data);
}

/* ------------------------------------------------------------------------ */
/* Field indexes                                                             */

#define MAX_INDEXES 16 /* per kind; beyond, the least recently used goes */
#define MAX_DEPTH   16 /* path segments */

/* FNV-1a 64 folded to 32 bits (a bucket keeps it). */
static uint32_t str_hash(const char *v, size_t n) {
  uint64_t h = amc_fnv64(v, n);
  return (uint32_t)(h ^ (h >> 32));
}

/* amc_json_string_fn: appends (length, bytes) to the buffer. */
static void collect_value(const char *v, size_t n, void *ud) {
  amc_buf_t *b = ud;
  amc_buf_append(b, &n, sizeof n);
  amc_buf_append(b, v, n);
}

/* The strings of `o` at the index's path, into `b`. Duplicates are not
 * removed (index_add and index_remove tolerate them). */
static void index_values(const findex_t *fi, const char *json, size_t len,
                         amc_buf_t *b) {
  amc_buf_reset(b);
  (void)amc_json_strings_at(json, len, (const char *const *)fi->path, fi->depth,
                            collect_value, b);
}

static bucket_t **bucket_slot(findex_t *fi, const char *v, size_t n,
                              uint32_t h) {
  bucket_t **pp = &fi->buckets[h & (fi->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->next) {
    bucket_t *b = *pp;
    if (b->hash == h && b->len == n && memcmp(b->value, v, n) == 0)
      break;
  }
  return pp;
}

static void index_grow(findex_t *fi) {
  size_t nb = fi->nbuckets * 2;
  bucket_t **t = calloc(nb, sizeof *t);
  if (!t)
    return; /* keep the longer chains */
  for (size_t i = 0; i < fi->nbuckets; i++) {
    bucket_t *b = fi->buckets[i];
    while (b) {
      bucket_t *next = b->next;
      b->next = t[b->hash & (nb - 1)];
      t[b->hash & (nb - 1)] = b;
      b = next;
    }
  }
  free(fi->buckets);
  fi->buckets = t;
  fi->nbuckets = nb;
}

static void index_add(findex_t *fi, const char *v, size_t n,
                      amc_store_obj_t *o) {
  uint32_t h = str_hash(v, n);
  bucket_t **slot = bucket_slot(fi, v, n, h);
  bucket_t *b = *slot;
  if (!b) {
    b = xmalloc(offsetof(bucket_t, value) + n + 1);
    memset(b, 0, offsetof(bucket_t, value));
    b->hash = h;
    b->len = (uint32_t)n;
    memcpy(b->value, v, n);
    b->value[n] = '\0';
    b->sorted = 1;
    *slot = b;
    if (++fi->nvalues > fi->nbuckets)
      index_grow(fi);
  }
  amc_store_obj_t **objs = bucket_objs(b);
  /* A value repeated in one object lands here right after its first add. */
  if (b->n && objs[b->n - 1] == o)
    return;
  if (b->n == 0) { /* a new bucket (an emptied one is freed) */
    b->o.one = o;
    b->n = 1;
    return;
  }
  if (b->cap == 0) { /* a second object: to a vector */
    objs = xmalloc(4 * sizeof *objs);
    objs[0] = b->o.one;
    b->o.many = objs;
    b->cap = 4;
  } else if (b->n == b->cap) {
    b->cap *= 2;
    b->o.many = objs = xrealloc(objs, b->cap * sizeof *objs);
  }
  if (b->sorted && obj_cmp(objs[b->n - 1], o) > 0)
    b->sorted = 0;
  objs[b->n++] = o;
}

static void index_remove(findex_t *fi, const char *v, size_t n,
                         amc_store_obj_t *o) {
  uint32_t h = str_hash(v, n);
  bucket_t **slot = bucket_slot(fi, v, n, h);
  bucket_t *b = *slot;
  if (!b)
    return;
  amc_store_obj_t **objs = bucket_objs(b);
  size_t i = 0;
  if (b->sorted) {
    size_t hi = b->n;
    while (i < hi) {
      size_t mid = (i + hi) / 2;
      if (obj_cmp(objs[mid], o) < 0)
        i = mid + 1;
      else
        hi = mid;
    }
  } else {
    while (i < b->n && objs[i] != o)
      i++;
  }
  if (i >= b->n || objs[i] != o)
    return; /* a repeated value: already gone */
  memmove(objs + i, objs + i + 1, (b->n - i - 1) * sizeof *objs);
  if (--b->n == 0) {
    *slot = b->next;
    fi->nvalues--;
    if (b->cap)
      free(b->o.many);
    free(b);
  }
}

/* Adds (or removes) `o` under each value in `vals` (collect_value's
 * format). */
static void index_apply(findex_t *fi, const amc_buf_t *vals, amc_store_obj_t *o,
                        int add) {
  for (size_t off = 0; off < vals->len;) {
    size_t l;
    memcpy(&l, vals->data + off, sizeof l);
    const char *v = vals->data + off + sizeof l;
    if (add)
      index_add(fi, v, l, o);
    else
      index_remove(fi, v, l, o);
    off += sizeof l + l;
  }
}

static void index_free(findex_t *fi) {
  for (size_t i = 0; i < fi->nbuckets; i++) {
    bucket_t *b = fi->buckets[i];
    while (b) {
      bucket_t *next = b->next;
      if (b->cap)
        free(b->o.many);
      free(b);
      b = next;
    }
  }
  free(fi->buckets);
  for (size_t i = 0; i < fi->depth; i++)
    free(fi->path[i]);
  free(fi->path);
  free(fi);
}

/* A new object of kind k (its JSON json/len): into every index of the
 * kind. */
static void index_insert(amc_store_t *s, kind_t *k, amc_store_obj_t *o,
                         const char *json, size_t len) {
  for (findex_t *fi = k->indexes; fi; fi = fi->next) {
    index_values(fi, json, len, &s->values);
    index_apply(fi, &s->values, o, 1);
  }
}

/* An object about to be deleted (its JSON json/len): out of every index
 * of the kind. */
static void index_erase(amc_store_t *s, kind_t *k, amc_store_obj_t *o,
                        const char *json, size_t len) {
  for (findex_t *fi = k->indexes; fi; fi = fi->next) {
    index_values(fi, json, len, &s->values);
    index_apply(fi, &s->values, o, 0);
  }
}

/* `o`'s JSON changed from old/old_len to json/len: moves it where its
 * values changed. */
static void index_update(amc_store_t *s, kind_t *k, amc_store_obj_t *o,
                         const char *old, size_t old_len, const char *json,
                         size_t len) {
  for (findex_t *fi = k->indexes; fi; fi = fi->next) {
    index_values(fi, old, old_len, &s->values);
    index_values(fi, json, len, &s->values2);
    if (s->values.len == s->values2.len &&
        (s->values.len == 0 ||
         memcmp(s->values.data, s->values2.data, s->values.len) == 0))
      continue;
    index_apply(fi, &s->values, o, 0);
    index_apply(fi, &s->values2, o, 1);
  }
}

static findex_t *index_get(amc_store_t *s, kind_t *k, const char *const *path,
                           size_t depth) {
  for (findex_t *fi = k->indexes; fi; fi = fi->next) {
    if (fi->depth != depth)
      continue;
    size_t i = 0;
    while (i < depth && strcmp(fi->path[i], path[i]) == 0)
      i++;
    if (i == depth)
      return fi;
  }
  if (k->nindexes >= MAX_INDEXES) { /* drop the least recently used */
    findex_t **lru = &k->indexes;
    for (findex_t **pp = &k->indexes; *pp; pp = &(*pp)->next) {
      if ((*pp)->used < (*lru)->used)
        lru = pp;
    }
    findex_t *gone = *lru;
    *lru = gone->next;
    index_free(gone);
    k->nindexes--;
  }
  findex_t *fi = xmalloc(sizeof *fi);
  memset(fi, 0, sizeof *fi);
  fi->path = xmalloc(depth * sizeof *fi->path);
  for (size_t i = 0; i < depth; i++) {
    fi->path[i] = strdup(path[i]);
    if (!fi->path[i])
      abort();
  }
  fi->depth = depth;
  fi->nbuckets = 64;
  fi->buckets = calloc(fi->nbuckets, sizeof *fi->buckets);
  if (!fi->buckets)
    abort();
  for (size_t i = 0; i < k->n; i++) {
    size_t len;
    const char *json = amc_store_json(k->objs[i], &s->json, &len);
    index_values(fi, json, len, &s->values);
    index_apply(fi, &s->values, k->objs[i], 1);
  }
  fi->next = k->indexes;
  k->indexes = fi;
  k->nindexes++;
  return fi;
}

int amc_store_put_json(amc_store_t *s, const char *kind, const char *ns,
                       const char *name, const char *json, size_t json_len,
                       const char *rv, const char *source, int *changed) {
  if (changed)
    *changed = 0;
  if (!kind || !*kind || !name || !*name || !json)
    return -1;
  if (!ns)
    ns = "";
  /* Work from copies: the JSON gets a terminator for the change listener,
   * and a caller may pass back what it read from this object (its stored
   * JSON, resourceVersion or source), which set_blob overwrites. */
  amc_buf_reset(&s->args);
  amc_buf_append(&s->args, json, json_len);
  size_t rv_at = 0, source_at = 0;
  if (rv) {
    rv_at = s->args.len + 1;
    amc_buf_append(&s->args, "", 1);
    amc_buf_puts(&s->args, rv);
  }
  if (source) {
    source_at = s->args.len + 1;
    amc_buf_append(&s->args, "", 1);
    amc_buf_puts(&s->args, source);
  }
  json = s->args.data;
  rv = rv ? s->args.data + rv_at : NULL;
  source = source ? s->args.data + source_at : NULL;
  kind_t *k = find_kind(s, kind, 1);
  uint32_t h = key_hash(k->name, ns, name);
  entry_t **slot = find_slot(s, k, ns, name, h);
  entry_t *e = *slot;
  if (e) {
    json_copy(&e->pub, &s->old);
    if (s->old.len == json_len && memcmp(s->old.data, json, json_len) == 0) {
      /* Same content: keep the revision, refresh resourceVersion/source. */
      const char *orv = e->pub.resource_version, *osrc = e->pub.source;
      if ((orv == NULL) != (rv == NULL) || (rv && strcmp(orv, rv) != 0) ||
          (osrc == NULL) != (source == NULL) ||
          (source && strcmp(osrc, source) != 0))
        set_blob(s, k, e, json, json_len, rv, source);
      return 0;
    }
    set_blob(s, k, e, json, json_len, rv, source);
    if (k->indexes)
      index_update(s, k, &e->pub, s->old.data, s->old.len, json, json_len);
    e->pub.revision = ++s->revision;
    if (changed)
      *changed = 1;
    notify(s, e, AMC_STORE_MODIFIED, s->old.data, json);
    return 0;
  }
  size_t nl = strlen(ns) + 1, ml = strlen(name) + 1;
  uint32_t body_len = pack(s, k, json, json_len);
  size_t size = blob_size(body_len, json_len, rv, source);
  e = xmalloc(sizeof *e + nl + ml + size);
  memset(e, 0, sizeof *e);
  memcpy(e->ids, ns, nl);
  memcpy(e->ids + nl, name, ml);
  e->hash = h;
  e->room = (uint32_t)size;
  e->pub.kind = k->name;
  e->pub.namespace_ = nl > 1 ? e->ids : NULL;
  e->pub.name = e->ids + nl;
  blob_fill(e, e->ids + nl + ml, body_len, s->lz.data, json, json_len, rv,
            source);
  e->pub.revision = ++s->revision;
  e->next = NULL;
  *slot = e;
  if (k->n == k->cap) {
    k->cap = k->cap ? k->cap * 2 : 16;
    k->objs = xrealloc(k->objs, k->cap * sizeof *k->objs);
  }
  if (k->sorted && k->n && obj_cmp(k->objs[k->n - 1], &e->pub) > 0)
    k->sorted = 0;
  k->objs[k->n++] = &e->pub;
  if (k->indexes)
    index_insert(s, k, &e->pub, json, json_len);
  if (++s->count > s->nbuckets)
    grow(s);
  if (changed)
    *changed = 1;
  notify(s, e, AMC_STORE_ADDED, NULL, json);
  return 0;
}

int amc_store_delete(amc_store_t *s, const char *kind, const char *ns,
                     const char *name) {
  kind_t *k = find_kind(s, kind, 0);
  if (!k || !name)
    return 0;
  if (!ns)
    ns = "";
  uint32_t h = key_hash(k->name, ns, name);
  entry_t **slot = find_slot(s, k, ns, name, h);
  entry_t *e = *slot;
  if (!e)
    return 0;
  *slot = e->next;
  s->count--;
  json_copy(&e->pub, &s->old);
  if (k->indexes)
    index_erase(s, k, &e->pub, s->old.data, s->old.len);
  size_t i;
  if (k->sorted) {
    size_t lo = 0, hi = k->n;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (obj_cmp(k->objs[mid], &e->pub) < 0)
        lo = mid + 1;
      else
        hi = mid;
    }
    i = lo;
    memmove(k->objs + i, k->objs + i + 1, (k->n - i - 1) * sizeof *k->objs);
    k->n--;
  } else {
    for (i = 0; i < k->n && k->objs[i] != &e->pub; i++)
      ;
    k->objs[i] = k->objs[--k->n]; /* unsorted anyway */
  }
  s->revision++;
  notify(s, e, AMC_STORE_DELETED, s->old.data, NULL);
  blob_free(e);
  free(e);
  return 1;
}

const amc_store_obj_t *amc_store_get(amc_store_t *s, const char *kind,
                                     const char *ns, const char *name) {
  kind_t *k = find_kind(s, kind, 0);
  if (!k || !name)
    return NULL;
  if (!ns)
    ns = "";
  entry_t *e = *find_slot(s, k, ns, name, key_hash(k->name, ns, name));
  return e ? &e->pub : NULL;
}

/* The run of objects in namespace `ns` of a sorted vector. */
static size_t ns_range(amc_store_obj_t **objs, size_t n, const char *ns,
                       const amc_store_obj_t *const **out) {
  size_t lo = 0, hi = n;
  while (lo < hi) { /* first with namespace >= ns */
    size_t mid = (lo + hi) / 2;
    const char *m = objs[mid]->namespace_ ? objs[mid]->namespace_ : "";
    if (strcmp(m, ns) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  size_t first = lo;
  hi = n;
  while (lo < hi) { /* first with namespace > ns */
    size_t mid = (lo + hi) / 2;
    const char *m = objs[mid]->namespace_ ? objs[mid]->namespace_ : "";
    if (strcmp(m, ns) <= 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *out = (const amc_store_obj_t *const *)objs + first;
  return lo - first;
}

size_t amc_store_list(amc_store_t *s, const char *kind, const char *ns,
                      const amc_store_obj_t *const **out) {
  *out = NULL;
  kind_t *k = find_kind(s, kind, 0);
  if (!k || k->n == 0)
    return 0;
  kind_sort(k);
  if (!ns) {
    *out = (const amc_store_obj_t *const *)k->objs;
    return k->n;
  }
  return ns_range(k->objs, k->n, ns, out);
}

size_t amc_store_find(amc_store_t *s, const char *kind, const char *ns,
                      const char *const *path, size_t depth, const char *value,
                      const amc_store_obj_t *const **out) {
  *out = NULL;
  kind_t *k = find_kind(s, kind, 0);
  if (!k || depth == 0 || depth > MAX_DEPTH || !value)
    return 0;
  findex_t *fi = index_get(s, k, path, depth);
  fi->used = ++s->finds;
  size_t n = strlen(value);
  bucket_t *b = *bucket_slot(fi, value, n, str_hash(value, n));
  if (!b)
    return 0;
  amc_store_obj_t **objs = bucket_objs(b);
  if (!b->sorted) {
    qsort(objs, b->n, sizeof *objs, obj_pcmp);
    b->sorted = 1;
  }
  if (!ns) {
    *out = (const amc_store_obj_t *const *)objs;
    return b->n;
  }
  return ns_range(objs, b->n, ns, out);
}

size_t amc_store_count(amc_store_t *s, const char *kind) {
  if (!kind)
    return s->count;
  kind_t *k = find_kind(s, kind, 0);
  return k ? k->n : 0;
}

uint64_t amc_store_revision(amc_store_t *s) {
  return s->revision;
}

size_t amc_store_kinds(amc_store_t *s, const char *const **out) {
  *out = s->kind_names;
  return s->nkinds;
}

/* ------------------------------------------------------------------------ */

#define LAST_APPLIED "kubectl.kubernetes.io/last-applied-configuration"

static const char *field_string(lua_State *L, int t, const char *f) {
  lua_getfield(L, t, f);
  const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the string stays alive: the table holds it */
  return v;
}

/* Removes t[f] (if t is a table), leaving the old value on the stack
 * (nil when absent or t is not a table). */
static void take_field(lua_State *L, int t, const char *f) {
  if (lua_type(L, t) != LUA_TTABLE) {
    lua_pushnil(L);
    return;
  }
  lua_getfield(L, t, f);
  if (!lua_isnil(L, -1)) {
    lua_pushnil(L);
    lua_setfield(L, t, f);
  }
}

static void put_back(lua_State *L, int t, const char *f, int v) {
  if (lua_type(L, t) == LUA_TTABLE && !lua_isnil(L, v)) {
    lua_pushvalue(L, v);
    lua_setfield(L, t, f);
  }
}

int amc_store_put_lua(amc_store_t *s, lua_State *L, int idx, const char *source,
                      int *changed, char *err, size_t errlen) {
  if (changed)
    *changed = 0;
  idx = lua_absindex(L, idx);
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 12)) {
    snprintf(err, errlen, "Lua stack exhausted");
    return -1;
  }
  if (lua_type(L, idx) != LUA_TTABLE) {
    snprintf(err, errlen, "object is not a table");
    return -1;
  }
  const char *kind = field_string(L, idx, "kind");
  lua_getfield(L, idx, "metadata");
  int md = lua_gettop(L);
  if (!kind || lua_type(L, md) != LUA_TTABLE) {
    snprintf(err, errlen, "object has no kind or no metadata");
    lua_settop(L, top);
    return -1;
  }
  const char *name = field_string(L, md, "name");
  const char *ns = field_string(L, md, "namespace");
  const char *rv = field_string(L, md, "resourceVersion");
  if (!name || !*name) {
    snprintf(err, errlen, "%s has no metadata.name", kind);
    lua_settop(L, top);
    return -1;
  }
  lua_getfield(L, md, "annotations");
  int ann = lua_gettop(L);
  /* A Pod's status (podIP, readiness) is what rules read; other kinds'
   * status is written by controllers (amc among them) and is only churn. */
  if (strcmp(kind, "Pod") == 0)
    lua_pushnil(L);
  else
    take_field(L, idx, "status");
  int v_status = lua_gettop(L);
  take_field(L, md, "managedFields");
  int v_mf = lua_gettop(L);
  take_field(L, ann, LAST_APPLIED);
  int v_la = lua_gettop(L);
  amc_buf_reset(&s->scratch);
  char jerr[256];
  int rc = amc_json_encode(L, idx, &s->scratch, jerr, sizeof jerr);
  put_back(L, idx, "status", v_status);
  put_back(L, md, "managedFields", v_mf);
  put_back(L, ann, LAST_APPLIED, v_la);
  if (rc < 0) {
    snprintf(err, errlen, "%s %s%s%s: %s", kind, ns ? ns : "", ns ? "/" : "",
             name, jerr);
    lua_settop(L, top);
    return -1;
  }
  rc = amc_store_put_json(s, kind, ns && *ns ? ns : NULL, name, s->scratch.data,
                          s->scratch.len, rv, source, changed);
  lua_settop(L, top);
  return rc;
}

const char *amc_store_json(const amc_store_obj_t *o, amc_buf_t *buf,
                           size_t *len) {
  const entry_t *e = (const entry_t *)o;
  if (len)
    *len = o->json_len;
  if (!e->body_len)
    return o->stored;
  const kind_t *k = kind_of(o);
  amc_buf_reset(buf);
  char *dst = amc_buf_reserve(buf, o->json_len);
  if (amc_lz_decompress_to(k->dict, k->dict_len, o->stored, e->body_len, dst,
                           o->json_len) != 0) {
    fprintf(stderr, "amc: store: %s %s: corrupt stored object\n", o->kind,
            o->name);
    abort();
  }
  amc_buf_commit(buf, o->json_len);
  return buf->data;
}

int amc_store_push(lua_State *L, const amc_store_obj_t *o, char *err,
                   size_t errlen) {
  /* The decode copies everything into Lua: the buffer is free again after
   * it (and only ever used here, single-threaded). */
  static amc_buf_t buf = AMC_BUF_INIT;
  size_t len;
  const char *json = amc_store_json(o, &buf, &len);
  return amc_json_decode_canonical(L, json, len, err, errlen);
}
