/* reflector.c - list + watch for one resource (see reflector.h). */
#include "kube/reflector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/watchparse.h"
#include "util/log.h"
#include "util/strmap.h"

typedef struct {
  char *ns, *name, *rv, *json;
  size_t len;
} item_t;

typedef enum { ST_IDLE, ST_LISTING, ST_WATCHING, ST_WAITING } state_t;

struct amc_reflector {
  uv_loop_t *loop;
  amc_kube_client_t *client;
  amc_reflector_opts_t o; /* strings below are owned copies */
  char **ns_include, **ns_exclude;
  amc_reflector_sink_t sink;
  void *sink_data;
  uv_timer_t timer;
  int closing;
  void (*closed)(void *);
  void *closed_data;

  state_t state;
  amc_kube_call_t *call;
  /* list in progress */
  item_t *items;
  size_t nitems, capitems;
  char *cont;
  char *list_rv;
  unsigned gone_in_a_row; /* 410 on continue, consecutive */
  /* what was delivered: "ns/name" -> resourceVersion */
  amc_strmap_t known; /* "ns/name" -> resourceVersion (owned strings) */
  char *rv;           /* resume point */
  /* watch in progress */
  amc_watch_lines_t lines;
  int want_relist, stream_bad, got_events;
  uint64_t watch_started;
  amc_backoff_t list_bo, watch_bo;
  int synced;
  amc_reflector_stats_t stats;
  void (*next_step)(amc_reflector_t *);
};

static void start_list(amc_reflector_t *r);
static void start_watch(amc_reflector_t *r);

static char **dup_list(const char *const *l) {
  if (!l)
    return NULL;
  size_t n = 0;
  while (l[n])
    n++;
  char **o = calloc(n + 1, sizeof *o);
  for (size_t i = 0; i < n; i++)
    o[i] = strdup(l[i]);
  return o;
}

static void free_list(char **l) {
  if (!l)
    return;
  for (char **p = l; *p; p++)
    free(*p);
  free(l);
}

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

static void set_str(char **dst, const char *s) {
  char *n = dup_or_null(s);
  free(*dst);
  *dst = n;
}

static const char *gname(const amc_reflector_t *r) {
  return r->o.gvr.resource;
}

void amc_kube_collection_path(amc_buf_t *out, const amc_kube_gvr_t *gvr,
                              const char *ns) {
  if (gvr->group && *gvr->group)
    amc_buf_printf(out, "/apis/%s/%s", gvr->group, gvr->version);
  else
    amc_buf_printf(out, "/api/%s", gvr->version);
  if (ns && gvr->namespaced)
    amc_buf_printf(out, "/namespaces/%s", ns);
  amc_buf_printf(out, "/%s", gvr->resource);
}

int amc_kube_ns_allowed(const char *ns, const char *const *include,
                        const char *const *exclude) {
  const char *n = ns ? ns : "";
  if (exclude)
    for (const char *const *p = exclude; *p; p++)
      if (strcmp(*p, n) == 0)
        return 0;
  if (!include)
    return 1;
  for (const char *const *p = include; *p; p++)
    if (strcmp(*p, n) == 0)
      return 1;
  return 0;
}

