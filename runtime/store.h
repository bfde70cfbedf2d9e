/* store.h - the in-memory object store: every input object, by
 * kind/namespace/name, as canonical JSON.
 *
 * Sources (Kubernetes watches, MCP, files) put objects here; the rules engine
 * reads them (decoding into fresh Lua tables on every read, so rules can
 * never change what is stored); the controller listens for changes.
 *
 * Each object is kept as its canonical JSON (json.h) without the parts that
 * only add noise and churn: `status` (except for Pods, whose podIP and
 * readiness rules read), `metadata.managedFields` and the
 * `kubectl.kubernetes.io/last-applied-configuration` annotation. Storing the
 * bytes (and not Lua tables) keeps memory small and makes "did it change?"
 * a memcmp. Kind strings are interned (one copy per kind).
 *
 * Namespaces: cluster-scoped objects have namespace NULL (stored as "").
 * Lists are in (namespace, name) bytewise order.
 *
 * Revisions: the store has a revision counter that grows by one on every
 * change (an add, a modification that changes the stored bytes, a delete);
 * each object records the revision of its last change. resourceVersion is
 * whatever the source gave (metadata.resourceVersion), or NULL.
 *
 * Compression: objects are kept LZ-compressed (util/lz.h) against a
 * dictionary per kind (the kind's first object of some size), since the
 * objects of a kind mostly repeat one another. Read an object's JSON with
 * amc_store_json, which decompresses it into a buffer of the caller's.
 *
 * Pointers returned by get/list stay valid until the next put or delete of
 * that object (list arrays: of any object of that kind). Single-threaded. */
#ifndef AMC_STORE_H
#define AMC_STORE_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct amc_store amc_store_t;

/* A stored object (read-only view). */
typedef struct {
  const char *kind;       /* interned: compare by pointer or strcmp */
  const char *namespace_; /* NULL for cluster-scoped objects */
  const char *name;
  const void *stored; /* private to the store: read with amc_store_json */
  size_t json_len;    /* length of the canonical JSON */
  const char *resource_version; /* may be NULL */
  const char *source;           /* where it came from (file:line), or NULL */
  uint64_t revision;            /* store revision of its last change */
} amc_store_obj_t;

typedef enum {
  AMC_STORE_ADDED = 0,
  AMC_STORE_MODIFIED = 1,
  AMC_STORE_DELETED = 2,
} amc_store_event_t;

/* Called after every change, with the object's identity (strings valid for
 * the duration of the call only). Must not modify the store. */
typedef void (*amc_store_listener_fn)(const char *kind, const char *namespace_,
                                      const char *name, amc_store_event_t event,
                                      void *data);

/* Like amc_store_listener_fn, with the object's canonical JSON before and
 * after the change (NUL-terminated; old_json NULL on ADDED, new_json NULL
 * on DELETED; both valid for the duration of the call only), so a listener
 * can tell which field values and labels the object left and entered. */
typedef void (*amc_store_change_fn)(const char *kind, const char *namespace_,
                                    const char *name, amc_store_event_t event,
                                    const char *old_json, const char *new_json,
                                    void *data);

amc_store_t *amc_store_new(void);
void amc_store_free(amc_store_t *s);

/* One listener (NULL removes it). */
void amc_store_set_listener(amc_store_t *s, amc_store_listener_fn fn,
                            void *data);

/* One change listener (NULL removes it), called after the plain listener. */
void amc_store_set_change_listener(amc_store_t *s, amc_store_change_fn fn,
                                   void *data);

/* Puts the Kubernetes-shaped object at `idx` (a Lua table with kind and
 * metadata.name; metadata.namespace optional). The table is left as it was
 * (stripped fields are put back). `source` may be NULL. *changed (if not
 * NULL) is set to 1 when the store changed. Returns 0, or -1 with `err` set
 * (missing identity fields, or a value JSON cannot encode; the error names
 * the object and field). */
int amc_store_put_lua(amc_store_t *s, lua_State *L, int idx, const char *source,
                      int *changed, char *err, size_t errlen);

/* Puts already-canonical, already-stripped JSON (amc_json_encode output;
 * reads decode it with amc_json_decode_canonical, which trusts it).
 * Returns 0, or -1 when an argument is missing. */
int amc_store_put_json(amc_store_t *s, const char *kind, const char *namespace_,
                       const char *name, const char *json, size_t json_len,
                       const char *resource_version, const char *source,
                       int *changed);

/* Returns 1 if the object was there (and is now gone), 0 if absent. */
int amc_store_delete(amc_store_t *s, const char *kind, const char *namespace_,
                     const char *name);

/* NULL when absent. */
const amc_store_obj_t *amc_store_get(amc_store_t *s, const char *kind,
                                     const char *namespace_, const char *name);

/* Objects of `kind` in `namespace_` (all namespaces when NULL), sorted by
 * namespace then name. *out points into the store (see above). Returns the
 * count. */
size_t amc_store_list(amc_store_t *s, const char *kind, const char *namespace_,
                      const amc_store_obj_t *const **out);

/* Objects of `kind` in `namespace_` (all when NULL) whose value at `path`
 * (`depth` object keys, outermost first, e.g. {"spec", "gateways"} or
 * {"metadata", "labels", "app"}) is the string `value`, or is an array with
 * an element equal to `value`; sorted by namespace then name. Other JSON
 * types never match. The first lookup of a (kind, path) builds an index
 * that later puts and deletes keep current, so a lookup costs about as
 * much as its result, not as the kind. *out points into the store and
 * stays valid until the next put or delete of that kind or the next
 * amc_store_find. Returns the count (0 also when depth is 0 or above 16). */
size_t amc_store_find(amc_store_t *s, const char *kind, const char *namespace_,
                      const char *const *path, size_t depth, const char *value,
                      const amc_store_obj_t *const **out);

size_t amc_store_count(amc_store_t *s, const char *kind); /* NULL: all */
uint64_t amc_store_revision(amc_store_t *s);

/* Kinds present (interned names), in sorted order; returns the count.
 * The array is the store's, valid until the next put of a new kind. */
size_t amc_store_kinds(amc_store_t *s, const char *const **out);

/* The object's canonical JSON, NUL-terminated; *len (when not NULL) gets
 * its length. A compressed object is decompressed into `buf` (whose
 * contents are replaced) and the result points into `buf`; an object stored
 * as is gives a pointer into the store. Either way the JSON stays valid
 * until the object's next put or delete, or the next change of `buf`,
 * whichever comes first. Never NULL. */
const char *amc_store_json(const amc_store_obj_t *o, amc_buf_t *buf,
                           size_t *len);

/* Pushes a fresh Lua table decoded from the object's JSON. Returns 0, or -1
 * with `err` set (only on memory exhaustion in a capped VM). */
int amc_store_push(lua_State *L, const amc_store_obj_t *o, char *err,
                   size_t errlen);

#endif
