/* kube_source.h - the Kubernetes source: every resource amc reads, mirrored.
 *
 * Starts with discovery (GET /apis): which networking.istio.io version the
 * cluster serves (v1 preferred, then v1beta1, then v1alpha3) and whether
 * discovery.k8s.io/v1 EndpointSlices are served (else core Endpoints are
 * watched instead). Then one reflector (reflector.h) per resource:
 *
 *   networking.istio.io  Gateway, VirtualService, DestinationRule,
 *                        ServiceEntry (label selector and namespace filters)
 *   core/v1              Service, Pod, Namespace, Secret (TLS-capable only:
 *                        type kubernetes.io/tls, or any type with
 *                        tls.crt+tls.key or cert+key data keys)
 *   discovery.k8s.io/v1  EndpointSlice (or core/v1 Endpoints)
 *
 * Secrets are read with the least access that still follows rotation:
 * list+watch, cluster-wide by default or only in `secret_namespaces` (then
 * a namespaced Role per namespace suffices; see docs/kubernetes.md). Secrets
 * that cannot hold a certificate are dropped before the sink sees them.
 *
 * If the Istio group is not served (CRDs not installed), discovery is
 * retried with backoff and the source never reports synced: a controller
 * must not delete what it programmed because it cannot read its input.
 *
 * The sink gets each object's JSON text as the server sent it (the store
 * canonicalises and strips it) with its Kind. `synced` runs once, when every
 * reflector has applied its first complete list. */
#ifndef AMC_KUBE_SOURCE_H
#define AMC_KUBE_SOURCE_H

#include <stddef.h>
#include <uv.h>

#include "kube/client.h"
#include "kube/reflector.h"

/* The same shape as fs_source's sink: `ns` is "" for cluster-scoped
 * objects; `json` is the server's text (with kind and apiVersion), not yet
 * canonical: pass it to amc_kube_store_put. */
typedef struct {
  void (*upsert)(void *data, const char *kind, const char *ns, const char *name,
                 const char *json, size_t len);
  void (*remove)(void *data, const char *kind, const char *ns,
                 const char *name);
  void (*synced)(void *data); /* all resources synced; may be NULL */
  /* A relist was applied (for logs/tests); may be NULL. */
  void (*relisted)(void *data, const char *kind, size_t items, size_t deleted);
  /* A watch is being restarted (metric "watch restarts"). May be NULL. */
  void (*watch_restarted)(void *data, const char *kind);
} amc_kube_source_sink_t;

/* Resource bits for `resources` (0 = all). */
enum {
  AMC_KUBE_GATEWAYS = 1 << 0,
  AMC_KUBE_VIRTUALSERVICES = 1 << 1,
  AMC_KUBE_DESTINATIONRULES = 1 << 2,
  AMC_KUBE_SERVICEENTRIES = 1 << 3,
  AMC_KUBE_SERVICES = 1 << 4,
  AMC_KUBE_ENDPOINTS = 1 << 5, /* EndpointSlices, or Endpoints as fallback */
  AMC_KUBE_PODS = 1 << 6,
  AMC_KUBE_SECRETS = 1 << 7,
  AMC_KUBE_NAMESPACES = 1 << 8,
  AMC_KUBE_ALL = (1 << 9) - 1
};

/* Parses "gateways,services,..." into bits; -1 on an unknown name. */
int amc_kube_resources_parse(const char *list, unsigned *out);

typedef struct {
  unsigned resources;                   /* 0 = AMC_KUBE_ALL */
  const char *const *ns_include;        /* NULL-terminated, NULL = all */
  const char *const *ns_exclude;        /* NULL-terminated, NULL = none */
  const char *istio_label_selector;     /* for the Istio kinds; NULL = none */
  const char *const *secret_namespaces; /* NULL = cluster-wide */
  unsigned page_limit;                  /* 0 = 500 */
  unsigned watch_timeout_s;             /* 0 = 300..600 randomised */
  uint64_t backoff_initial_ms;          /* 0 = 500 */
  uint64_t backoff_max_ms;              /* 0 = 30000 */
} amc_kube_source_opts_t;

typedef struct {
  unsigned reflectors, synced;
  unsigned lists, list_failures, relists_410;
  unsigned watches, watch_restarts, watch_errors, events, bookmarks;
  unsigned unauthorized, token_reads;
} amc_kube_source_stats_t;

typedef struct amc_kube_source amc_kube_source_t;

/* Borrows `client` (which must outlive the source). */
amc_kube_source_t *amc_kube_source_new(uv_loop_t *loop,
                                       amc_kube_client_t *client,
                                       const amc_kube_source_opts_t *opts,
                                       const amc_kube_source_sink_t *sink,
                                       void *data);
int amc_kube_source_start(amc_kube_source_t *s);
/* Stops everything; `closed` runs when all handles are closed and the
 * source is freed. */
void amc_kube_source_stop(amc_kube_source_t *s, void (*closed)(void *),
                          void *data);
int amc_kube_source_synced(const amc_kube_source_t *s);
/* "v1", "v1beta1", "v1alpha3", or NULL before discovery. */
const char *amc_kube_source_istio_version(const amc_kube_source_t *s);
void amc_kube_source_stats(const amc_kube_source_t *s,
                           amc_kube_source_stats_t *out);

/* Picks the preferred Istio version from an APIGroupList body: v1 > v1beta1
 * > v1alpha3. Returns a static string or NULL; sets *slices to whether
 * discovery.k8s.io/v1 is served. */
const char *amc_kube_discover(const char *body, size_t len, int *slices);

/* Puts a delivered object into the store: decodes `json` in `L` (json.h)
 * and calls amc_store_put_lua (which canonicalises and strips status,
 * managedFields and the last-applied annotation). Returns 0, or -1 with
 * `err` set (the object is then not stored). */
struct amc_store;
struct lua_State;
int amc_kube_store_put(struct amc_store *store, struct lua_State *L,
                       const char *json, size_t len, int *changed, char *err,
                       size_t errlen);

/* The Secret filter: 1 when the Secret can hold a TLS certificate. */
int amc_kube_secret_is_tls(amc_kjson_t secret);

#endif