amc_reflector_t *amc_reflector_new(uv_loop_t *loop, amc_kube_client_t *client,
                                   const amc_reflector_opts_t *opts,
                                   const amc_reflector_sink_t *sink,
                                   void *sink_data) {
  amc_reflector_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->loop = loop;
  r->client = client;
  r->o = *opts;
  r->o.gvr.group = strdup(opts->gvr.group ? opts->gvr.group : "");
  r->o.gvr.version = strdup(opts->gvr.version);
  r->o.gvr.resource = strdup(opts->gvr.resource);
  r->o.gvr.kind = strdup(opts->gvr.kind);
  r->o.namespace_ = dup_or_null(opts->namespace_);
  r->o.label_selector = dup_or_null(opts->label_selector);
  r->o.field_selector = dup_or_null(opts->field_selector);
  r->ns_include = dup_list(opts->ns_include);
  r->ns_exclude = dup_list(opts->ns_exclude);
  r->o.ns_include = (const char *const *)r->ns_include;
  r->o.ns_exclude = (const char *const *)r->ns_exclude;
  if (!r->o.page_limit)
    r->o.page_limit = 500;
  r->sink = *sink;
  r->sink_data = sink_data;
  amc_backoff_init(&r->list_bo, opts->backoff_initial_ms, opts->backoff_max_ms,
                   0.5);
  amc_backoff_init(&r->watch_bo, opts->backoff_initial_ms, opts->backoff_max_ms,
                   0.5);
  amc_watch_lines_init(&r->lines);
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  return r;
}

static void clear_items(amc_reflector_t *r) {
  for (size_t i = 0; i < r->nitems; i++) {
    free(r->items[i].ns);
    free(r->items[i].name);
    free(r->items[i].rv);
    free(r->items[i].json);
  }
  r->nitems = 0;
}

static void reflector_free(amc_reflector_t *r) {
  clear_items(r);
  free(r->items);
  free(r->cont);
  free(r->list_rv);
  free(r->rv);
  amc_strmap_clear(&r->known, free);
  amc_watch_lines_free(&r->lines);
  free((char *)r->o.gvr.group);
  free((char *)r->o.gvr.version);
  free((char *)r->o.gvr.resource);
  free((char *)r->o.gvr.kind);
  free((char *)r->o.namespace_);
  free((char *)r->o.label_selector);
  free((char *)r->o.field_selector);
  free_list(r->ns_include);
  free_list(r->ns_exclude);
  free(r);
}

static void timer_cb(uv_timer_t *t) {
  amc_reflector_t *r = t->data;
  void (*step)(amc_reflector_t *) = r->next_step;
  r->next_step = NULL;
  if (step && !r->closing)
    step(r);
}

static void schedule(amc_reflector_t *r, void (*step)(amc_reflector_t *),
                     uint64_t delay_ms) {
  r->state = ST_WAITING;
  r->next_step = step;
  uv_timer_start(&r->timer, timer_cb, delay_ms, 0);
}

static void key_of(amc_buf_t *b, const char *ns, const char *name) {
  amc_buf_reset(b);
  amc_buf_printf(b, "%s/%s", ns ? ns : "", name);
}

static int allowed(amc_reflector_t *r, const char *ns, const char *name,
                   amc_kjson_t obj) {
  /* Namespace filters apply to namespaced objects, and to Namespaces by
   * name. */
  const char *n = r->o.gvr.namespaced ? ns : NULL;
  if (!r->o.gvr.namespaced && strcmp(r->o.gvr.kind, "Namespace") == 0)
    n = name;
  if (n && !amc_kube_ns_allowed(n, r->o.ns_include, r->o.ns_exclude))
    return 0;
  if (r->o.accept && !r->o.accept(obj, r->sink_data))
    return 0;
  return 1;
}

/* --- list --- */

static void list_failed(amc_reflector_t *r, const char *why) {
  r->stats.list_failures++;
  clear_items(r);
  set_str(&r->cont, NULL);
  uint64_t d = amc_backoff_next(&r->list_bo);
  amc_log(AMC_WARN, "kube.list_failed", AMC_S("resource", gname(r)),
          AMC_S("error", why), AMC_I("retry_ms", d));
  schedule(r, start_list, d);
}

/* apply_list's pass over the objects known before the relist: those missing
 * from the fresh list are removed from the sink. */
typedef struct {
  amc_reflector_t *r;
  const amc_strmap_t *fresh;
  size_t deleted;
} vanished_t;

