/* store.c - objects by kind/namespace/name as canonical JSON.
 *
 * Layout: one chained hash table over all objects for get/put/delete, and per
 * kind a vector of the kind's objects that is sorted lazily (on the first
 * list after an unordered insert), since loads and watch relists are bulk
 * appends and lists are what rules do many times between changes. An
 * object's identity (namespace, name) lives in the entry itself; its JSON,
 * resourceVersion and source live in one separate block that is replaced on
 * modification, so vectors and hash chains never move. */
#include "store.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util/buf.h"

typedef struct kind kind_t;

typedef struct entry {
  amc_store_obj_t pub; /* first: list vectors point here */
  kind_t *k;
  uint64_t hash;
  struct entry *next; /* hash chain */
  char *blob;         /* json \0 resourceVersion \0 source \0 */
  char ids[];         /* namespace \0 name \0 */
} entry_t;

struct kind {
  char *name;
  amc_store_obj_t **objs;
  size_t n, cap;
  int sorted;
};

struct amc_store {
  entry_t **buckets;
  size_t nbuckets, count;
  kind_t **kinds; /* sorted by name */
  const char **kind_names;
  size_t nkinds;
  uint64_t revision;
  amc_store_listener_fn listener;
  void *listener_data;
  amc_buf_t scratch;
};

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
      free(e->blob);
      free(e);
      e = next;
    }
  }
  free(s->buckets);
  for (size_t i = 0; i < s->nkinds; i++) {
    free(s->kinds[i]->name);
    free(s->kinds[i]->objs);
    free(s->kinds[i]);
  }
  free(s->kinds);
  free(s->kind_names);
  amc_buf_free(&s->scratch);
  free(s);
}

void amc_store_set_listener(amc_store_t *s, amc_store_listener_fn fn,
                            void *data) {
  s->listener = fn;
  s->listener_data = data;
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
  kind_t *k = calloc(1, sizeof *k);
  if (!k)
    abort();
  k->name = strdup(name);
  if (!k->name)
    abort();
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

/* FNV-1a 64 over kind, namespace and name (with separators). */
static uint64_t key_hash(const char *kind, const char *ns, const char *name) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const char *parts[3] = {kind, ns, name};
  for (int i = 0; i < 3; i++) {
    for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++) {
      h ^= *p;
      h *= 0x100000001b3ULL;
    }
    h ^= 0xff;
    h *= 0x100000001b3ULL;
  }
  return h;
}

static entry_t **find_slot(amc_store_t *s, kind_t *k, const char *ns,
                           const char *name, uint64_t h) {
  entry_t **pp = &s->buckets[h & (s->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->next) {
    entry_t *e = *pp;
    if (e->hash == h && e->k == k && strcmp(e->pub.name, name) == 0 &&
        strcmp(e->ids, ns) == 0)
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

static void set_blob(entry_t *e, const char *json, size_t len, const char *rv,
                     const char *source) {
  size_t rl = rv ? strlen(rv) + 1 : 0, sl = source ? strlen(source) + 1 : 0;
  char *b = xmalloc(len + 1 + rl + sl);
  memcpy(b, json, len);
  b[len] = '\0';
  char *p = b + len + 1;
  e->pub.resource_version = NULL;
  e->pub.source = NULL;
  if (rv) {
    memcpy(p, rv, rl);
    e->pub.resource_version = p;
    p += rl;
  }
  if (source) {
    memcpy(p, source, sl);
    e->pub.source = p;
  }
  free(e->blob);
  e->blob = b;
  e->pub.json = b;
  e->pub.json_len = len;
}

static void notify(amc_store_t *s, entry_t *e, amc_store_event_t ev) {
  if (s->listener)
    s->listener(e->pub.kind, e->pub.namespace_, e->pub.name, ev,
                s->listener_data);
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
  kind_t *k = find_kind(s, kind, 1);
  uint64_t h = key_hash(k->name, ns, name);
  entry_t **slot = find_slot(s, k, ns, name, h);
  entry_t *e = *slot;
  if (e) {
    if (e->pub.json_len == json_len &&
        memcmp(e->pub.json, json, json_len) == 0) {
      /* Same content: keep the revision, refresh resourceVersion/source. */
      const char *orv = e->pub.resource_version, *osrc = e->pub.source;
      if ((orv == NULL) != (rv == NULL) || (rv && strcmp(orv, rv) != 0) ||
          (osrc == NULL) != (source == NULL) ||
          (source && strcmp(osrc, source) != 0))
        set_blob(e, json, json_len, rv, source);
      return 0;
    }
    set_blob(e, json, json_len, rv, source);
    e->pub.revision = ++s->revision;
    if (changed)
      *changed = 1;
    notify(s, e, AMC_STORE_MODIFIED);
    return 0;
  }
  size_t nl = strlen(ns) + 1, ml = strlen(name) + 1;
  e = xmalloc(sizeof *e + nl + ml);
  memset(e, 0, sizeof *e);
  memcpy(e->ids, ns, nl);
  memcpy(e->ids + nl, name, ml);
  e->k = k;
  e->hash = h;
  e->pub.kind = k->name;
  e->pub.namespace_ = nl > 1 ? e->ids : NULL;
  e->pub.name = e->ids + nl;
  set_blob(e, json, json_len, rv, source);
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
  if (++s->count > s->nbuckets)
    grow(s);
  if (changed)
    *changed = 1;
  notify(s, e, AMC_STORE_ADDED);
  return 0;
}

int amc_store_delete(amc_store_t *s, const char *kind, const char *ns,
                     const char *name) {
  kind_t *k = find_kind(s, kind, 0);
  if (!k || !name)
    return 0;
  if (!ns)
    ns = "";
  uint64_t h = key_hash(k->name, ns, name);
  entry_t **slot = find_slot(s, k, ns, name, h);
  entry_t *e = *slot;
  if (!e)
    return 0;
  *slot = e->next;
  s->count--;
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
  notify(s, e, AMC_STORE_DELETED);
  free(e->blob);
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
  size_t lo = 0, hi = k->n;
  while (lo < hi) { /* first with namespace >= ns */
    size_t mid = (lo + hi) / 2;
    const char *m = k->objs[mid]->namespace_ ? k->objs[mid]->namespace_ : "";
    if (strcmp(m, ns) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  size_t first = lo;
  hi = k->n;
  while (lo < hi) { /* first with namespace > ns */
    size_t mid = (lo + hi) / 2;
    const char *m = k->objs[mid]->namespace_ ? k->objs[mid]->namespace_ : "";
    if (strcmp(m, ns) <= 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *out = (const amc_store_obj_t *const *)k->objs + first;
  return lo - first;
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

int amc_store_push(lua_State *L, const amc_store_obj_t *o, char *err,
                   size_t errlen) {
  return amc_json_decode_canonical(L, o->json, o->json_len, err, errlen);
}
