/* kube_source.c - discovery and one reflector per resource (see
 * kube_source.h). */
#include "kube/kube_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kube/backoff.h"
#include "store.h"
#include "util/log.h"

#define MAX_REFLECTORS 32

struct amc_kube_source {
  uv_loop_t *loop;
  amc_kube_client_t *client;
  amc_kube_source_opts_t o;
  amc_kube_source_sink_t sink;
  void *data;
  amc_reflector_t *refl[MAX_REFLECTORS];
  size_t nrefl;
  amc_kube_call_t *call;
  uv_timer_t timer;
  amc_backoff_t bo;
  const char *istio_version;
  int slices;
  int all_synced;
  int closing;
  int pending_close;
  void (*closed)(void *);
  void *closed_data;
};

static const struct {
  const char *name;
  unsigned bit;
} resource_names[] = {
    {"gateways", AMC_KUBE_GATEWAYS},
    {"virtualservices", AMC_KUBE_VIRTUALSERVICES},
    {"destinationrules", AMC_KUBE_DESTINATIONRULES},
    {"serviceentries", AMC_KUBE_SERVICEENTRIES},
    {"services", AMC_KUBE_SERVICES},
    {"endpoints", AMC_KUBE_ENDPOINTS},
    {"endpointslices", AMC_KUBE_ENDPOINTS},
    {"pods", AMC_KUBE_PODS},
    {"secrets", AMC_KUBE_SECRETS},
    {"namespaces", AMC_KUBE_NAMESPACES},
};

int amc_kube_resources_parse(const char *list, unsigned *out) {
  *out = 0;
  const char *p = list;
  while (*p) {
    const char *c = strchr(p, ',');
    size_t n = c ? (size_t)(c - p) : strlen(p);
    int found = 0;
    for (size_t i = 0; i < sizeof resource_names / sizeof *resource_names;
         i++) {
      if (strlen(resource_names[i].name) == n &&
          strncmp(resource_names[i].name, p, n) == 0) {
        *out |= resource_names[i].bit;
        found = 1;
      }
    }
    if (!found && n > 0)
      return -1;
    p += n;
    if (*p == ',')
      p++;
  }
  return 0;
}

const char *amc_kube_discover(const char *body, size_t len, int *slices) {
  static const char *prefer[] = {"v1", "v1beta1", "v1alpha3"};
  amc_kjson_t doc, groups, g, name, versions, v, gv;
  *slices = 0;
  if (amc_kjson_parse(body, len, &doc) != 0 ||
      amc_kjson_get(doc, "groups", &groups) != 0)
    return NULL;
  int best = -1;
  size_t pos = 0;
  while (amc_kjson_array_next(groups, &pos, &g) == 1) {
    if (amc_kjson_get(g, "name", &name) != 0 ||
        amc_kjson_get(g, "versions", &versions) != 0)
      continue;
    int istio = amc_kjson_streq(name, "networking.istio.io");
    int disc = amc_kjson_streq(name, "discovery.k8s.io");
    if (!istio && !disc)
      continue;
    size_t vp = 0;
    while (amc_kjson_array_next(versions, &vp, &v) == 1) {
      if (amc_kjson_get(v, "version", &gv) != 0)
        continue;
      if (disc && amc_kjson_streq(gv, "v1"))
        *slices = 1;
      if (!istio)
        continue;
      for (int i = 0; i < 3; i++)
        if (amc_kjson_streq(gv, prefer[i]) && (best < 0 || i < best))
          best = i;
    }
  }
  return best < 0 ? NULL : prefer[best];
}

static int has_data_keys(amc_kjson_t data, const char *a, const char *b) {
  amc_kjson_t x;
  return amc_kjson_get(data, a, &x) == 0 && amc_kjson_get(data, b, &x) == 0;
}

int amc_kube_secret_is_tls(amc_kjson_t secret) {
  amc_kjson_t t, data;
  if (amc_kjson_get(secret, "type", &t) == 0 &&
      amc_kjson_streq(t, "kubernetes.io/tls"))
    return 1;
  if (amc_kjson_get(secret, "data", &data) != 0)
    return 0;
  return has_data_keys(data, "tls.crt", "tls.key") ||
         has_data_keys(data, "cert", "key");
}

static int accept_secret(amc_kjson_t obj, void *data) {
  (void)data;
  return amc_kube_secret_is_tls(obj);
}

/* --- reflector sink: forwards with the Kind --- */

static void r_upsert(void *data, const amc_kube_gvr_t *gvr, const char *ns,
                     const char *name, const char *json, size_t len) {
  amc_kube_source_t *s = data;
  s->sink.upsert(s->data, gvr->kind, ns ? ns : "", name, json, len);
}

static void r_remove(void *data, const amc_kube_gvr_t *gvr, const char *ns,
                     const char *name) {
  amc_kube_source_t *s = data;
  s->sink.remove(s->data, gvr->kind, ns ? ns : "", name);
}