static int remove_vanished(const char *key, void *rv, void *data) {
  vanished_t *v = data;
  (void)rv;
  if (amc_strmap_get(v->fresh, key))
    return 0;
  const char *slash = strchr(key, '/');
  char *ns = strndup(key, (size_t)(slash - key));
  v->r->sink.remove(v->r->sink_data, &v->r->o.gvr, *ns ? ns : NULL, slash + 1);
  free(ns);
  v->deleted++;
  return 0;
}

static void apply_list(amc_reflector_t *r) {
  amc_strmap_t fresh = AMC_STRMAP_INIT;
  amc_buf_t key = AMC_BUF_INIT;
  size_t delivered = 0, deleted = 0;
  for (size_t i = 0; i < r->nitems; i++) {
    item_t *it = &r->items[i];
    amc_kjson_t obj = {it->json, it->len};
    if (!allowed(r, it->ns, it->name, obj))
      continue;
    key_of(&key, it->ns, it->name);
    amc_strmap_set_str(&fresh, key.data, it->rv);
    const char *old = amc_strmap_get(&r->known, key.data);
    /* Unchanged objects are not re-delivered after a relist. */
    if (!old || strcmp(old, it->rv) != 0)
      r->sink.upsert(r->sink_data, &r->o.gvr, it->ns, it->name, it->json,
                     it->len);
    delivered++;
  }
  /* Deletes only now: the list is complete and successful. */
  vanished_t v = {r, &fresh, 0};
  amc_strmap_foreach(&r->known, remove_vanished, &v);
  deleted = v.deleted;
  amc_strmap_clear(&r->known, free);
  r->known = fresh;
  amc_buf_free(&key);
  clear_items(r);
  set_str(&r->rv, r->list_rv);
  r->stats.lists++;
  amc_backoff_reset(&r->list_bo);
  amc_log(AMC_INFO, "kube.listed", AMC_S("resource", gname(r)),
          AMC_I("items", delivered), AMC_I("deleted", deleted),
          AMC_S("rv", r->rv ? r->rv : ""));
  if (r->sink.relisted)
    r->sink.relisted(r->sink_data, &r->o.gvr, delivered, deleted);
  if (!r->synced) {
    r->synced = 1;
    if (r->sink.synced)
      r->sink.synced(r->sink_data, &r->o.gvr);
  }
}

static int collect_page(amc_reflector_t *r, const char *body, size_t len,
                        char *err, size_t errlen) {
  amc_kjson_t doc, md, items, v, it;
  if (amc_kjson_parse(body, len, &doc) != 0 || amc_kjson_type(doc) != 'o') {
    snprintf(err, errlen, "list response is not a JSON object");
    return -1;
  }
  if (amc_kjson_get(doc, "metadata", &md) != 0) {
    snprintf(err, errlen, "list response has no metadata");
    return -1;
  }
  char *rv = NULL;
  if (amc_kjson_get(md, "resourceVersion", &v) == 0)
    rv = amc_kjson_strdup(v);
  if (!rv || !*rv) {
    free(rv);
    snprintf(err, errlen, "list response has no metadata.resourceVersion");
    return -1;
  }
  /* Every page shares the first page's snapshot; keep the last one. */
  free(r->list_rv);
  r->list_rv = rv;
  char *cont = NULL;
  if (amc_kjson_get(md, "continue", &v) == 0)
    cont = amc_kjson_strdup(v);
  free(r->cont);
  r->cont = cont && *cont ? cont : NULL;
  if (cont && !*cont)
    free(cont);
  if (amc_kjson_get(doc, "items", &items) != 0 || amc_kjson_type(items) == 'z')
    return 0; /* an empty list may carry "items": null */
  size_t pos = 0;
  int k;
  while ((k = amc_kjson_array_next(items, &pos, &it)) == 1) {
    item_t x = {0};
    if (amc_kjson_type(it) != 'o' ||
        amc_kube_object_meta(it, &x.ns, &x.name, &x.rv) != 0) {
      snprintf(err, errlen,
               "list item %zu has no metadata.name/"
               "resourceVersion",
               r->nitems);
      return -1;
    }
    amc_kjson_t kind;
    if (amc_kjson_get(it, "kind", &kind) != 0) {
      /* Items of built-in lists omit kind/apiVersion; sinks want whole
       * objects, so add them (the item starts with '{' and is not empty:
       * it has metadata). */
      amc_buf_t b = AMC_BUF_INIT;
      amc_buf_puts(&b, "{\"apiVersion\":");
      amc_buf_t av = AMC_BUF_INIT;
      if (*r->o.gvr.group)
        amc_buf_printf(&av, "%s/%s", r->o.gvr.group, r->o.gvr.version);
      else
        amc_buf_puts(&av, r->o.gvr.version);
      amc_kjson_quote(&b, av.data);
      amc_buf_free(&av);
      amc_buf_puts(&b, ",\"kind\":");
      amc_kjson_quote(&b, r->o.gvr.kind);
      amc_buf_putc(&b, ',');
      amc_buf_append(&b, it.p + 1, it.n - 1);
      x.len = b.len;
      x.json = amc_buf_steal(&b);
    } else {
      x.json = malloc(it.n + 1);
      memcpy(x.json, it.p, it.n);
      x.json[it.n] = 0;
      x.len = it.n;
    }
    if (r->nitems == r->capitems) {
      r->capitems = r->capitems ? r->capitems * 2 : 64;
      r->items = realloc(r->items, r->capitems * sizeof *r->items);
      if (!r->items)
        abort();
    }
    r->items[r->nitems++] = x;
  }
  if (k < 0) {
    snprintf(err, errlen, "list items are malformed");
    return -1;
  }
  return 0;
}

