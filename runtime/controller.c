/* controller.c - store changes -> deps -> queue -> translate -> sink. */
#include "controller.h"

#include "deps.h"
#include "queue.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/strmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define MAX_SOURCES 8

/* Translations leave garbage in the engine (its collector runs only every
 * so many megabytes) and in the heap. After a burst of work (the initial
 * pass, a reload, a resync, a run of changes), and in the pauses of a long
 * one, the engine compacts and the freed heap goes back to the system, so
 * RSS reflects what is live. */

/* Per-key state the controller keeps between passes. */
typedef struct {
  unsigned synced : 1;  /* the sink has been told about this key */
  unsigned failing : 1; /* the last translation failed */
  unsigned initial : 1; /* part of the initial pass, not yet done */
  unsigned clean : 1;   /* the last translation reached the sink in full or as
                           a patch, and its sync succeeded: a patch may come
                           next (translation.h `partial`) */
  amc_translation_t *inflight; /* handed to the sink, until sync_done */
  uint64_t started_ns;
  uint64_t event_ns; /* first store change not yet handed to the sink */
} key_state_t;

struct amc_controller {
  amc_controller_opts_t opt;
  amc_deps_t *deps;
  amc_queue_t *queue;
  amc_strmap_t keys; /* key -> key_state_t */

  void *engine;
  amc_ctrl_engine_ops_t engine_ops;
  uint64_t generation;
  char digest[80];
  char *last_reload_error;

  struct {
    char name[16];
    int synced;
    int gate; /* holds processing back, not readiness (amc_controller_add_gate)
               */
  } sources[MAX_SOURCES];
  int n_sources;
  int processing; /* keys flow: sources synced and an engine set */
  int initial_done;
  size_t initial_total, initial_left;
  uint64_t initial_started_ns;
  uint64_t syncs;

  uv_timer_t progress;
  uv_timer_t resync;
  uv_timer_t stop_timer;
  uv_timer_t compact; /* opt.compact_idle_ms after the last translation */
  int open_handles;
  int stopping;
  void (*stopped)(amc_controller_t *c, void *data);
  void *stopped_data;

  /* metrics */
  amc_metric_t *m_queue_depth, *m_in_flight, *m_reconcile, *m_reconciles,
      *m_requests, *m_generation, *m_reloads, *m_reload_failures,
      *m_watch_restarts, *m_objects, *m_translate_errors, *m_sources_synced,
      *m_translations, *m_event_to_sync, *m_rules_memory;
};

static uint64_t now_ns(void) {
  return uv_hrtime();
}

static key_state_t *key_state(amc_controller_t *c, const char *key,
                              int create) {
  key_state_t *k = amc_strmap_get(&c->keys, key);
  if (!k && create) {
    k = calloc(1, sizeof *k);
    if (!k)
      abort();
    amc_strmap_put(&c->keys, key, k, NULL);
  }
  return k;
}

