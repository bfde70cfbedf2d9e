/* avi/plan.h - what amc owns on the controller (the cache), and which calls
 * make the controller match one key's desired objects (the plan). Pure: no
 * I/O; runtime/avi/sync.c reads, writes and keeps the cache current.
 *
 * Ownership marks (docs/avi.md): an object is amc's (this cluster's) when
 *   - its type has `created_by` (virtualservice, pool, poolgroup,
 *     httppolicyset, sslkeyandcertificate, pkiprofile, applicationprofile):
 *     created_by == "amc-<cluster>";
 *   - otherwise (vsvip, healthmonitor, stringgroup, ...): its `markers` hold
 *     {"key":"clustername","values":["<cluster>"]} AND its name starts with
 *     "amc--<cluster>--" (the marker alone is also what AKO writes).
 *   Which key (gateway) an object belongs to is its "gateway" marker
 *   ("<ns>/<name>"; the key is "Gateway/<ns>/<name>").
 *
 * Comparison (the choice, and why): every object amc writes carries one
 *   more marker, {"key":"amc-cksum","values":["<16 hex>"]}, the FNV-1a 64
 *   hash of the desired object's canonical JSON (as the rules produced it).
 *   An object is up to date when the controller's copy carries the same
 *   checksum. This ignores everything the controller fills in (defaults,
 *   uuids, url, _last_modified, `#name` suffixes, the "<sensitive>" key of
 *   a certificate) without a schema of defaults, and it notices a field the
 *   rules stopped setting (a subset compare cannot). An owned object
 *   without the checksum (written by something else under our mark) is
 *   compared field by field: every desired field must be present and equal
 *   on the controller (refs compared by type and name, "<sensitive>"
 *   matches any value, a missing server field equals an empty desired
 *   list). Out-of-band edits to an object that carries our checksum are not
 *   detected (as with AKO's cloud_config_cksum).
 *
 * Order: creates and updates by rank (vsvip, sslkeyandcertificate,
 *   pkiprofile, healthmonitor, pool, poolgroup, stringgroup, httppolicyset,
 *   parent/normal virtualservice, child virtualservice), deletes in the
 *   reverse order (children first, vsvip last); within a rank by name.
 *
 * Memory: the cache owns its entries and their strings (interned strings
 * live until amc_avi_cache_clear). A plan owns its
 * steps and their strings (amc_avi_plan_free). */
#ifndef AMC_AVI_PLAN_H
#define AMC_AVI_PLAN_H

#include <lua.h>
#include <stddef.h>

#include "translation.h"
#include "util/strmap.h"

#define AMC_AVI_CKSUM_MARKER "amc-cksum"

/* Who we are on the controller. */
typedef struct {
  const char *cluster; /* "c1" */
  const char *tenant;  /* default tenant ("admin") */
} amc_avi_owner_t;

/* One object amc owns on the controller, compact: the cache keeps what
 * planning needs, not the controller's copy. type, tenant and gateway are
 * interned in the cache (shared by all entries); name points into the map's
 * key; the uuid and the checksum live in the entry's own allocation (read
 * them with amc_avi_entry_uuid and amc_avi_entry_cksum). `json` is kept
 * only for an owned object without our checksum (the field-by-field
 * compare needs it; amc rewrites such an object with a checksum only when
 * it differs, so they stay rare). */
typedef struct amc_avi_entry amc_avi_entry_t;
struct amc_avi_entry {
  const char *type, *tenant, *name;
  const char *gateway; /* "gateway" marker ("ns/name"), or NULL */
  /* the other entries of the same gateway (the cache's by_gateway list) */
  amc_avi_entry_t *gw_prev, *gw_next;
  char *json;       /* without a checksum: the controller's copy (canonical
                       JSON); NULL otherwise */
  signed char rank; /* amc_avi_rank() */
  /* How uuid_buf holds the uuid: AVI's own form "<type>-<lowercase uuid>"
   * as the uuid's 16 bytes (most objects), else as a string. */
  unsigned char uuid_form : 2; /* 0: no uuid, 1: 16 bytes, 2: a string */
  /* amc_avi_plan_key's: wanted by the plan in progress of its gateway
   * (cleared again before the plan returns) */
  unsigned char planned : 1;
  char cksum[17]; /* amc-cksum marker (16 hex), "" when none */
  char uuid_buf[];
};

/* Room for any uuid amc_avi_entry_uuid rebuilds from its 16 bytes. */
#define AMC_AVI_UUID_BUF 96

/* The entry's uuid, or NULL when the object had none. The string is the
 * entry's or, for the 16-byte form, written to `buf`; valid while both
 * are. */
const char *amc_avi_entry_uuid(const amc_avi_entry_t *e,
                               char buf[AMC_AVI_UUID_BUF]);
/* The entry's amc-cksum marker (16 hex digits), or NULL. */
const char *amc_avi_entry_cksum(const amc_avi_entry_t *e);

typedef struct {
  amc_strmap_t map;    /* "type\ttenant\tname" -> amc_avi_entry_t */
  amc_strmap_t intern; /* types, tenants, gateway markers (keys only) */
  /* gateway marker -> the first of that gateway's entries, which are
   * linked by gw_next/gw_prev: a key's leftovers are found without walking
   * every object amc owns (a route change at 10k VirtualServices), for
   * two pointers per entry (a map per gateway cost a second copy of every
   * key). */
  amc_strmap_t by_gateway;
} amc_avi_cache_t;