static void list_done(void *data, const amc_kube_resp_t *resp) {
  amc_reflector_t *r = data;
  r->call = NULL;
  char err[512];
  if (resp->status == 410 && r->cont) {
    /* The continue token expired: start the list again. */
    r->stats.list_failures++;
    clear_items(r);
    set_str(&r->cont, NULL);
    amc_log(AMC_INFO, "kube.list_continue_expired",
            AMC_S("resource", gname(r)));
    if (++r->gone_in_a_row <= 2)
      start_list(r);
    else
      schedule(r, start_list, amc_backoff_next(&r->list_bo));
    return;
  }
  if (resp->error || resp->status != 200) {
    amc_kube_resp_describe(resp, err, sizeof err);
    list_failed(r, err);
    return;
  }
  if (collect_page(r, resp->body, resp->body_len, err, sizeof err) != 0) {
    list_failed(r, err);
    return;
  }
  if (r->cont) {
    start_list(r); /* next page */
    return;
  }
  r->gone_in_a_row = 0;
  apply_list(r);
  start_watch(r);
}

static void append_selectors(amc_reflector_t *r, amc_buf_t *p) {
  if (r->o.label_selector) {
    amc_buf_puts(p, "&labelSelector=");
    amc_kube_urlencode(p, r->o.label_selector);
  }
  if (r->o.field_selector) {
    amc_buf_puts(p, "&fieldSelector=");
    amc_kube_urlencode(p, r->o.field_selector);
  }
}

static void start_list(amc_reflector_t *r) {
  if (r->closing)
    return;
  if (!r->cont)
    clear_items(r);
  r->state = ST_LISTING;
  amc_buf_t p = AMC_BUF_INIT;
  amc_kube_collection_path(&p, &r->o.gvr, r->o.namespace_);
  amc_buf_printf(&p, "?limit=%u", r->o.page_limit);
  if (r->cont) {
    amc_buf_puts(&p, "&continue=");
    amc_kube_urlencode(&p, r->cont);
  }
  append_selectors(r, &p);
  amc_kube_req_t req = {.path = p.data, .timeout_ms = 60000};
  r->call = amc_kube_call(r->client, &req, list_done, r);
  amc_buf_free(&p);
  if (!r->call)
    list_failed(r, "request refused by the HTTP module");
}

/* --- watch --- */

