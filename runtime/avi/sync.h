/* avi/sync.h - make the AVI controller match the desired objects of each
 * key, with the fewest calls. The API the controller loop (and `amc sync`)
 * uses.
 *
 *   amc_avi_sync_t *s = amc_avi_sync_new(loop, http, &opts);
 *   amc_avi_sync_start(s, on_synced, ctx);     // login + read what we own
 *   amc_avi_sync_key(s, "Gateway/ns/gw", translation, on_done, ctx);
 *   amc_avi_sync_key(s, "Gateway/ns/old", NULL, on_done, ctx);  // gone
 *   amc_avi_sync_gc(s, live_keys, n, on_done, ctx);  // once, after start
 *   amc_avi_sync_free(s);
 *
 * Start: logs in and reads every owned type (plan.h's list) across tenants
 *   (X-Avi-Tenant: *), paginated (page_size 100, following `next`),
 *   filtered by the ownership mark on the server (created_by=amc-<cluster>,
 *   or name.contains=amc--<cluster>-- for types without created_by) and
 *   checked again on the client (plan.h). From then on the cache is kept
 *   current from the answers to our own calls; it is never re-read except
 *   the single object a 409/412 concerns. Calling start again once synced
 *   re-reads everything (a full resync, e.g. periodically, to notice
 *   objects deleted behind amc's back): keys keep syncing against the
 *   current cache meanwhile, the new read replaces it only when complete
 *   (our own writes go to both), and a failed re-read keeps the old one.
 *   Until start has succeeded,
 *   sync_key and gc fail (transient) without a call: nothing is ever
 *   deleted on the basis of a read that failed or did not happen.
 *
 * Sync of one key: plan.h compares the desired objects with the cache and
 *   orders the calls (creates/updates by dependency, deletes of the key's
 *   leftovers in reverse). The calls run one after another; on a failure
 *   the key stops (the cache holds what did happen, so the next attempt
 *   plans from there) -- except that after a permanent failure of a create
 *   or update the leftovers' deletes still run (an unwanted object may be
 *   what blocks the write; if one is deleted the error becomes transient).
 *   Per step:
 *     POST 409   GET by name: ours -> adopt it (PUT if it differs, else
 *                nothing); not ours -> permanent error "name clash: ..."
 *     PUT 404    the object vanished: POST it
 *     PUT 412    re-read it, PUT again (at most 3 times)
 *     DELETE 404 already gone: done
 *     DELETE "Cannot delete, object is referred by": the other deletes go
 *                on; the key ends with a transient error (retried later)
 *   Objects that are not ours are never written or deleted.
 *   Callers must not run two syncs of the same key at once.
 *
 * Dry run: the plan's calls are printed to `dry_run_out` as
 *   "<METHOD> <path> <body>" (private keys shown as "<sensitive>") instead
 *   of being sent; with a controller URL it still logs in and reads (GET
 *   only), without one it plans against an empty controller.
 *
 * Memory: options are copied. A translation passed to sync_key is only read
 * during the call. Result strings are valid during the callback only.
 * amc_avi_sync_free drops work in flight without calling back. */
#ifndef AMC_AVI_SYNC_H
#define AMC_AVI_SYNC_H

#include <stdio.h>
#include <uv.h>

#include "http.h"
#include "translation.h"

typedef struct amc_avi_sync amc_avi_sync_t;

typedef struct {
  const char *controller; /* base URL "https://host[:port]"; NULL: dry run
                             against an empty controller */
  const char *username, *password;
  const char *version; /* NULL: the controller's (from login) */
  const char *tenant;  /* NULL: "admin" (objects without tenant_ref) */
  const char *cluster; /* required: ownership marks (plan.h) */
  const char *ca_file;
  int insecure;
  double rate; /* client rate limit (client.h defaults) */
  int burst;
  long timeout_ms;
  int max_retries;
  long backoff_base_ms, backoff_max_ms;
  int dry_run;
  FILE *dry_run_out; /* NULL: stdout */
} amc_avi_sync_opts_t;

enum {
  AMC_AVI_GET = 0,
  AMC_AVI_NPOST = 1,
  AMC_AVI_NPUT = 2,
  AMC_AVI_NDELETE = 3
};

typedef struct {
  int ok;
  int transient;     /* when !ok */
  const char *error; /* when !ok: "<METHOD> <type> <name>: <reason>" */
  unsigned calls[4]; /* API calls issued: GET, POST, PUT, DELETE (not
                        counting the client's own resends and logins) */
  unsigned planned;  /* steps the plan had (dry runs: steps printed) */
} amc_avi_sync_result_t;

typedef void (*amc_avi_sync_cb)(const amc_avi_sync_result_t *r, void *data);

/* Every HTTP exchange, for metrics: method, AVI type ("login" for
 * /login), status (0 = transport error). */
typedef void (*amc_avi_sync_observe_fn)(const char *method, const char *type,
                                        long status, void *data);

/* `http` is borrowed. Returns NULL when options are invalid (missing
 * cluster, or credentials with a controller). */
amc_avi_sync_t *amc_avi_sync_new(uv_loop_t *loop, amc_http_t *http,
                                 const amc_avi_sync_opts_t *opts);
void amc_avi_sync_set_observer(amc_avi_sync_t *s, amc_avi_sync_observe_fn fn,
                               void *data);
void amc_avi_sync_start(amc_avi_sync_t *s, amc_avi_sync_cb cb, void *data);
/* `t` NULL: the key is gone, delete its objects. A translation with an
 * error is refused (nothing is changed). */
void amc_avi_sync_key(amc_avi_sync_t *s, const char *key,
                      const amc_translation_t *t, amc_avi_sync_cb cb,
                      void *data);
void amc_avi_sync_gc(amc_avi_sync_t *s, const char *const *live, size_t n,
                     amc_avi_sync_cb cb, void *data);
/* Ends the controller session (best effort; see client.h); `done` runs
 * once, also when there is nothing to do. Call when idle, before free. */
void amc_avi_sync_logout(amc_avi_sync_t *s, void (*done)(void *data),
                         void *data);
/* 1 when the cache holds every unchanged object of `t` (translation.h:
 * json NULL) for `key` with its checksum: then sync_key can take `t`. */
int amc_avi_sync_has_unchanged(const amc_avi_sync_t *s, const char *key,
                               const amc_translation_t *t);
int amc_avi_sync_synced(const amc_avi_sync_t *s);
/* 1 while a start (the first read or a re-read) is running. */
int amc_avi_sync_reading(const amc_avi_sync_t *s);
int amc_avi_sync_reachable(const amc_avi_sync_t *s);
size_t amc_avi_sync_cached(const amc_avi_sync_t *s);
void amc_avi_sync_free(amc_avi_sync_t *s);

#endif