/* "Gateway/ns/name" -> ns, name (into caller buffers). */
static int split_key(const char *key, char *ns, size_t nslen, char *name,
                     size_t namelen) {
  const char *a = strchr(key, '/');
  const char *b = a ? strchr(a + 1, '/') : NULL;
  if (!a || !b || (size_t)(b - a - 1) >= nslen || strlen(b + 1) >= namelen)
    return -1;
  memcpy(ns, a + 1, (size_t)(b - a - 1));
  ns[b - a - 1] = '\0';
  strcpy(name, b + 1);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Metrics */

static void collect(amc_metrics_t *reg, void *data) {
  (void)reg;
  amc_controller_t *c = data;
  amc_metric_set(c->m_queue_depth, NULL, (double)amc_queue_len(c->queue));
  amc_metric_set(c->m_in_flight, NULL, (double)amc_queue_in_flight(c->queue));
  amc_metric_set(c->m_generation, NULL, (double)c->generation);
  if (c->engine && c->engine_ops.memory)
    amc_metric_set(c->m_rules_memory, NULL,
                   (double)c->engine_ops.memory(c->engine));
  amc_metric_reset(c->m_objects);
  const char *const *kinds;
  size_t n = amc_store_kinds(c->opt.store, &kinds);
  for (size_t i = 0; i < n; i++) {
    amc_metric_set(c->m_objects, (const char *[]){kinds[i]},
                   (double)amc_store_count(c->opt.store, kinds[i]));
  }
  for (int i = 0; i < c->n_sources; i++) {
    amc_metric_set(c->m_sources_synced, (const char *[]){c->sources[i].name},
                   c->sources[i].synced);
  }
}

static void register_metrics(amc_controller_t *c) {
  amc_metrics_t *r = c->opt.metrics;
  static const double dur[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                               0.05,   0.1,   0.25,   0.5,   1,    2.5,
                               5,      10,    30,     60};
  c->m_queue_depth = amc_metrics_gauge(r, "amc_queue_depth",
                                       "Keys waiting to be reconciled.", NULL);
  c->m_in_flight = amc_metrics_gauge(r, "amc_queue_in_flight",
                                     "Keys being reconciled now.", NULL);
  c->m_reconcile = amc_metrics_histogram(
      r, "amc_reconcile_duration_seconds",
      "Time from taking a key to the end of its AVI sync.",
      (const char *[]){"result", NULL}, dur, sizeof dur / sizeof dur[0]);
  c->m_reconciles =
      amc_metrics_counter(r, "amc_reconcile_total", "Keys reconciled.",
                          (const char *[]){"result", NULL});
  c->m_requests = amc_metrics_counter(
      r, "amc_avi_requests_total", "AVI REST requests by method, type, code.",
      (const char *[]){"method", "type", "code", NULL});
  c->m_generation = amc_metrics_gauge(
      r, "amc_rules_generation", "Active rules generation (0: none).", NULL);
  c->m_rules_memory = amc_metrics_gauge(
      r, "amc_rules_memory_bytes",
      "Memory the active rules generation's Lua VM holds.", NULL);
  c->m_reloads = amc_metrics_counter(r, "amc_rules_reloads_total",
                                     "Rules reloads by result.",
                                     (const char *[]){"result", NULL});
  c->m_reload_failures = amc_metrics_counter(
      r, "amc_rules_reload_failures_total",
      "Rules reloads rejected (the previous generation kept serving).", NULL);
  c->m_watch_restarts = amc_metrics_counter(r, "amc_watch_restarts_total",
                                            "Source watches restarted.",
                                            (const char *[]){"source", NULL});
  c->m_objects = amc_metrics_gauge(r, "amc_objects", "Objects in the store.",
                                   (const char *[]){"kind", NULL});
  c->m_translate_errors = amc_metrics_counter(
      r, "amc_translation_errors_total",
      "Translations that failed (AVI left as it was).", NULL);
  c->m_translations = amc_metrics_counter(
      r, "amc_translations_total",
      "Successful translations handed to AVI sync, by kind: full, or patch "
      "(only the memoized calls a change made stale ran again).",
      (const char *[]){"kind", NULL});
  c->m_sources_synced = amc_metrics_gauge(
      r, "amc_source_synced", "1 once the source has listed everything.",
      (const char *[]){"source", NULL});
  static const double lat[] = {0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005,
                               0.01,   0.025,   0.05,   0.1,   0.25,  0.5,
                               1,      2.5,     5,      10,    30};
  c->m_event_to_sync = amc_metrics_histogram(
      r, "amc_event_to_sync_seconds",
      "Time from a store change to the sink (AVI sync) starting on an "
      "affected key.",
      NULL, lat, sizeof lat / sizeof lat[0]);
  /* Series that must exist from the start (a scrape sees zeros). */
  amc_metric_add(c->m_reload_failures, NULL, 0);
  amc_metric_add(c->m_translate_errors, NULL, 0);
  amc_metric_add(c->m_translations, (const char *[]){"full"}, 0);
  amc_metric_add(c->m_translations, (const char *[]){"patch"}, 0);
  amc_metrics_set_collect(r, collect, c);
}

/* ------------------------------------------------------------------------ */
/* Initial sync */

static void on_progress(uv_timer_t *t) {
  amc_controller_t *c = t->data;
  if (c->initial_done)
    return;
  amc_log(AMC_INFO, "sync.progress",
          AMC_I("done", c->initial_total - c->initial_left),
          AMC_I("total", c->initial_total),
          AMC_I("queued", amc_queue_len(c->queue)));
}

typedef struct {
  const char **v;
  size_t n, cap;
} keylist_t;

static void keylist_add(keylist_t *l, const char *k) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 64;
    l->v = realloc(l->v, l->cap * sizeof *l->v);
    if (!l->v)
      abort();
  }
  l->v[l->n++] = k;
}

/* The keys of every root object in the store (strings owned by `buf`). */
static void live_keys(amc_controller_t *c, keylist_t *l, amc_buf_t *buf) {
  const amc_store_obj_t *const *objs;
  size_t n = amc_store_list(c->opt.store, c->opt.root_kind, NULL, &objs);
  size_t *offs = calloc(n ? n : 1, sizeof *offs);
  if (!offs)
    abort();
  for (size_t i = 0; i < n; i++) {
    offs[i] = buf->len;
    amc_buf_printf(buf, "%s/%s/%s", c->opt.root_kind,
                   objs[i]->namespace_ ? objs[i]->namespace_ : "",
                   objs[i]->name);
    amc_buf_putc(buf, '\0');
  }
  for (size_t i = 0; i < n; i++)
    keylist_add(l, buf->data + offs[i]);
  free(offs);
}