static void deliver_delete(amc_reflector_t *r, const char *ns,
                           const char *name) {
  amc_buf_t key = AMC_BUF_INIT;
  key_of(&key, ns, name);
  char *rv = amc_strmap_del(&r->known, key.data);
  if (rv)
    r->sink.remove(r->sink_data, &r->o.gvr, ns, name);
  free(rv);
  amc_buf_free(&key);
}

static int on_line(const char *line, size_t n, void *data) {
  amc_reflector_t *r = data;
  amc_watch_event_t ev;
  char err[256];
  if (amc_watch_event_parse(line, n, &ev, err, sizeof err) != 0) {
    amc_log(AMC_WARN, "kube.watch_bad_event", AMC_S("resource", gname(r)),
            AMC_S("error", err));
    r->stream_bad = 1;
    return 1;
  }
  if (ev.type == AMC_WATCH_ERROR) {
    if (ev.code == 410) {
      r->want_relist = 1;
    } else {
      amc_log(AMC_WARN, "kube.watch_error_event", AMC_S("resource", gname(r)),
              AMC_I("code", ev.code));
      r->stream_bad = 1;
    }
    return 1;
  }
  char *ns = NULL, *name = NULL, *rv = NULL;
  if (ev.type == AMC_WATCH_BOOKMARK) {
    if (amc_kube_object_meta(ev.object, NULL, NULL, &rv) == 0) {
      set_str(&r->rv, rv);
      r->stats.bookmarks++;
    }
    free(rv);
    return 0;
  }
  if (amc_kube_object_meta(ev.object, &ns, &name, &rv) != 0) {
    amc_log(AMC_WARN, "kube.watch_bad_event", AMC_S("resource", gname(r)),
            AMC_S("error", "object has no metadata.name/resourceVersion"));
    r->stream_bad = 1;
    return 1;
  }
  r->got_events = 1;
  r->stats.events++;
  if (ev.type == AMC_WATCH_DELETED) {
    deliver_delete(r, ns, name);
  } else if (!allowed(r, ns, name, ev.object)) {
    deliver_delete(r, ns, name); /* no-op unless it was delivered before */
  } else {
    amc_buf_t key = AMC_BUF_INIT;
    key_of(&key, ns, name);
    amc_strmap_set_str(&r->known, key.data, rv);
    amc_buf_free(&key);
    r->sink.upsert(r->sink_data, &r->o.gvr, ns, name, ev.object.p, ev.object.n);
  }
  set_str(&r->rv, rv);
  free(ns);
  free(name);
  free(rv);
  return 0;
}

static int watch_chunk(void *data, const char *p, size_t n) {
  amc_reflector_t *r = data;
  int rc = amc_watch_lines_feed(&r->lines, p, n, on_line, r);
  if (rc < 0) {
    r->stream_bad = 1;
    amc_log(AMC_WARN, "kube.watch_bad_event", AMC_S("resource", gname(r)),
            AMC_S("error", "event too large"));
  }
  return rc != 0;
}

static void relist_now(amc_reflector_t *r, const char *why) {
  r->stats.relists_410++;
  amc_log(AMC_INFO, "kube.relist", AMC_S("resource", gname(r)),
          AMC_S("reason", why));
  start_list(r);
}