void amc_avi_cache_init(amc_avi_cache_t *c);
void amc_avi_cache_clear(amc_avi_cache_t *c);
amc_avi_entry_t *amc_avi_cache_get(const amc_avi_cache_t *c, const char *type,
                                   const char *tenant, const char *name);
/* Stores the controller's object at the top of L's stack (a table) of
 * `type`, seen in `tenant` (used when the object's tenant_ref names none).
 * Returns 1 if stored (it is owned), 0 if not owned (not stored; an older
 * entry with that name is removed), -1 if the object has no name. */
int amc_avi_cache_put(amc_avi_cache_t *c, lua_State *L,
                      const amc_avi_owner_t *own, const char *type,
                      const char *tenant);
/* As amc_avi_cache_put; when stored, *out (if non-NULL) is the entry. */
int amc_avi_cache_put_entry(amc_avi_cache_t *c, lua_State *L,
                            const amc_avi_owner_t *own, const char *type,
                            const char *tenant, amc_avi_entry_t **out);
void amc_avi_cache_del(amc_avi_cache_t *c, const char *type, const char *tenant,
                       const char *name);
size_t amc_avi_cache_count(const amc_avi_cache_t *c);

/* Ownership of the object at `idx` (see the top). */
int amc_avi_owned(lua_State *L, int idx, const amc_avi_owner_t *own,
                  const char *type);
/* 1 when the type has a created_by field. */
int amc_avi_has_created_by(const char *type);
/* Dependency rank of a type (virtualservice: `child` selects the VH child
 * rank); -1 for a type sync does not handle. */
int amc_avi_rank(const char *type, int child);
/* The types the cache reads at start, in rank order, NULL-terminated. */
extern const char *const amc_avi_owned_types[];

/* FNV-1a 64 of `s` as 16 lower-case hex digits (+ NUL) into `out`. */
void amc_avi_cksum(const char *s, size_t len, char out[17]);

/* desired (at `d`) ⊆ server (at `s`), as described at the top. */
int amc_avi_subset(lua_State *L, int d, int s);
/* Splits a reference into type and name: "/api/pool?name=a%20b",
 * "https://h/api/pool/pool-1#a b" (name after '#'), "/api/pool/pool-1"
 * (name = the uuid). Returns 0, or -1 if it is not a reference. */
int amc_avi_ref_parse(const char *ref, char *type, size_t tlen, char *name,
                      size_t nlen);

typedef enum {
  AMC_AVI_POST = 0,
  AMC_AVI_PUT = 1,
  AMC_AVI_DELETE = 2
} amc_avi_op_t;

typedef struct {
  amc_avi_op_t op;
  char *type, *tenant, *name;
  char *uuid; /* PUT and DELETE */
  char *body; /* POST and PUT: desired JSON plus the checksum marker */
  size_t body_len;
  char *cksum; /* POST and PUT */
  int rank;
} amc_avi_step_t;

typedef struct {
  amc_avi_step_t *steps;
  size_t n;
} amc_avi_plan_t;

/* Plans key `key` ("Gateway/ns/name"): desired `objs` (NULL/0: the key is
 * gone) against the cache. Returns 0, or -1 with `err` naming the object
 * and problem (bad JSON, unknown type, name mismatch, duplicate). */
int amc_avi_plan_key(lua_State *L, const amc_avi_cache_t *cache,
                     const amc_avi_owner_t *own, const char *key,
                     const amc_avi_object_t *objs, size_t n,
                     amc_avi_plan_t *out, char *err, size_t errlen);

/* The same for a patch (translation.h `partial`): only `objs` are
 * planned; the key's other objects stay as they are (no deletes). */
int amc_avi_plan_key_partial(lua_State *L, const amc_avi_cache_t *cache,
                             const amc_avi_owner_t *own, const char *key,
                             const amc_avi_object_t *objs, size_t n,
                             amc_avi_plan_t *out, char *err, size_t errlen);

/* 1 when the cache holds the unchanged object `o` (translation.h: json
 * NULL) owned by `key` with o->cksum. amc_avi_plan_key plans such an object
 * by that alone (nothing to do), and fails when this is 0. */
int amc_avi_unchanged_held(const amc_avi_cache_t *cache,
                           const amc_avi_owner_t *own, const char *key,
                           const amc_avi_object_t *o);

/* Plans deletes of every cached object whose key is not in `live` (keys as
 * above; objects without a gateway marker are not any key's). */
int amc_avi_plan_gc(const amc_avi_cache_t *cache, const char *const *live,
                    size_t n, amc_avi_plan_t *out);

/* Builds the body for one desired object (at the top of L's stack; popped)
 * with its checksum marker. Returns 0 or -1 with `err`. */
int amc_avi_desired_body(lua_State *L, const char *json, size_t len,
                         amc_avi_step_t *st, char *err, size_t errlen);

/* The body with secrets (a certificate's `key`, `key_passphrase`) shown as
 * "<sensitive>", for dry runs and logs. Caller frees. */
char *amc_avi_redacted(lua_State *L, const char *type, const char *body,
                       size_t len);

void amc_avi_plan_free(amc_avi_plan_t *p);
void amc_avi_step_free(amc_avi_step_t *s);

#endif