static void release_memory(amc_controller_t *c) {
  uv_timer_stop(&c->compact);
  if (c->engine && c->engine_ops.compact)
    c->engine_ops.compact(c->engine);
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static void on_compact(uv_timer_t *t) {
  release_memory(t->data);
}

static void initial_finished(amc_controller_t *c) {
  c->initial_done = 1;
  amc_log_set_key(NULL); /* not about the key that happened to be last */
  uv_timer_stop(&c->progress);
  double secs = (double)(now_ns() - c->initial_started_ns) / 1e9;
  release_memory(c);
  amc_log(AMC_INFO, "sync.initial_done", AMC_I("gateways", c->initial_total),
          AMC_F("seconds", secs));
  if (c->opt.sink_ops.gc) {
    keylist_t l = {0};
    amc_buf_t buf = AMC_BUF_INIT;
    live_keys(c, &l, &buf);
    c->opt.sink_ops.gc(c->opt.sink, l.v, l.n);
    free(l.v);
    amc_buf_free(&buf);
  }
}

/* Queues every gateway: the initial pass in the foreground; a later pass
 * (resync, reload) in the background, so that a change arriving meanwhile
 * is not served after the whole pass. */
static void queue_all(amc_controller_t *c, int initial) {
  int (*add)(amc_queue_t *, const char *) =
      initial ? amc_queue_add : amc_queue_add_background;
  keylist_t l = {0};
  amc_buf_t buf = AMC_BUF_INIT;
  live_keys(c, &l, &buf);
  for (size_t i = 0; i < l.n; i++) {
    if (initial) {
      key_state_t *k = key_state(c, l.v[i], 1);
      if (!k->initial) {
        k->initial = 1;
        c->initial_left++;
      }
    }
    add(c->queue, l.v[i]);
  }
  /* Keys the sink knows whose object is gone (deleted while a source was
   * relisting): queue them so their trees are removed. */
  for (size_t i = 0; i < c->keys.n_buckets; i++) {
    for (amc_strmap_entry_t *e = c->keys.buckets[i]; e; e = e->next) {
      key_state_t *k = e->value;
      if (k->synced)
        add(c->queue, e->key);
    }
  }
  free(l.v);
  amc_buf_free(&buf);
}

static void maybe_start_processing(amc_controller_t *c) {
  /* No source registered yet: nothing is known, so nothing may start (an
   * initial pass over an empty store would gc everything). */
  if (c->processing || c->stopping || !c->engine || c->n_sources == 0)
    return;
  for (int i = 0; i < c->n_sources; i++) {
    if (!c->sources[i].synced)
      return;
  }
  c->processing = 1;
  c->initial_started_ns = now_ns();
  c->initial_left = 0;
  queue_all(c, 1);
  c->initial_total = c->initial_left;
  amc_log(AMC_INFO, "sync.initial_start", AMC_I("gateways", c->initial_total),
          AMC_I("objects", amc_store_count(c->opt.store, NULL)));
  if (c->initial_left == 0)
    initial_finished(c);
  else
    uv_timer_start(&c->progress, on_progress, c->opt.progress_ms,
                   c->opt.progress_ms);
}

/* ------------------------------------------------------------------------ */
/* Store changes and reconcile */

static void queue_key(const char *key, void *data) {
  amc_controller_t *c = data;
  key_state_t *k = key_state(c, key, 1);
  if (!k->event_ns)
    k->event_ns = now_ns();
  amc_queue_add(c->queue, key);
  amc_log(AMC_DEBUG, "queue.add", AMC_S("queued", key));
}

static void on_store_change(const char *kind, const char *ns, const char *name,
                            amc_store_event_t ev, const char *old_json,
                            const char *new_json, void *data) {
  (void)ev;
  amc_controller_t *c = data;
  if (c->engine && c->engine_ops.changed)
    c->engine_ops.changed(c->engine, kind, ns, name, old_json, new_json);
  if (!c->processing)
    return; /* the initial pass queues everything */
  amc_deps_affected(c->deps, kind, ns, name, old_json, new_json, queue_key, c);
}

static void finish_key(amc_controller_t *c, const char *key, key_state_t *k,
                       const char *result, uint64_t started) {
  double secs = (double)(now_ns() - started) / 1e9;
  amc_metric_observe(c->m_reconcile, (const char *[]){result}, secs);
  amc_metric_inc(c->m_reconciles, (const char *[]){result});
  if (k && k->initial) {
    k->initial = 0;
    if (c->initial_left > 0 && --c->initial_left == 0 && !c->initial_done)
      initial_finished(c);
  }
  amc_queue_done(c->queue, key);
}

static void process_key(amc_controller_t *c, const char *key);

static void process(amc_queue_t *q, const char *qkey, void *data) {
  (void)q;
  /* The queue's string dies in amc_queue_done(), which the paths below may
   * reach (directly or through a synchronous sink): work on a copy. */
  char *key = strdup(qkey);
  if (!key)
    abort();
  process_key(data, key);
  free(key);
}

/* Translates the key's object. A translation with unchanged objects (a
 * memoizing engine) goes to the sink only when the sink holds them all with
 * their checksums; otherwise the engine translates without replays. */
static amc_translation_t *translate_key(amc_controller_t *c, const char *key,
                                        const key_state_t *k, const char *ns,
                                        const char *name) {
  amc_translation_t *t =
      c->engine_ops.translate(c->engine, c->opt.root_kind, ns, name);
  if (t && t->partial && !k->clean) {
    /* the sink may not hold the key's last state (a sync failed or is
     * still running): it gets the whole of it */
    amc_log(AMC_DEBUG, "translate.full", AMC_S("why", "patch"));
    amc_translation_free(t);
    return c->engine_ops.translate_full
               ? c->engine_ops.translate_full(c->engine, c->opt.root_kind, ns,
                                              name)
               : NULL;
  }
  if (!t || t->error || !t->n_unchanged)
    return t;
  if (c->opt.sink_ops.has_unchanged &&
      c->opt.sink_ops.has_unchanged(c->opt.sink, key, t))
    return t;
  amc_log(AMC_DEBUG, "translate.full", AMC_I("unchanged", t->n_unchanged));
  amc_translation_free(t);
  if (!c->engine_ops.translate_full)
    return NULL; /* cannot happen: only memoizing engines make them */
  return c->engine_ops.translate_full(c->engine, c->opt.root_kind, ns, name);
}

static void process_key(amc_controller_t *c, const char *key) {
  uint64_t started = now_ns();
  amc_log_set_key(key);
  key_state_t *k = key_state(c, key, 1);
  char ns[256], name[256];
  if (split_key(key, ns, sizeof ns, name, sizeof name) != 0) {
    amc_log(AMC_ERROR, "reconcile.bad_key");
    finish_key(c, key, k, "error", started);
    amc_log_set_key(NULL);
    return;
  }
  const amc_store_obj_t *o =
      amc_store_get(c->opt.store, c->opt.root_kind, ns[0] ? ns : NULL, name);
  if (!o) {
    amc_deps_remove(c->deps, key);
    if (!k->synced) {
      int initial = k->initial;
      amc_strmap_del(&c->keys, key);
      free(k);
      if (initial && c->initial_left > 0 && --c->initial_left == 0 &&
          !c->initial_done)
        initial_finished(c);
      finish_key(c, key, NULL, "gone", started);
      amc_log_set_key(NULL);
      return;
    }
    amc_log(AMC_INFO, "reconcile.delete");
    k->event_ns = 0;
    k->started_ns = started;
    k->inflight = NULL;
    c->opt.sink_ops.sync(c->opt.sink, c, key, NULL);
    amc_log_set_key(NULL);
    return;
  }
  amc_translation_t *t = translate_key(c, key, k, ns[0] ? ns : NULL, name);
  uint64_t translated = now_ns();
  /* Also during the initial pass: against a real AVI it is paced by the
   * calls (minutes at 10k Gateways), with pauses between translations. */
  uv_timer_start(&c->compact, on_compact, c->opt.compact_idle_ms, 0);
  if (!t) {
    amc_log(AMC_ERROR, "reconcile.oom");
    amc_queue_add_rate_limited(c->queue, key);
    finish_key(c, key, k, "error", started);
    amc_log_set_key(NULL);
    return;
  }
  if (t->error) {
    amc_deps_update(c->deps, key, t->reads, t->n_reads);
    /* Deterministic: retrying cannot help; a change to anything the key
     * read re-queues it. AVI keeps what it has. */
    k->failing = 1;
    k->clean = 0;
    k->event_ns = 0;
    amc_metric_inc(c->m_translate_errors, NULL);
    amc_log(AMC_ERROR, "translate.error", AMC_S("error", t->error));
    if (c->opt.sink_ops.rejected)
      c->opt.sink_ops.rejected(c->opt.sink, key, t);
    amc_translation_free(t);
    amc_queue_forget(c->queue, key);
    finish_key(c, key, k, "translate_error", started);
    amc_log_set_key(NULL);
    return;
  }
  k->failing = 0;
  for (size_t i = 0; i < t->n_diags; i++) {
    const amc_diag_t *d = &t->diags[i];
    amc_log(
        AMC_DEBUG, "translate.diagnostic",
        AMC_S("severity", d->severity == AMC_DIAG_ERROR ? "error" : "warning"),
        AMC_S("object", d->name ? d->name : ""),
        AMC_S("field", d->field ? d->field : ""),
        AMC_S("message", d->message ? d->message : ""));
  }
  amc_metric_inc(c->m_translations,
                 (const char *[]){t->partial ? "patch" : "full"});
  amc_log(AMC_DEBUG, "translate.done", AMC_I("objects", t->n_objects),
          AMC_I("unchanged", t->n_unchanged), AMC_I("patch", t->partial),
          AMC_F("ms", (double)(translated - started) / 1e6),
          AMC_I("reads", t->n_reads), AMC_I("diagnostics", t->n_diags));
  /* The reads matter for the next changes, not this sync: recorded once
   * the sync has started (its first AVI call is out). The sink does not
   * read them (and may free `t` before sync() returns). */
  amc_read_t *reads = t->reads;
  size_t n_reads = t->n_reads;
  int keep_reads = t->partial; /* a patch read what the last one did */
  t->reads = NULL;
  t->n_reads = 0;
  k->started_ns = started;
  k->inflight = t;
  k->clean = 0; /* until this sync succeeds */
  if (k->event_ns) {
    amc_metric_observe(c->m_event_to_sync, NULL,
                       (double)(now_ns() - k->event_ns) / 1e9);
    k->event_ns = 0;
  }
  c->opt.sink_ops.sync(c->opt.sink, c, key, t);
  if (!keep_reads)
    amc_deps_update(c->deps, key, reads, n_reads);
  amc_reads_free(reads, n_reads);
  if (c->engine_ops.settle) /* the first request is out: now the rest */
    c->engine_ops.settle(c->engine);
  amc_log_set_key(NULL);
}

static void sync_done(amc_controller_t *c, const char *key, int status,
                      const char *error);

void amc_controller_sync_done(amc_controller_t *c, const char *key, int status,
                              const char *error) {
  char *copy = strdup(key); /* `key` may be the queue's, freed by done() */
  if (!copy)
    abort();
  sync_done(c, copy, status, error);
  free(copy);
}

static void sync_done(amc_controller_t *c, const char *key, int status,
                      const char *error) {
  key_state_t *k = key_state(c, key, 0);
  if (!k)
    return;
  amc_log_set_key(key);
  int deleted = k->synced && !k->inflight;
  amc_translation_free(k->inflight);
  k->inflight = NULL;
  c->syncs++;
  const char *result = "ok";
  if (status == 0) {
    k->synced = 1;
    k->clean = !deleted;
    amc_queue_forget(c->queue, key);
    amc_log(AMC_DEBUG, "sync.done");
  } else {
    result = "sync_error";
    k->synced = 1; /* something may have been created */
    int64_t delay =
        c->stopping ? -1 : amc_queue_add_rate_limited(c->queue, key);
    amc_log(AMC_WARN, "sync.error", AMC_S("error", error ? error : "failed"),
            AMC_I("retry_ms", delay));
  }
  uint64_t started = k->started_ns;
  if (status == 0 && deleted) {
    /* The gateway is gone and so is its tree: forget the key. */
    k->synced = 0;
    finish_key(c, key, k, "deleted", started);
    if (!amc_queue_is_queued(c->queue, key) && !k->initial) {
      amc_strmap_del(&c->keys, key);
      free(k);
    }
  } else {
    finish_key(c, key, k, result, started);
  }
  amc_log_set_key(NULL);
}

void amc_controller_count_request(amc_controller_t *c, const char *method,
                                  const char *type, int code) {
  char codes[16];
  snprintf(codes, sizeof codes, "%d", code);
  amc_metric_inc(c->m_requests, (const char *[]){method, type, codes});
}

/* ------------------------------------------------------------------------ */
/* Construction */

static void on_resync(uv_timer_t *t) {
  amc_controller_t *c = t->data;
  if (c->processing && !c->stopping) {
    amc_log(AMC_INFO, "sync.resync");
    queue_all(c, 0);
  }
}

amc_controller_t *amc_controller_new(const amc_controller_opts_t *opts) {
  amc_controller_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->opt = *opts;
  if (!c->opt.root_kind)
    c->opt.root_kind = "Gateway";
  if (!c->opt.workers)
    c->opt.workers = 4;
  if (!c->opt.progress_ms)
    c->opt.progress_ms = 1000;
  if (!c->opt.shutdown_timeout_ms)
    c->opt.shutdown_timeout_ms = 10000;
  if (!c->opt.compact_idle_ms)
    c->opt.compact_idle_ms = 1000;
  c->deps = amc_deps_new(c->opt.root_kind);
  amc_queue_options_t qo = {.max_in_flight = c->opt.workers};
  c->queue = amc_queue_new(c->opt.loop, &qo, process, c);
  if (!c->deps || !c->queue) {
    amc_deps_free(c->deps);
    free(c);
    return NULL;
  }
  uv_timer_init(c->opt.loop, &c->progress);
  uv_timer_init(c->opt.loop, &c->resync);
  uv_timer_init(c->opt.loop, &c->stop_timer);
  uv_timer_init(c->opt.loop, &c->compact);
  c->progress.data = c->resync.data = c->stop_timer.data = c->compact.data = c;
  c->open_handles = 4;
  if (c->opt.metrics)
    register_metrics(c);
  else
    c->opt.metrics = NULL;
  amc_store_set_change_listener(c->opt.store, on_store_change, c);
  if (c->opt.resync_seconds) {
    uint64_t ms = (uint64_t)c->opt.resync_seconds * 1000;
    uv_timer_start(&c->resync, on_resync, ms, ms);
  }
  return c;
}

int amc_controller_add_source(amc_controller_t *c, const char *name) {
  if (c->n_sources == MAX_SOURCES)
    return -1;
  amc_metric_add(c->m_watch_restarts, (const char *[]){name}, 0);
  snprintf(c->sources[c->n_sources].name, sizeof c->sources[0].name, "%s",
           name);
  c->sources[c->n_sources].synced = 0;
  c->sources[c->n_sources].gate = 0;
  return c->n_sources++;
}

int amc_controller_add_gate(amc_controller_t *c, const char *name) {
  int id = amc_controller_add_source(c, name);
  if (id >= 0)
    c->sources[id].gate = 1;
  return id;
}

void amc_controller_source_synced(amc_controller_t *c, int id) {
  if (id < 0 || id >= c->n_sources || c->sources[id].synced)
    return;
  c->sources[id].synced = 1;
  amc_log(AMC_INFO, "source.synced", AMC_S("source", c->sources[id].name),
          AMC_I("objects", amc_store_count(c->opt.store, NULL)));
  maybe_start_processing(c);
}

void amc_controller_watch_restarted(amc_controller_t *c, int id) {
  if (id < 0 || id >= c->n_sources)
    return;
  amc_metric_inc(c->m_watch_restarts, (const char *[]){c->sources[id].name});
}

/* ------------------------------------------------------------------------ */
/* Engines and reload */

static void set_engine(amc_controller_t *c, void *engine,
                       const amc_ctrl_engine_ops_t *ops, uint64_t generation,
                       const char *digest) {
  if (c->engine && c->engine_ops.free)
    c->engine_ops.free(c->engine);
  c->engine = engine;
  c->engine_ops = *ops;
  c->generation = generation;
  snprintf(c->digest, sizeof c->digest, "%s", digest ? digest : "");
}

void amc_controller_set_engine(amc_controller_t *c, void *engine,
                               const amc_ctrl_engine_ops_t *ops,
                               uint64_t generation, const char *digest) {
  set_engine(c, engine, ops, generation, digest);
  amc_log(AMC_INFO, "rules.loaded", AMC_I("generation", generation),
          AMC_S("digest", c->digest));
  maybe_start_processing(c);
}

void amc_controller_reload_failed(amc_controller_t *c, const char *error) {
  free(c->last_reload_error);
  c->last_reload_error = strdup(error ? error : "reload failed");
  amc_metric_inc(c->m_reload_failures, NULL);
  amc_metric_inc(c->m_reloads, (const char *[]){"failed"});
  amc_log(AMC_ERROR, "rules.reload_failed",
          AMC_S("error", c->last_reload_error),
          AMC_I("serving_generation", c->generation));
}

void amc_controller_rules_unchanged(amc_controller_t *c) {
  if (!c->last_reload_error)
    return;
  free(c->last_reload_error);
  c->last_reload_error = NULL;
  amc_log(AMC_INFO, "rules.current", AMC_I("generation", c->generation),
          AMC_S("detail", "the rule files are the serving generation's "
                          "again; the last reload error is cleared"));
}

int amc_controller_swap_engine(amc_controller_t *c, void *engine,
                               const amc_ctrl_engine_ops_t *ops,
                               uint64_t generation, const char *digest,
                               char *err, size_t errlen) {
  uint64_t t0 = now_ns();
  const amc_store_obj_t *const *objs;
  size_t n = amc_store_list(c->opt.store, c->opt.root_kind, NULL, &objs);
  amc_buf_t key = AMC_BUF_INIT;
  int rc = 0;
  /* The store is not changed during validation (we are on the loop), so
   * the list stays valid. */
  for (size_t i = 0; i < n && rc == 0; i++) {
    amc_buf_reset(&key);
    amc_buf_printf(&key, "%s/%s/%s", c->opt.root_kind,
                   objs[i]->namespace_ ? objs[i]->namespace_ : "",
                   objs[i]->name);
    amc_translation_t *t = ops->translate(engine, c->opt.root_kind,
                                          objs[i]->namespace_, objs[i]->name);
    key_state_t *k = key_state(c, key.data, 0);
    int was_failing = k && k->failing;
    if (!t) {
      snprintf(err, errlen, "%s: out of memory", key.data);
      rc = -1;
    } else if (t->error && !was_failing) {
      snprintf(err, errlen, "%s", t->error);
      rc = -1;
    }
    amc_translation_free(t);
  }
  amc_buf_free(&key);
  if (rc != 0) {
    if (ops->free)
      ops->free(engine);
    amc_controller_reload_failed(c, err);
    return -1;
  }
  set_engine(c, engine, ops, generation, digest);
  release_memory(c); /* the old generation's VM is gone */
  free(c->last_reload_error);
  c->last_reload_error = NULL;
  amc_metric_inc(c->m_reloads, (const char *[]){"ok"});
  amc_log(AMC_INFO, "rules.reloaded", AMC_I("generation", generation),
          AMC_S("digest", c->digest), AMC_I("validated_gateways", n),
          AMC_F("seconds", (double)(now_ns() - t0) / 1e9));
  if (c->processing && !c->stopping)
    queue_all(c, 0);
  else
    maybe_start_processing(c);
  return 0;
}

const char *amc_controller_digest(const amc_controller_t *c) {
  return c->digest;
}

uint64_t amc_controller_generation(const amc_controller_t *c) {
  return c->generation;
}

/* ------------------------------------------------------------------------ */
/* Readiness and state */

static void put_json_str(amc_buf_t *b, const char *s) {
  amc_buf_putc(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      amc_buf_printf(b, "\\%c", *p);
    else if (*p < 0x20)
      amc_buf_printf(b, "\\u%04x", *p);
    else
      amc_buf_putc(b, (char)*p);
  }
  amc_buf_putc(b, '"');
}

int amc_controller_ready(void *controller, amc_buf_t *b) {
  amc_controller_t *c = controller;
  int sources_ok = 1, standby = 0;
  amc_buf_puts(b, "{\"sources\":{");
  for (int i = 0; i < c->n_sources; i++) {
    if (i)
      amc_buf_putc(b, ',');
    put_json_str(b, c->sources[i].name);
    amc_buf_printf(b, ":%s", c->sources[i].synced ? "true" : "false");
    /* A closed gate (e.g. a replica waiting for the leader Lease) makes a
     * ready standby: it has its inputs and rules, and starts work when the
     * gate opens. */
    if (c->sources[i].gate)
      standby |= !c->sources[i].synced;
    else
      sources_ok &= c->sources[i].synced;
  }
  int reachable =
      c->opt.sink_ops.reachable ? c->opt.sink_ops.reachable(c->opt.sink) : 1;
  amc_buf_printf(b, "},\"sources_synced\":%s", sources_ok ? "true" : "false");
  amc_buf_printf(b, ",\"rules\":{\"loaded\":%s,\"generation\":%llu,\"digest\":",
                 c->engine ? "true" : "false",
                 (unsigned long long)c->generation);
  put_json_str(b, c->digest);
  amc_buf_puts(b, ",\"last_reload_error\":");
  if (c->last_reload_error)
    put_json_str(b, c->last_reload_error);
  else
    amc_buf_puts(b, "null");
  amc_buf_printf(b, ",\"reload_failures\":%.0f}",
                 amc_metric_value(c->m_reload_failures, NULL));
  amc_buf_printf(b, ",\"avi\":{\"reachable\":%s}",
                 reachable ? "true" : "false");
  amc_buf_printf(b, ",\"initial_sync_done\":%s",
                 c->initial_done ? "true" : "false");
  int ready =
      sources_ok && c->engine && reachable && (c->initial_done || standby);
  amc_buf_printf(b, ",\"standby\":%s", standby ? "true" : "false");
  amc_buf_printf(b, ",\"ready\":%s}", ready ? "true" : "false");
  return ready;
}

int amc_controller_synced(const amc_controller_t *c) {
  return c->initial_done;
}

size_t amc_controller_queue_len(const amc_controller_t *c) {
  return amc_queue_len(c->queue) + amc_queue_in_flight(c->queue);
}

uint64_t amc_controller_syncs(const amc_controller_t *c) {
  return c->syncs;
}

void amc_controller_resync(amc_controller_t *c) {
  if (c->processing && !c->stopping)
    queue_all(c, 0);
}

/* ------------------------------------------------------------------------ */
/* Shutdown */

static void stop_finish(amc_controller_t *c) {
  if (!c->stopped)
    return;
  void (*cb)(amc_controller_t *, void *) = c->stopped;
  c->stopped = NULL;
  uv_timer_stop(&c->stop_timer);
  cb(c, c->stopped_data);
}

static void on_drained(amc_queue_t *q, void *data) {
  (void)q;
  amc_log(AMC_INFO, "controller.drained");
  stop_finish(data);
}

static void on_stop_timeout(uv_timer_t *t) {
  amc_controller_t *c = t->data;
  amc_log(AMC_WARN, "controller.abandon",
          AMC_I("in_flight", amc_queue_in_flight(c->queue)));
  if (c->opt.sink_ops.cancel)
    c->opt.sink_ops.cancel(c->opt.sink);
  stop_finish(c);
}

void amc_controller_stop(amc_controller_t *c,
                         void (*done)(amc_controller_t *c, void *data),
                         void *data) {
  if (c->stopping)
    return;
  c->stopping = 1;
  c->stopped = done;
  c->stopped_data = data;
  uv_timer_stop(&c->progress);
  uv_timer_stop(&c->resync);
  uv_timer_stop(&c->compact);
  amc_store_set_change_listener(c->opt.store, NULL, NULL);
  amc_log(AMC_INFO, "controller.stopping",
          AMC_I("in_flight", amc_queue_in_flight(c->queue)));
  uv_timer_start(&c->stop_timer, on_stop_timeout, c->opt.shutdown_timeout_ms,
                 0);
  amc_queue_shutdown(c->queue, on_drained, c);
}

static void free_key_state(void *p) {
  key_state_t *k = p;
  amc_translation_free(k->inflight);
  free(k);
}

static void on_timer_closed(uv_handle_t *h) {
  amc_controller_t *c = h->data;
  if (--c->open_handles > 0)
    return;
  free(c);
}

void amc_controller_free(amc_controller_t *c) {
  if (!c)
    return;
  amc_store_set_change_listener(c->opt.store, NULL, NULL);
  if (c->opt.metrics)
    amc_metrics_set_collect(c->opt.metrics, NULL, NULL);
  amc_queue_close(c->queue);
  amc_deps_free(c->deps);
  amc_strmap_clear(&c->keys, free_key_state);
  if (c->engine && c->engine_ops.free)
    c->engine_ops.free(c->engine);
  c->engine = NULL;
  free(c->last_reload_error);
  uv_close((uv_handle_t *)&c->progress, on_timer_closed);
  uv_close((uv_handle_t *)&c->resync, on_timer_closed);
  uv_close((uv_handle_t *)&c->stop_timer, on_timer_closed);
  uv_close((uv_handle_t *)&c->compact, on_timer_closed);
}

/* ------------------------------------------------------------------------ */
/* Dry-run sink */

/* Per key: "type\x1fname" -> digest of the object's JSON. */
struct amc_dry_run {
  FILE *out;
  amc_strmap_t keys; /* key -> amc_strmap_t* */
};

amc_dry_run_t *amc_dry_run_new(FILE *out) {
  amc_dry_run_t *d = calloc(1, sizeof *d);
  if (d)
    d->out = out;
  return d;
}

static void free_objset(void *p) {
  amc_strmap_t *m = p;
  amc_strmap_clear(m, free);
  free(m);
}

void amc_dry_run_free(amc_dry_run_t *d) {
  if (!d)
    return;
  amc_strmap_clear(&d->keys, free_objset);
  free(d);
}

typedef struct {
  amc_dry_run_t *d;
  amc_strmap_t *next;
  int calls;
} dr_del_t;

static int dr_delete_visit(const char *tn, void *value, void *data) {
  (void)value;
  dr_del_t *x = data;
  if (x->next && amc_strmap_find(x->next, tn))
    return 0;
  const char *sep = strchr(tn, '\x1f');
  fprintf(x->d->out, "dry-run: DELETE %.*s %s\n", (int)(sep - tn), tn, sep + 1);
  x->calls++;
  return 0;
}

/* Prints `json` with the values of private fields ("key",
 * "key_passphrase", "password", ...) replaced: dry-run output is a log. */
static void put_redacted(FILE *out, const char *json) {
  static const char *secret[] = {"\"key\":\"", "\"key_passphrase\":\"",
                                 "\"password\":\"", "\"passphrase\":\"", NULL};
  const char *p = json;
  while (*p) {
    const char *hit = NULL;
    size_t hl = 0;
    for (int i = 0; secret[i]; i++) {
      const char *h = strstr(p, secret[i]);
      if (h && (!hit || h < hit)) {
        hit = h;
        hl = strlen(secret[i]);
      }
    }
    if (!hit) {
      fputs(p, out);
      return;
    }
    fwrite(p, 1, (size_t)(hit - p) + hl, out);
    fputs("<sensitive>\"", out);
    const char *q = hit + hl;
    while (*q && *q != '"')
      q += (*q == '\\' && q[1]) ? 2 : 1;
    p = *q ? q + 1 : q;
  }
}

/* The FNV-1a 64 of the object's JSON: its checksum when the engine set one
 * (the same hash; unchanged objects have nothing else). */
static uint64_t obj_digest(const amc_avi_object_t *o) {
  if (o->cksum[0])
    return strtoull(o->cksum, NULL, 16);
  return amc_fnv64(o->json, o->json_len);
}

static int dr_has_unchanged(void *sink, const char *key,
                            const amc_translation_t *t) {
  amc_dry_run_t *d = sink;
  amc_strmap_t *prev = amc_strmap_get(&d->keys, key);
  amc_buf_t tn = AMC_BUF_INIT;
  int ok = 1;
  for (size_t i = 0; ok && i < t->n_objects; i++) {
    const amc_avi_object_t *o = &t->objects[i];
    if (o->json)
      continue;
    amc_buf_reset(&tn);
    amc_buf_printf(&tn, "%s\x1f%s", o->type, o->name);
    uint64_t *old = prev ? amc_strmap_get(prev, tn.data) : NULL;
    ok = old && *old == obj_digest(o);
  }
  amc_buf_free(&tn);
  return ok;
}

/* dr_sync of a patch (translation.h `partial`): its objects replace
 * theirs in the key's set; nothing is deleted. */
static void dr_sync_partial(amc_dry_run_t *d, amc_controller_t *c,
                            const char *key, const amc_translation_t *t,
                            amc_strmap_t *prev) {
  int calls = 0;
  amc_buf_t tn = AMC_BUF_INIT;
  for (size_t i = 0; i < t->n_objects; i++) {
    const amc_avi_object_t *o = &t->objects[i];
    amc_buf_reset(&tn);
    amc_buf_printf(&tn, "%s\x1f%s", o->type, o->name);
    uint64_t dg = obj_digest(o);
    uint64_t *old = amc_strmap_get(prev, tn.data);
    if (old && *old == dg)
      continue;
    fprintf(d->out, "dry-run: %s %s %s ", old ? "PUT" : "POST", o->type,
            o->name);
    put_redacted(d->out, o->json ? o->json : "(unchanged)");
    fputc('\n', d->out);
    calls++;
    if (!old) {
      old = malloc(sizeof *old);
      if (!old)
        abort();
      amc_strmap_put(prev, tn.data, old, NULL);
    }
    *old = dg;
  }
  amc_buf_free(&tn);
  fprintf(d->out, "dry-run: synced %s calls=%d\n", key, calls);
  fflush(d->out);
  amc_controller_sync_done(c, key, 0, NULL);
}

static void dr_sync(void *sink, amc_controller_t *c, const char *key,
                    const amc_translation_t *t) {
  amc_dry_run_t *d = sink;
  amc_strmap_t *prev = amc_strmap_get(&d->keys, key);
  if (t && t->partial && prev) { /* a patch: the other objects stay */
    dr_sync_partial(d, c, key, t, prev);
    return;
  }
  amc_strmap_t *next = calloc(1, sizeof *next);
  if (!next)
    abort();
  int calls = 0;
  amc_buf_t tn = AMC_BUF_INIT;
  for (size_t i = 0; t && i < t->n_objects; i++) {
    const amc_avi_object_t *o = &t->objects[i];
    amc_buf_reset(&tn);
    amc_buf_printf(&tn, "%s\x1f%s", o->type, o->name);
    uint64_t *dg = malloc(sizeof *dg);
    if (!dg)
      abort();
    *dg = obj_digest(o);
    amc_strmap_put(next, tn.data, dg, NULL);
    uint64_t *old = prev ? amc_strmap_get(prev, tn.data) : NULL;
    if (!old) {
      fprintf(d->out, "dry-run: POST %s %s ", o->type, o->name);
      put_redacted(d->out, o->json ? o->json : "(unchanged)");
      fputc('\n', d->out);
      calls++;
    } else if (*old != *dg) {
      fprintf(d->out, "dry-run: PUT %s %s ", o->type, o->name);
      put_redacted(d->out, o->json ? o->json : "(unchanged)");
      fputc('\n', d->out);
      calls++;
    }
  }
  amc_buf_free(&tn);
  if (prev) {
    dr_del_t x = {d, next, 0};
    amc_strmap_foreach(prev, dr_delete_visit, &x);
    calls += x.calls;
    free_objset(prev);
  }
  if (t)
    amc_strmap_put(&d->keys, key, next, NULL);
  else {
    amc_strmap_del(&d->keys, key);
    free_objset(next);
  }
  fprintf(d->out, "dry-run: synced %s calls=%d\n", key, calls);
  fflush(d->out);
  amc_controller_sync_done(c, key, 0, NULL);
}

const amc_ctrl_sink_ops_t amc_dry_run_ops = {dr_sync, NULL, NULL,
                                             NULL,    NULL, dr_has_unchanged};