static void r_synced(void *data, const amc_kube_gvr_t *gvr) {
  amc_kube_source_t *s = data;
  (void)gvr;
  if (s->all_synced)
    return;
  for (size_t i = 0; i < s->nrefl; i++)
    if (!amc_reflector_synced(s->refl[i]))
      return;
  s->all_synced = 1;
  amc_log(AMC_INFO, "kube.synced", AMC_I("resources", s->nrefl),
          AMC_S("istio_version", s->istio_version ? s->istio_version : ""));
  if (s->sink.synced)
    s->sink.synced(s->data);
}

static void r_relisted(void *data, const amc_kube_gvr_t *gvr, size_t items,
                       size_t deleted) {
  amc_kube_source_t *s = data;
  if (s->sink.relisted)
    s->sink.relisted(s->data, gvr->kind, items, deleted);
}

static void r_restarted(void *data, const amc_kube_gvr_t *gvr) {
  amc_kube_source_t *s = data;
  if (s->sink.watch_restarted)
    s->sink.watch_restarted(s->data, gvr->kind);
}

static const amc_reflector_sink_t refl_sink = {r_upsert, r_remove, r_synced,
                                               r_relisted, r_restarted};

static int add(amc_kube_source_t *s, const char *group, const char *version,
               const char *resource, const char *kind, int namespaced,
               const char *ns, const char *label_selector,
               int (*accept)(amc_kjson_t, void *)) {
  if (s->nrefl >= MAX_REFLECTORS)
    return -1;
  amc_reflector_opts_t o = {
      .gvr = {group, version, resource, kind, namespaced},
      .namespace_ = ns,
      .label_selector = label_selector,
      .ns_include = s->o.ns_include,
      .ns_exclude = s->o.ns_exclude,
      .accept = accept,
      .page_limit = s->o.page_limit,
      .watch_timeout_s = s->o.watch_timeout_s,
      .backoff_initial_ms = s->o.backoff_initial_ms,
      .backoff_max_ms = s->o.backoff_max_ms,
  };
  amc_reflector_t *r = amc_reflector_new(s->loop, s->client, &o, &refl_sink, s);
  if (!r)
    return -1;
  s->refl[s->nrefl++] = r;
  return 0;
}

static void start_reflectors(amc_kube_source_t *s) {
  unsigned want = s->o.resources ? s->o.resources : AMC_KUBE_ALL;
  const char *iv = s->istio_version;
  const char *ls = s->o.istio_label_selector;
  const char *ig = "networking.istio.io";
  if (want & AMC_KUBE_GATEWAYS)
    add(s, ig, iv, "gateways", "Gateway", 1, NULL, ls, NULL);
  if (want & AMC_KUBE_VIRTUALSERVICES)
    add(s, ig, iv, "virtualservices", "VirtualService", 1, NULL, ls, NULL);
  if (want & AMC_KUBE_DESTINATIONRULES)
    add(s, ig, iv, "destinationrules", "DestinationRule", 1, NULL, ls, NULL);
  if (want & AMC_KUBE_SERVICEENTRIES)
    add(s, ig, iv, "serviceentries", "ServiceEntry", 1, NULL, ls, NULL);
  if (want & AMC_KUBE_SERVICES)
    add(s, "", "v1", "services", "Service", 1, NULL, NULL, NULL);
  if (want & AMC_KUBE_ENDPOINTS) {
    if (s->slices)
      add(s, "discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", 1,
          NULL, NULL, NULL);
    else
      add(s, "", "v1", "endpoints", "Endpoints", 1, NULL, NULL, NULL);
  }
  if (want & AMC_KUBE_PODS)
    add(s, "", "v1", "pods", "Pod", 1, NULL, NULL, NULL);
  if (want & AMC_KUBE_NAMESPACES)
    add(s, "", "v1", "namespaces", "Namespace", 0, NULL, NULL, NULL);
  if (want & AMC_KUBE_SECRETS) {
    if (s->o.secret_namespaces) {
      for (const char *const *n = s->o.secret_namespaces; *n; n++)
        add(s, "", "v1", "secrets", "Secret", 1, *n, NULL, accept_secret);
    } else {
      add(s, "", "v1", "secrets", "Secret", 1, NULL, NULL, accept_secret);
    }
  }
  for (size_t i = 0; i < s->nrefl; i++)
    amc_reflector_start(s->refl[i]);
}

static void discover(amc_kube_source_t *s);

static void timer_cb(uv_timer_t *t) {
  amc_kube_source_t *s = t->data;
  if (!s->closing)
    discover(s);
}

