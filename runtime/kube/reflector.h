/* reflector.h - keeps one Kubernetes resource mirrored: list, then watch.
 *
 * One reflector per resource (client-go's Reflector, on the libuv loop):
 *
 *   LIST   GET <collection>?limit=N[&continue=T] page by page. All pages are
 *          collected first; only a complete, successful list is applied: each
 *          item is delivered (upsert), then every object the reflector had
 *          delivered before and the list no longer holds is deleted. A 410
 *          on a continue token restarts the list at once; any other failure
 *          backs off and retries the list, and deletes nothing.
 *   WATCH  GET <collection>?watch=1&resourceVersion=<RV>&allowWatchBookmarks=
 *          true&timeoutSeconds=T, streamed. ADDED/MODIFIED -> upsert,
 *          DELETED -> delete, BOOKMARK -> new resume RV. An ERROR event with
 *          code 410 or an HTTP 410 -> relist. A normal end of the stream (the
 *          server's timeout) -> watch again from the last RV at once. A broken
 *          stream, a transport error, another error status or a malformed
 *          event -> back off (exponential, jittered) and watch again from
 *          the last RV: no relist, nothing lost, nothing deleted.
 *
 * `synced` becomes true after the first successful list and stays true.
 *
 * Filters: a label selector and a field selector are sent to the server;
 * namespace include/exclude lists and an optional `accept` predicate
 * (e.g. "only TLS-capable secrets") are applied here. An object that stops
 * passing `accept` (a MODIFIED event) is delivered as a delete.
 *
 * Every delivered object is the server's JSON text for it (the list item or
 * the event's object), untouched except that list items without `kind` get
 * `apiVersion` and `kind` (built-in lists omit them); the sink canonicalises
 * it. Callbacks run on the loop; they may call amc_reflector_stop (the
 * reflector is freed later, in its timer's close callback). */
#ifndef AMC_KUBE_REFLECTOR_H
#define AMC_KUBE_REFLECTOR_H

#include <stddef.h>
#include <uv.h>

#include "kube/backoff.h"
#include "kube/client.h"
#include "kube/kjson.h"

typedef struct {
  const char *group;    /* "" for the core group */
  const char *version;  /* "v1" */
  const char *resource; /* plural, "endpointslices" */
  const char *kind;     /* "EndpointSlice" */
  int namespaced;
} amc_kube_gvr_t;

typedef struct {
  /* An object was added or changed (or listed). */
  void (*upsert)(void *data, const amc_kube_gvr_t *gvr, const char *ns,
                 const char *name, const char *json, size_t len);
  /* An object is gone. */
  void (*remove)(void *data, const amc_kube_gvr_t *gvr, const char *ns,
                 const char *name);
  /* The first complete list was applied (once). May be NULL. */
  void (*synced)(void *data, const amc_kube_gvr_t *gvr);
  /* A complete list was applied (every relist, the first included). May be
   * NULL. `deleted` is how many vanished objects it removed. */
  void (*relisted)(void *data, const amc_kube_gvr_t *gvr, size_t items,
                   size_t deleted);
  /* The watch ended and is being restarted (EOF, error or 410); for the
   * "watch restarts" metric. May be NULL. */
  void (*restarted)(void *data, const amc_kube_gvr_t *gvr);
} amc_reflector_sink_t;

typedef struct {
  amc_kube_gvr_t gvr;            /* strings copied */
  const char *namespace_;        /* watch one namespace; NULL = all */
  const char *label_selector;    /* NULL = none */
  const char *field_selector;    /* NULL = none */
  const char *const *ns_include; /* NULL-terminated; NULL = all */
  const char *const *ns_exclude; /* NULL-terminated; NULL = none */
  int (*accept)(amc_kjson_t obj, void *data); /* NULL = all; data = sink's */
  unsigned page_limit;                        /* default 500 */
  unsigned watch_timeout_s;                   /* default 300..600, randomised */
  uint64_t backoff_initial_ms;                /* default 500 */
  uint64_t backoff_max_ms;                    /* default 30000 */
} amc_reflector_opts_t;

typedef struct {
  unsigned lists;          /* complete lists applied */
  unsigned list_failures;  /* failed list attempts (pages included) */
  unsigned relists_410;    /* relists caused by 410 (either form) */
  unsigned watches;        /* watch requests started */
  unsigned watch_restarts; /* re-watches after EOF or errors */
  unsigned watch_errors;   /* broken streams, error statuses, bad events */
  unsigned events;         /* watch events applied */
  unsigned bookmarks;
} amc_reflector_stats_t;

typedef struct amc_reflector amc_reflector_t;

amc_reflector_t *amc_reflector_new(uv_loop_t *loop, amc_kube_client_t *client,
                                   const amc_reflector_opts_t *opts,
                                   const amc_reflector_sink_t *sink,
                                   void *sink_data);
int amc_reflector_start(amc_reflector_t *r);
/* Cancels requests and timers; `closed` runs once the timer is closed, after
 * which the reflector is freed. */
void amc_reflector_stop(amc_reflector_t *r, void (*closed)(void *), void *data);

int amc_reflector_synced(const amc_reflector_t *r);
const char *amc_reflector_rv(const amc_reflector_t *r);
const amc_reflector_stats_t *amc_reflector_stats(const amc_reflector_t *r);
const amc_kube_gvr_t *amc_reflector_gvr(const amc_reflector_t *r);

/* The collection path for a gvr in `ns` (NULL = all namespaces), e.g.
 * "/apis/networking.istio.io/v1/namespaces/x/gateways". Appended to out. */
void amc_kube_collection_path(amc_buf_t *out, const amc_kube_gvr_t *gvr,
                              const char *ns);

/* Namespace include/exclude check (exclude wins). */
int amc_kube_ns_allowed(const char *ns, const char *const *include,
                        const char *const *exclude);

#endif
