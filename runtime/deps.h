/* deps.h - which translation keys depend on which objects.
 *
 * Each translation records the reads its rules made (translation.h:
 * rt.get -> one object, rt.list -> every object of a kind in one namespace or
 * in all namespaces, optionally filtered by a field value or a label). The
 * index keeps, per key, its last translation's reads,
 * and the reverse: per object, per (kind, namespace) list and per (kind)
 * list, the keys that read it. A store change to (kind, ns, name) then maps to
 * exactly the keys whose last translation read that object or a list that
 * contains it. Objects of the root kind (Gateway) also map to their own key,
 * "<root>/<ns>/<name>", whether or not it was ever translated.
 *
 * Reads are replaced wholesale by amc_deps_update (level-based: what the
 * last translation read is all that matters). Strings are copied. Not
 * thread-safe (loop thread). */
#ifndef AMC_DEPS_H
#define AMC_DEPS_H

#include <stddef.h>

#include "translation.h"

typedef struct amc_deps amc_deps_t;

/* `root_kind` is the kind whose objects are keys ("Gateway"). Returns NULL
 * when out of memory. */
amc_deps_t *amc_deps_new(const char *root_kind);
void amc_deps_free(amc_deps_t *d);

/* Formats the key of a root object: "<root>/<ns>/<name>" into `out`.
 * Returns the length, as snprintf. */
int amc_deps_key(const amc_deps_t *d, const char *ns, const char *name,
                 char *out, size_t outlen);

/* Replaces the reads recorded for `key` with `reads[0..n)`. */
void amc_deps_update(amc_deps_t *d, const char *key, const amc_read_t *reads,
                     size_t n);
/* Forgets `key` (its root object was deleted). */
void amc_deps_remove(amc_deps_t *d, const char *key);

/* Calls fn(key, data) once for every key affected by a change of the object
 * (kind, ns, name) (ns NULL or "" for cluster-scoped objects), in sorted
 * order. Returns the number of keys.
 *
 * `old_json` and `new_json` are the object's canonical JSON before and
 * after the change (NULL when it did not exist before / does not after).
 * Filtered list reads (amc_read_t.field/label) are affected when the
 * object's value at the filtered path equals the read's value before OR
 * after the change: an object moving from gateway A to gateway B affects
 * the lists of both. With both NULL no filtered read is affected. */
typedef void (*amc_deps_key_fn)(const char *key, void *data);
size_t amc_deps_affected(amc_deps_t *d, const char *kind, const char *ns,
                         const char *name, const char *old_json,
                         const char *new_json, amc_deps_key_fn fn, void *data);

/* A filtered list's path as the index spells it: "l:<label>" (the
 * label's value) or "f:<dotted.field>". Calls fn(s, len, data) for each
 * string at that path in old_json and then in new_json (either may be
 * NULL), as amc_json_strings_at does; this is what a change to the object
 * can do to the lists filtered on that path. A path with an empty segment
 * or more than 16 matches nothing (rt.list refuses those): no call. */
void amc_deps_path_values(const char *path, const char *old_json,
                          const char *new_json,
                          void (*fn)(const char *s, size_t len, void *data),
                          void *data);

/* Calls fn(read, data) for each read recorded for `key` (duplicates
 * dropped), rebuilt from the index: the strings are valid during the call
 * only; a get with namespace "" comes back with namespace_ NULL. Returns
 * the number of reads (0 for an unknown key). */
typedef void (*amc_deps_read_fn)(const amc_read_t *r, void *data);
size_t amc_deps_foreach_read(amc_deps_t *d, const char *key,
                             amc_deps_read_fn fn, void *data);

/* Keys with recorded reads. */
size_t amc_deps_count(const amc_deps_t *d);
/* Calls fn for every key with recorded reads (unspecified order). */
void amc_deps_foreach_key(amc_deps_t *d, amc_deps_key_fn fn, void *data);

#endif