static void discovery_done(void *data, const amc_kube_resp_t *resp) {
  amc_kube_source_t *s = data;
  s->call = NULL;
  char err[512];
  const char *iv = NULL;
  if (!resp->error && resp->status == 200) {
    iv = amc_kube_discover(resp->body, resp->body_len, &s->slices);
    unsigned want = s->o.resources ? s->o.resources : AMC_KUBE_ALL;
    int needs_istio =
        want & (AMC_KUBE_GATEWAYS | AMC_KUBE_VIRTUALSERVICES |
                AMC_KUBE_DESTINATIONRULES | AMC_KUBE_SERVICEENTRIES);
    if (iv || !needs_istio) {
      s->istio_version = iv;
      amc_log(AMC_INFO, "kube.discovered",
              AMC_S("istio_version", iv ? iv : "none"),
              AMC_B("endpointslices", s->slices));
      start_reflectors(s);
      return;
    }
    snprintf(err, sizeof err,
             "networking.istio.io is not served (Istio CRDs missing?)");
  } else {
    amc_kube_resp_describe(resp, err, sizeof err);
  }
  uint64_t d = amc_backoff_next(&s->bo);
  amc_log(AMC_WARN, "kube.discovery_failed", AMC_S("error", err),
          AMC_I("retry_ms", d));
  uv_timer_start(&s->timer, timer_cb, d, 0);
}

static void discover(amc_kube_source_t *s) {
  amc_kube_req_t req = {.path = "/apis", .timeout_ms = 30000};
  s->call = amc_kube_call(s->client, &req, discovery_done, s);
  if (!s->call)
    uv_timer_start(&s->timer, timer_cb, amc_backoff_next(&s->bo), 0);
}

amc_kube_source_t *amc_kube_source_new(uv_loop_t *loop,
                                       amc_kube_client_t *client,
                                       const amc_kube_source_opts_t *opts,
                                       const amc_kube_source_sink_t *sink,
                                       void *data) {
  amc_kube_source_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->loop = loop;
  s->client = client;
  s->o = *opts; /* borrowed strings: the reflectors copy what they keep */
  s->sink = *sink;
  s->data = data;
  amc_backoff_init(&s->bo, opts->backoff_initial_ms, opts->backoff_max_ms, 0.5);
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  return s;
}

int amc_kube_source_start(amc_kube_source_t *s) {
  discover(s);
  return 0;
}

static void maybe_closed(amc_kube_source_t *s) {
  if (--s->pending_close > 0)
    return;
  void (*cb)(void *) = s->closed;
  void *d = s->closed_data;
  free(s);
  if (cb)
    cb(d);
}

static void child_closed(void *data) {
  maybe_closed(data);
}

static void timer_closed(uv_handle_t *h) {
  maybe_closed(h->data);
}

void amc_kube_source_stop(amc_kube_source_t *s, void (*closed)(void *),
                          void *data) {
  s->closing = 1;
  s->closed = closed;
  s->closed_data = data;
  if (s->call) {
    amc_kube_call_cancel(s->call);
    s->call = NULL;
  }
  s->pending_close = 1 + (int)s->nrefl;
  for (size_t i = 0; i < s->nrefl; i++)
    amc_reflector_stop(s->refl[i], child_closed, s);
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, timer_closed);
}

int amc_kube_source_synced(const amc_kube_source_t *s) {
  return s->all_synced;
}

const char *amc_kube_source_istio_version(const amc_kube_source_t *s) {
  return s->istio_version;
}

void amc_kube_source_stats(const amc_kube_source_t *s,
                           amc_kube_source_stats_t *out) {
  memset(out, 0, sizeof *out);
  out->reflectors = (unsigned)s->nrefl;
  for (size_t i = 0; i < s->nrefl; i++) {
    const amc_reflector_stats_t *r = amc_reflector_stats(s->refl[i]);
    out->synced += amc_reflector_synced(s->refl[i]) ? 1 : 0;
    out->lists += r->lists;
    out->list_failures += r->list_failures;
    out->relists_410 += r->relists_410;
    out->watches += r->watches;
    out->watch_restarts += r->watch_restarts;
    out->watch_errors += r->watch_errors;
    out->events += r->events;
    out->bookmarks += r->bookmarks;
  }
  out->unauthorized = amc_kube_client_unauthorized(s->client);
  out->token_reads = amc_kube_client_token_reads(s->client);
}

int amc_kube_store_put(amc_store_t *store, lua_State *L, const char *json,
                       size_t len, int *changed, char *err, size_t errlen) {
  int top = lua_gettop(L);
  if (amc_json_decode(L, json, len, err, errlen) != 0)
    return -1;
  int rc = -1;
  if (lua_type(L, -1) != LUA_TTABLE) {
    snprintf(err, errlen, "object is not a JSON object");
  } else {
    rc = amc_store_put_lua(store, L, -1, NULL, changed, err, errlen);
  }
  lua_settop(L, top);
  return rc;
}