static void watch_done(void *data, const amc_kube_resp_t *resp) {
  amc_reflector_t *r = data;
  r->call = NULL;
  if (r->sink.restarted)
    r->sink.restarted(r->sink_data, &r->o.gvr);
  if (r->want_relist) {
    relist_now(r, "watch ERROR event 410 (expired)");
    return;
  }
  if (resp->status == 410) {
    relist_now(r, "watch HTTP 410 (gone)");
    return;
  }
  r->stats.watch_restarts++;
  int clean_eof = !r->stream_bad && !resp->error && resp->status == 200 &&
                  amc_watch_lines_pending(&r->lines) == 0;
  if (r->got_events)
    amc_backoff_reset(&r->watch_bo);
  if (clean_eof) {
    /* The server ended the watch (timeoutSeconds): resume from the last RV.
     * A watch that ends at once without events is retried with a delay so
     * a misbehaving server cannot make us spin. */
    uint64_t lived = uv_now(r->loop) - r->watch_started;
    amc_log(AMC_DEBUG, "kube.watch_closed", AMC_S("resource", gname(r)),
            AMC_S("rv", r->rv ? r->rv : ""));
    if (r->got_events || lived >= 1000)
      start_watch(r);
    else
      schedule(r, start_watch, amc_backoff_next(&r->watch_bo));
    return;
  }
  r->stats.watch_errors++;
  char err[512];
  if (r->stream_bad)
    snprintf(err, sizeof err, "bad event in the stream");
  else if (!resp->error && resp->status == 200)
    snprintf(err, sizeof err, "stream ended inside an event");
  else
    amc_kube_resp_describe(resp, err, sizeof err);
  uint64_t d = amc_backoff_next(&r->watch_bo);
  amc_log(AMC_WARN, "kube.watch_failed", AMC_S("resource", gname(r)),
          AMC_S("error", err), AMC_I("retry_ms", d),
          AMC_S("rv", r->rv ? r->rv : ""));
  schedule(r, start_watch, d);
}

static void start_watch(amc_reflector_t *r) {
  if (r->closing)
    return;
  r->state = ST_WATCHING;
  r->want_relist = r->stream_bad = r->got_events = 0;
  amc_watch_lines_reset(&r->lines);
  unsigned t = r->o.watch_timeout_s;
  if (!t)
    t = 300 + (unsigned)(rand() % 300);
  amc_buf_t p = AMC_BUF_INIT;
  amc_kube_collection_path(&p, &r->o.gvr, r->o.namespace_);
  amc_buf_printf(&p, "?watch=1&allowWatchBookmarks=true&timeoutSeconds=%u", t);
  if (r->rv) {
    amc_buf_puts(&p, "&resourceVersion=");
    amc_kube_urlencode(&p, r->rv);
  }
  append_selectors(r, &p);
  /* A safety net for a silently dead connection: the server should have
   * closed the watch by then. */
  amc_kube_req_t req = {.path = p.data,
                        .on_chunk = watch_chunk,
                        .timeout_ms = (long)(t + 30) * 1000};
  r->watch_started = uv_now(r->loop);
  r->stats.watches++;
  r->call = amc_kube_call(r->client, &req, watch_done, r);
  amc_buf_free(&p);
  if (!r->call) {
    r->stats.watch_errors++;
    schedule(r, start_watch, amc_backoff_next(&r->watch_bo));
  }
}

int amc_reflector_start(amc_reflector_t *r) {
  if (r->state != ST_IDLE)
    return -1;
  start_list(r);
  return 0;
}

static void closed_cb(uv_handle_t *h) {
  amc_reflector_t *r = h->data;
  void (*cb)(void *) = r->closed;
  void *d = r->closed_data;
  reflector_free(r);
  if (cb)
    cb(d);
}

void amc_reflector_stop(amc_reflector_t *r, void (*closed)(void *),
                        void *data) {
  r->closing = 1;
  r->closed = closed;
  r->closed_data = data;
  if (r->call) {
    amc_kube_call_cancel(r->call);
    r->call = NULL;
  }
  uv_timer_stop(&r->timer);
  uv_close((uv_handle_t *)&r->timer, closed_cb);
}

int amc_reflector_synced(const amc_reflector_t *r) {
  return r->synced;
}

const char *amc_reflector_rv(const amc_reflector_t *r) {
  return r->rv;
}

const amc_reflector_stats_t *amc_reflector_stats(const amc_reflector_t *r) {
  return &r->stats;
}

const amc_kube_gvr_t *amc_reflector_gvr(const amc_reflector_t *r) {
  return &r->o.gvr;
}
