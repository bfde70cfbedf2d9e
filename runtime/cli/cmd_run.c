/* cmd_run.c - `amc run`: wires config, sources, store, controller, rules
 * engine, sink (AVI sync or dry run), admin HTTP and signals on one loop.
 *
 * Lifecycle:
 *   1. configuration (config.h) is loaded and validated; errors exit 2;
 *   2. the rules are loaded (a failure here exits 1: nothing to serve);
 *   3. the admin server starts (its port goes to the log and, if asked, to
 *      --admin-port-file), then the sources do their initial listing
 *      (fs:// or kube, plus MCP for the Istio kinds when MCP_URL is set);
 *   4. the controller syncs every gateway, then runs gc, then follows
 *      changes; SIGHUP and rules-directory events reload the rules;
 *   5. SIGTERM/SIGINT: stop taking keys, finish (or, after a timeout,
 *      abandon) in-flight syncs, close everything, exit 0. */
#include "cli/cli.h"

#include "admin_http.h"
#include "config.h"
#include "controller.h"
#include "fs_source.h"
#include "metrics.h"
#include "store.h"
#include "util/buf.h"
#include "util/log.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "avi/sync.h"
#include "http.h"
#include "kube/kube_source.h"
#include "kube/lease.h"
#include "kube/report.h"
#include "kube/status.h"
#include "mcp/mcp_sink.h"
#include "mcp/mcp_store.h"
#include "rules_engine.h"
#include "settings.h"

extern char **environ;

#define MAX_RULE_WATCHES 16

typedef struct {
  amc_config_t cfg;
  uv_loop_t loop;
  amc_store_t *store;
  amc_metrics_t *metrics;
  amc_controller_t *ctl;
  amc_admin_t *admin;
  amc_fs_source_t *fs;
  amc_kube_client_t *kube;
  amc_kube_source_t *ksrc;
  amc_lease_t *lease;
  amc_kube_status_writer_t *status; /* write-back; NULL without kube */
  amc_kube_report_t *report;
  int kube_id, leader_id;
  int was_leader;
  /* Leadership was won; the leader gate opens once AVI has been re-read
   * (take_over_read: the read in progress began after the win). */
  int take_over, take_over_read;
  lua_State *fs_L; /* plain Lua state for parsing source input */
  amc_fs_loader_t fs_loader;
  int fs_id;
  amc_dry_run_t *dry_run;
  amc_http_t *http;
  amc_avi_sync_t *avi;
  int avi_id; /* the AVI cache counts as a source: keys wait for it */
  uv_timer_t avi_retry;
  uint64_t avi_retry_ms;
  amc_settings_t settings;
  int settings_init;
  const char *cluster; /* the settings' cluster name (ownership marks) */
  const char *rules_dir;
  uint64_t generation;

  uv_signal_t sighup, sigterm, sigint;
  uv_fs_event_t rule_watch[MAX_RULE_WATCHES];
  int n_rule_watches;
  uv_timer_t rules_debounce, rules_check;
  int stopping;
  int timers_init; /* signals, rules timers and watches exist */
  int exit_code;
  amc_metric_t *m_fs_errors;
  /* MCP source (Istio kinds), see mcp_setup */
  amc_mcp_sink_t *mcp;
  amc_mcp_store_t mcp_store;
  amc_mcp_env_buf_t mcp_buf;
  int mcp_id;
} run_t;

static int mcp_owns(const run_t *r, const char *kind);

/* ------------------------------------------------------------------------ */
/* fs source -> store */

static void fs_upsert(void *data, const char *kind, const char *ns,
                      const char *name, const char *json, size_t len) {
  run_t *r = data;
  if (mcp_owns(r, kind))
    return;
  amc_store_put_json(r->store, kind, ns && *ns ? ns : NULL, name, json, len,
                     NULL, NULL, NULL);
}

static void fs_remove(void *data, const char *kind, const char *ns,
                      const char *name) {
  run_t *r = data;
  if (mcp_owns(r, kind))
    return;
  amc_store_delete(r->store, kind, ns && *ns ? ns : NULL, name);
}

static void fs_synced(void *data) {
  run_t *r = data;
  /* The parse state holds the garbage of every file read: drop it. */
  lua_gc(r->fs_L, LUA_GCCOLLECT, 0);
  amc_controller_source_synced(r->ctl, r->fs_id);
}

static void fs_watch_restarted(void *data) {
  run_t *r = data;
  amc_controller_watch_restarted(r->ctl, r->fs_id);
}

static void fs_error(void *data, const char *path, const char *msg) {
  (void)path;
  (void)msg;
  run_t *r = data;
  amc_metric_inc(r->m_fs_errors, (const char *[]){"fs"});
}

/* ------------------------------------------------------------------------ */
/* kube source -> store; leader election */

static void kube_upsert(void *data, const char *kind, const char *ns,
                        const char *name, const char *json, size_t len) {
  run_t *r = data;
  char err[512];
  if (mcp_owns(r, kind))
    return;
  if (amc_kube_store_put(r->store, r->fs_L, json, len, NULL, err, sizeof err) !=
      0) {
    amc_log(AMC_WARN, "kube.bad_object", AMC_S("kind", kind),
            AMC_S("namespace", ns), AMC_S("name", name), AMC_S("error", err));
    amc_metric_inc(r->m_fs_errors, (const char *[]){"kube"});
  }
}

static void kube_remove(void *data, const char *kind, const char *ns,
                        const char *name) {
  run_t *r = data;
  if (mcp_owns(r, kind))
    return;
  amc_store_delete(r->store, kind, ns && *ns ? ns : NULL, name);
}

static void kube_synced(void *data) {
  run_t *r = data;
  amc_controller_source_synced(r->ctl, r->kube_id);
}

static void kube_watch_restarted(void *data, const char *kind) {
  (void)kind;
  run_t *r = data;
  amc_controller_watch_restarted(r->ctl, r->kube_id);
}

static void begin_stop(run_t *r, const char *why);

/* ------------------------------------------------------------------------ */
/* Status write-back (kube/report.h, kube/status.h) */

static void status_setup(run_t *r) {
  r->status = amc_kube_status_writer_new(r->kube, NULL, NULL);
  if (!r->status)
    return;
  r->report = amc_kube_report_new(r->status, r->store);
  amc_kube_status_writer_set_events(r->status, r->cfg.events);
  /* Without leader election every replica writes; with it, the leader. */
  amc_kube_status_writer_enable(r->status, !r->cfg.leader_elect);
}

static void status_enable(run_t *r, int on) {
  if (r->status)
    amc_kube_status_writer_enable(r->status, on);
}

/* After a key's sync (t == NULL: the gateway was deleted) or a failed
 * translation (t->error). */
static void status_report(run_t *r, const char *key, const amc_translation_t *t,
                          int ok, const char *error) {
  if (r->report && !r->stopping)
    amc_kube_report(r->report, key, t, ok, error);
}

static void status_free(run_t *r) {
  if (!r->status)
    return;
  amc_kube_report_free(r->report);
  r->report = NULL;
  amc_kube_status_writer_cancel(r->status);
  amc_kube_status_writer_free(r->status);
  r->status = NULL;
}

static void avi_start(run_t *r);

/* A standby read AVI when it started; the old leader has written since.
 * Planning from that read would re-send what the old leader already sent
 * (or miss what it created), so the new leader re-reads AVI first and
 * opens the leader gate when the read is complete. A read already running
 * began before the win and may miss the old leader's last writes: it is
 * followed by another. */
static void take_over(run_t *r) {
  if (!r->avi) {
    amc_controller_source_synced(r->ctl, r->leader_id);
    return;
  }
  r->take_over = 1;
  if (!amc_avi_sync_reading(r->avi)) {
    r->take_over_read = 1;
    uv_timer_stop(&r->avi_retry); /* this read is the retry */
    avi_start(r);
  }
}

static void on_leading(void *data, int leading) {
  run_t *r = data;
  if (leading) {
    amc_log(AMC_INFO, "leader.acquired",
            AMC_S("identity", amc_lease_identity(r->lease)));
    r->was_leader = 1;
    status_enable(r, 1);
    take_over(r);
    return;
  }
  if (r->was_leader && !r->stopping) {
    /* Another replica may lead now: stop at once (exit 1, the pod
     * restarts as a follower), as controller-runtime does. */
    amc_log(AMC_ERROR, "leader.lost");
    r->exit_code = AMC_EXIT_FAIL;
    begin_stop(r, "leadership lost");
  }
}

static int kube_setup(run_t *r, char *err, size_t errlen) {
  amc_config_t *cfg = &r->cfg;
  amc_kubeconfig_t kc;
  int rc = cfg->kubeconfig
               ? amc_kubeconfig_load(cfg->kubeconfig, cfg->kube_context, &kc,
                                     err, errlen)
               : amc_kubeconfig_in_cluster(NULL, &kc, err, errlen);
  if (rc != 0) {
    amc_kubeconfig_free(&kc);
    return -1;
  }
  r->kube = amc_kube_client_new(&r->loop, r->http, &kc);
  if (!r->kube) {
    snprintf(err, errlen, "cannot create the Kubernetes client");
    amc_kubeconfig_free(&kc);
    return -1;
  }
  amc_kube_source_opts_t so = {0};
  if (cfg->mcp) /* MCP owns the Istio kinds: do not even watch them */
    so.resources =
        AMC_KUBE_ALL &
        ~(unsigned)(AMC_KUBE_GATEWAYS | AMC_KUBE_VIRTUALSERVICES |
                    AMC_KUBE_DESTINATIONRULES | AMC_KUBE_SERVICEENTRIES);
  amc_kube_source_sink_t sink = {kube_upsert, kube_remove, kube_synced, NULL,
                                 kube_watch_restarted};
  r->ksrc = amc_kube_source_new(&r->loop, r->kube, &so, &sink, r);
  r->kube_id = amc_controller_add_source(r->ctl, "kube");
  if (cfg->leader_elect) {
    amc_lease_opts_t lo = {
        .namespace_ = cfg->lease_namespace
                          ? cfg->lease_namespace
                          : (kc.namespace_ ? kc.namespace_ : "default"),
        .name = cfg->lease_name,
        .lease_duration_ms = (uint64_t)cfg->lease_duration_ms,
        .renew_deadline_ms = (uint64_t)cfg->renew_deadline_ms,
        .retry_period_ms = (uint64_t)cfg->retry_period_ms,
        .on_change = on_leading,
        .data = r,
    };
    r->lease = amc_lease_new(&r->loop, r->kube, &lo, err, errlen);
    if (!r->lease) {
      amc_kubeconfig_free(&kc);
      return -1;
    }
    r->leader_id = amc_controller_add_gate(r->ctl, "leader");
  }
  amc_kubeconfig_free(&kc);
  status_setup(r);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* MCP source: the Istio kinds (Gateway, VirtualService, DestinationRule,
 * ServiceEntry) from istiod / Galley.
 *
 * Ownership is per kind: when MCP is configured (cfg.mcp), it alone puts
 * and deletes the Istio kinds (mcp_store.h marks them source "mcp"); the
 * fs:// or kube source feeds everything else and its Istio objects are
 * ignored (kube does not even watch them). The controller waits for MCP's
 * first complete state of every kind before it syncs or collects garbage;
 * a reconnect counts as a watch restart and changes nothing by itself
 * (the server's full state after the resubscribe replaces MCP's set). */

static int mcp_owns(const run_t *r, const char *kind) {
  return r->cfg.mcp && kind && amc_pb_kind_by_name(kind) != NULL;
}

static void mcp_synced_all(void *data) {
  run_t *r = data;
  amc_log(AMC_INFO, "mcp.synced",
          AMC_I("objects_changed", (long long)r->mcp_store.changes));
  if (r->ctl)
    amc_controller_source_synced(r->ctl, r->mcp_id);
}

/* The sink logs every event itself ("mcp.stream"); here they are counted. */
static void mcp_event(void *data, const char *event, const char *detail) {
  (void)detail;
  run_t *r = data;
  if (!strcmp(event, "disconnected")) {
    if (r->ctl)
      amc_controller_watch_restarted(r->ctl, r->mcp_id);
  } else if (!strcmp(event, "nack")) {
    amc_metric_inc(r->m_fs_errors, (const char *[]){"mcp"});
  }
}

/* Parses the MCP options and registers the source (before the engine is
 * set, so nothing is synced before MCP's first complete state). */
static int mcp_setup(run_t *r, char *err, size_t errlen) {
  amc_mcp_options_t o;
  amc_mcp_mode_t mode;
  char e[512];
  if (amc_mcp_options_from_url(&o, &mode, &r->mcp_buf, r->cfg.mcp_url, e,
                               sizeof e) != 0) {
    snprintf(err, errlen, "mcp-url: %s", e);
    return -1;
  }
  r->mcp_id = amc_controller_add_source(r->ctl, "mcp");
  amc_metric_add(r->m_fs_errors, (const char *[]){"mcp"}, 0);
  return 0;
}

static int mcp_start(run_t *r, char *err, size_t errlen) {
  amc_mcp_options_t o;
  amc_mcp_mode_t mode;
  if (amc_mcp_options_from_url(&o, &mode, &r->mcp_buf, r->cfg.mcp_url, err,
                               errlen) != 0)
    return -1;
  amc_mcp_store_init(&r->mcp_store, r->store);
  r->mcp_store.on_synced_all = mcp_synced_all;
  r->mcp_store.on_event = mcp_event;
  r->mcp_store.data = r;
  amc_log(AMC_INFO, "source.listing", AMC_S("source", "mcp"),
          AMC_S("url", r->mcp_buf.url),
          AMC_S("protocol", mode == AMC_MCP_XDS ? "xds" : "legacy"));
  r->mcp = amc_mcp_sink_start(&r->loop, mode, &o, amc_mcp_store_ops(),
                              &r->mcp_store, err, errlen);
  return r->mcp ? 0 : -1;
}

static void mcp_closed(void *ud) {
  (void)ud; /* the sink frees itself */
}

static void mcp_close(run_t *r) {
  if (r->mcp) {
    amc_mcp_sink_close(r->mcp, mcp_closed);
    r->mcp = NULL;
  }
}

/* ------------------------------------------------------------------------ */
/* AVI sink: controller <-> avi/sync.h */

typedef struct {
  run_t *r;
  const amc_translation_t *t; /* valid until amc_controller_sync_done */
  char key[];
} avi_call_t;

static void avi_key_done(const amc_avi_sync_result_t *res, void *data) {
  avi_call_t *call = data;
  run_t *r = call->r;
  if (res->ok && (res->calls[1] || res->calls[2] || res->calls[3]))
    amc_log(AMC_INFO, "avi.synced", AMC_S("gateway", call->key),
            AMC_I("post", res->calls[1]), AMC_I("put", res->calls[2]),
            AMC_I("delete", res->calls[3]));
  status_report(r, call->key, call->t, res->ok, res->error);
  if (r->ctl)
    amc_controller_sync_done(r->ctl, call->key, res->ok ? 0 : -1, res->error);
  free(call);
}

static void avi_sync(void *sink, amc_controller_t *c, const char *key,
                     const amc_translation_t *t) {
  (void)c;
  run_t *r = sink;
  size_t n = strlen(key);
  avi_call_t *call = malloc(sizeof *call + n + 1);
  if (!call)
    abort();
  call->r = r;
  call->t = t;
  memcpy(call->key, key, n + 1);
  amc_avi_sync_key(r->avi, key, t, avi_key_done, call);
}

static void avi_gc_done(const amc_avi_sync_result_t *res, void *data) {
  (void)data;
  if (res->ok)
    amc_log(AMC_INFO, "avi.gc_done", AMC_I("deleted", res->calls[3]));
  else
    amc_log(AMC_WARN, "avi.gc_failed", AMC_S("error", res->error));
}

static void avi_gc(void *sink, const char *const *live, size_t n) {
  run_t *r = sink;
  amc_avi_sync_gc(r->avi, live, n, avi_gc_done, r);
}

static int avi_reachable(void *sink) {
  run_t *r = sink;
  return amc_avi_sync_reachable(r->avi);
}

static void avi_rejected(void *sink, const char *key,
                         const amc_translation_t *t) {
  status_report(sink, key, t, 0, NULL);
}

static int avi_has_unchanged(void *sink, const char *key,
                             const amc_translation_t *t) {
  run_t *r = sink;
  return amc_avi_sync_has_unchanged(r->avi, key, t);
}

static const amc_ctrl_sink_ops_t avi_ops = {
    avi_sync, avi_gc, avi_reachable, NULL, avi_rejected, avi_has_unchanged};

static void avi_observe(const char *method, const char *type, long status,
                        void *data) {
  run_t *r = data;
  if (r->ctl)
    amc_controller_count_request(r->ctl, method, type ? type : "", (int)status);
}

static void on_avi_retry(uv_timer_t *t) {
  avi_start(t->data);
}

static void avi_started(const amc_avi_sync_result_t *res, void *data) {
  run_t *r = data;
  if (r->stopping)
    return;
  if (res->ok) {
    amc_log(AMC_INFO, "avi.ready",
            AMC_I("cached", amc_avi_sync_cached(r->avi)));
    r->avi_retry_ms = 0;
    amc_controller_source_synced(r->ctl, r->avi_id);
    if (r->take_over && r->take_over_read) {
      r->take_over = r->take_over_read = 0;
      amc_controller_source_synced(r->ctl, r->leader_id);
    } else if (r->take_over) {
      r->take_over_read = 1;
      avi_start(r);
    }
    return;
  }
  r->avi_retry_ms = r->avi_retry_ms ? r->avi_retry_ms * 2 : 500;
  if (r->avi_retry_ms > 30000)
    r->avi_retry_ms = 30000;
  amc_log(AMC_WARN, "avi.start_failed", AMC_S("error", res->error),
          AMC_I("retry_ms", r->avi_retry_ms));
  uv_timer_start(&r->avi_retry, on_avi_retry, r->avi_retry_ms, 0);
}

static void avi_start(run_t *r) {
  amc_avi_sync_start(r->avi, avi_started, r);
}

static int avi_setup(run_t *r, char *err, size_t errlen) {
  amc_config_t *cfg = &r->cfg;
  amc_avi_sync_opts_t o = {
      .controller = cfg->avi_url,
      .username = cfg->avi_username,
      .password = cfg->avi_password,
      .version = cfg->avi_version,
      .tenant = cfg->avi_tenant,
      .cluster = r->cluster,
      .ca_file = cfg->avi_ca_file,
      .insecure = cfg->avi_insecure,
      .rate = cfg->avi_rate,
      .burst = cfg->avi_burst,
  };
  r->avi = amc_avi_sync_new(&r->loop, r->http, &o);
  if (!r->avi) {
    snprintf(err, errlen, "invalid AVI options");
    return -1;
  }
  amc_avi_sync_set_observer(r->avi, avi_observe, r);
  uv_timer_init(&r->loop, &r->avi_retry);
  r->avi_retry.data = r;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Rules: load, reload, watch */

static amc_translation_t *engine_translate(void *engine, const char *kind,
                                           const char *ns, const char *name) {
  return amc_rules_engine_translate(engine, kind, ns, name);
}

static void engine_free(void *engine) {
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(engine, &st);
  if (st.entries || st.hits || st.misses)
    amc_log(AMC_INFO, "rules.memo", AMC_I("entries", st.entries),
            AMC_I("bytes", st.bytes), AMC_I("hits", st.hits),
            AMC_I("misses", st.misses), AMC_I("patches", st.patches),
            AMC_I("patches_declined", st.declined));
  amc_rules_engine_free(engine);
}

static size_t engine_memory(void *engine) {
  return amc_rules_engine_memory(engine);
}

static size_t engine_compact(void *engine) {
  return amc_rules_engine_compact(engine);
}

static void engine_changed(void *engine, const char *kind, const char *ns,
                           const char *name, const char *old_json,
                           const char *new_json) {
  amc_rules_engine_changed(engine, kind, ns, name, old_json, new_json);
}

static amc_translation_t *engine_translate_full(void *engine, const char *kind,
                                                const char *ns,
                                                const char *name) {
  return amc_rules_engine_translate_full(engine, kind, ns, name);
}

static void engine_settle(void *engine) {
  amc_rules_engine_settle(engine);
}

static const amc_ctrl_engine_ops_t engine_ops = {.translate = engine_translate,
                                                 .free = engine_free,
                                                 .memory = engine_memory,
                                                 .compact = engine_compact,
                                                 .changed = engine_changed,
                                                 .translate_full =
                                                     engine_translate_full,
                                                 .settle = engine_settle};

/* Loads the rules directory into a new engine. NULL with `err` on failure. */
static amc_rules_engine_t *load_engine(run_t *r, char *err, size_t errlen) {
  amc_rules_engine_t *e = amc_rules_engine_new(r->store, &r->settings, NULL);
  if (!e) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (amc_rules_engine_load(e, r->rules_dir, err, errlen) != 0) {
    amc_rules_engine_free(e);
    return NULL;
  }
  /* --incremental (default on): re-translate only what changed after a
   * store change (rules_engine.h "Memo"); the controller reports changes
   * and falls back to full translations. It costs ~0.2 KB per
   * VirtualService virtual host (compressed entries) and a fixed 256 KB;
   * --incremental=false turns it off. */
  if (r->cfg.incremental && amc_rules_engine_set_memo(e, 1) != 0) {
    amc_rules_engine_free(e);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  return e;
}

/* The rule files are those of the active generation: nothing to load. */
static void rules_unchanged(run_t *r, const char *why, uint64_t t0) {
  amc_controller_rules_unchanged(r->ctl);
  amc_log(AMC_DEBUG, "rules.unchanged", AMC_S("trigger", why),
          AMC_F("seconds", (double)(uv_hrtime() - t0) / 1e9));
}

static void reload_rules(run_t *r, const char *why) {
  if (r->stopping)
    return;
  char err[2048], now[65];
  uint64_t t0 = uv_hrtime();
  /* The files first: most triggers (the periodic check, a SIGHUP, an
   * event for an unrelated file) find them unchanged, and loading a VM
   * only to compare digests would cost milliseconds and a few MB. */
  if (amc_rules_dir_digest(r->rules_dir, now, err, sizeof err) == 0 &&
      strcmp(now, amc_controller_digest(r->ctl)) == 0) {
    rules_unchanged(r, why, t0);
    return;
  }
  amc_rules_engine_t *e = load_engine(r, err, sizeof err);
  if (!e) {
    amc_controller_reload_failed(r->ctl, err);
    return;
  }
  if (strcmp(amc_rules_engine_digest(e), amc_controller_digest(r->ctl)) == 0) {
    /* (changed back between the digest and the load) */
    amc_rules_engine_free(e);
    rules_unchanged(r, why, t0);
    return;
  }
  amc_log(AMC_INFO, "rules.reload", AMC_S("trigger", why),
          AMC_S("digest", amc_rules_engine_digest(e)));
  char digest[80];
  snprintf(digest, sizeof digest, "%s", amc_rules_engine_digest(e));
  if (amc_controller_swap_engine(r->ctl, e, &engine_ops, r->generation + 1,
                                 digest, err, sizeof err) == 0)
    r->generation++;
}

static void on_rules_debounce(uv_timer_t *t) {
  reload_rules(t->data, "watch");
}

static void on_rules_check(uv_timer_t *t) {
  reload_rules(t->data, "periodic");
}

static void on_rules_event(uv_fs_event_t *h, const char *name, int events,
                           int status) {
  (void)events;
  (void)status;
  run_t *r = h->data;
  /* Any event counts, '..data' swaps included: filesystems report the
   * ConfigMap symlink swap differently. The digest decides. */
  amc_log(AMC_DEBUG, "rules.event", AMC_S("name", name ? name : ""));
  uv_timer_start(&r->rules_debounce, on_rules_debounce,
                 (uint64_t)r->cfg.rules_debounce_ms, 0);
}

/* Watches the rules directory and its visible subdirectories (rules/lib). */
static void watch_rules(run_t *r, const char *dir, int depth) {
  if (r->n_rule_watches == MAX_RULE_WATCHES)
    return;
  uv_fs_event_t *h = &r->rule_watch[r->n_rule_watches];
  uv_fs_event_init(&r->loop, h);
  h->data = r;
  r->n_rule_watches++;
  int rc = uv_fs_event_start(h, on_rules_event, dir, 0);
  if (rc < 0)
    amc_log(AMC_WARN, "rules.watch_failed", AMC_S("path", dir),
            AMC_S("error", uv_strerror(rc)));
  if (depth >= 2)
    return;
  uv_fs_t req;
  if (uv_fs_scandir(NULL, &req, dir, 0, NULL) < 0) {
    uv_fs_req_cleanup(&req);
    return;
  }
  uv_dirent_t ent;
  amc_buf_t p = AMC_BUF_INIT;
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    if (ent.name[0] == '.')
      continue;
    amc_buf_reset(&p);
    amc_buf_printf(&p, "%s/%s", dir, ent.name);
    struct stat st;
    if (stat(p.data, &st) == 0 && S_ISDIR(st.st_mode))
      watch_rules(r, p.data, depth + 1);
  }
  amc_buf_free(&p);
  uv_fs_req_cleanup(&req);
}

/* ------------------------------------------------------------------------ */
/* Signals and shutdown */

static void close_cb_noop(uv_handle_t *h) {
  (void)h;
}

/* Shutdown chain: controller drained -> local handles closed -> Lease
 * released -> kube source stopped -> clients freed -> HTTP closed. */
static void after_kube_source(void *data) {
  run_t *r = data;
  r->ksrc = NULL;
  status_free(r);
  amc_kube_client_free(r->kube);
  r->kube = NULL;
  if (r->avi) {
    amc_avi_sync_free(r->avi); /* drops work in flight, no callbacks */
    r->avi = NULL;
  }
  if (r->http) {
    amc_http_close(r->http, NULL, NULL);
    r->http = NULL;
  }
  amc_log(AMC_INFO, "run.stopped", AMC_I("exit_code", r->exit_code));
}

static void after_lease(void *data) {
  run_t *r = data;
  r->lease = NULL;
  if (r->ksrc)
    amc_kube_source_stop(r->ksrc, after_kube_source, r);
  else
    after_kube_source(r);
}

static void on_stopped(amc_controller_t *c, void *data) {
  (void)c;
  run_t *r = data;
  amc_fs_source_close(r->fs);
  r->fs = NULL;
  mcp_close(r);
  amc_admin_close(r->admin);
  r->admin = NULL;
  uv_close((uv_handle_t *)&r->sighup, close_cb_noop);
  uv_close((uv_handle_t *)&r->sigterm, close_cb_noop);
  uv_close((uv_handle_t *)&r->sigint, close_cb_noop);
  uv_close((uv_handle_t *)&r->rules_debounce, close_cb_noop);
  uv_close((uv_handle_t *)&r->rules_check, close_cb_noop);
  for (int i = 0; i < r->n_rule_watches; i++)
    uv_close((uv_handle_t *)&r->rule_watch[i], close_cb_noop);
  if (r->avi)
    uv_close((uv_handle_t *)&r->avi_retry, close_cb_noop);
  amc_controller_free(r->ctl);
  r->ctl = NULL;
  if (r->lease)
    amc_lease_stop(r->lease, after_lease, r); /* releases a held Lease */
  else
    after_lease(r);
}

static void begin_stop(run_t *r, const char *why) {
  if (r->stopping)
    return;
  r->stopping = 1;
  amc_log(AMC_INFO, "run.stopping", AMC_S("reason", why));
  uv_timer_stop(&r->rules_debounce);
  uv_timer_stop(&r->rules_check);
  amc_controller_stop(r->ctl, on_stopped, r);
}

static void on_signal(uv_signal_t *h, int signum) {
  run_t *r = h->data;
  if (signum == SIGHUP) {
    amc_log(AMC_INFO, "signal", AMC_S("signal", "SIGHUP"));
    reload_rules(r, "SIGHUP");
    return;
  }
  if (r->stopping)
    return;
  amc_log(AMC_INFO, "signal",
          AMC_S("signal", signum == SIGTERM ? "SIGTERM" : "SIGINT"));
  begin_stop(r, "signal");
}

/* ------------------------------------------------------------------------ */
/* Start-up */

static int write_port_file(const char *path, int port) {
  amc_buf_t tmp = AMC_BUF_INIT;
  amc_buf_printf(&tmp, "%s.tmp", path);
  FILE *f = fopen(tmp.data, "w");
  int rc = -1;
  if (f) {
    fprintf(f, "%d\n", port);
    if (fclose(f) == 0 && rename(tmp.data, path) == 0)
      rc = 0;
  }
  amc_buf_free(&tmp);
  return rc;
}

static const char *default_rules_dir(void) {
  struct stat st;
  if (stat("rules", &st) == 0 && S_ISDIR(st.st_mode))
    return "rules";
  return "/usr/share/amc/rules";
}

static int setup(run_t *r, char *err, size_t errlen) {
  amc_config_t *cfg = &r->cfg;
  /* One HTTP module (one CURLM) for AVI and the Kubernetes API. */
  r->http = amc_http_new(&r->loop);
  if (!r->http) {
    snprintf(err, errlen, "cannot start the HTTP client");
    return AMC_EXIT_FAIL;
  }
  amc_settings_init(&r->settings);
  r->settings_init = 1;
  if (cfg->settings_file &&
      amc_settings_load_file(&r->settings, cfg->settings_file, err, errlen) !=
          0)
    return AMC_EXIT_USAGE;
  /* Flags and environment override the settings file. */
  if (cfg->cluster_name)
    amc_settings_set(&r->settings, "cluster", cfg->cluster_name);
  if (cfg->cloud_name)
    amc_settings_set(&r->settings, "cloud", cfg->cloud_name);
  if (cfg->avi_tenant)
    amc_settings_set(&r->settings, "tenant", cfg->avi_tenant);
  r->cluster = r->settings.cluster;
  r->store = amc_store_new();
  r->metrics = amc_metrics_new();
  r->m_fs_errors = amc_metrics_counter(
      r->metrics, "amc_source_errors_total",
      "Source input errors (files that do not parse, bad events).",
      (const char *[]){"source", NULL});
  amc_metric_add(r->m_fs_errors, (const char *[]){"fs"}, 0);

  amc_ctrl_sink_ops_t sink_ops;
  void *sink;
  if (cfg->dry_run) {
    r->dry_run = amc_dry_run_new(stdout);
    sink_ops = amc_dry_run_ops;
    sink = r->dry_run;
  } else {
    if (avi_setup(r, err, errlen) != 0)
      return AMC_EXIT_USAGE;
    sink_ops = avi_ops;
    sink = r;
  }
  amc_controller_opts_t co = {
      .loop = &r->loop,
      .store = r->store,
      .metrics = r->metrics,
      .workers = (unsigned)cfg->workers,
      .resync_seconds = (unsigned)cfg->resync_seconds,
      .sink_ops = sink_ops,
      .sink = sink,
  };
  r->ctl = amc_controller_new(&co);
  if (!r->ctl) {
    snprintf(err, errlen, "out of memory");
    return AMC_EXIT_FAIL;
  }

  /* Sources are registered before the engine is set: the controller starts
   * only when every registered source has synced, and an initial pass (and
   * its gc) over an empty store would delete everything amc owns. */
  r->fs_L = luaL_newstate();
  luaL_openlibs(r->fs_L);
  if (cfg->fs_dir) {
    r->fs_id = amc_controller_add_source(r->ctl, "fs");
  } else if (kube_setup(r, err, errlen) != 0) {
    return AMC_EXIT_USAGE;
  }
  if (cfg->mcp && mcp_setup(r, err, errlen) != 0)
    return AMC_EXIT_USAGE;
  if (r->avi)
    r->avi_id = amc_controller_add_source(r->ctl, "avi");

  if (!cfg->istio_enabled) {
    /* The original controller's switch: Istio objects are not programmed.
     * A gate that never opens: sources and rules run, AVI is not touched. */
    amc_controller_add_gate(r->ctl, "istio");
    amc_log(AMC_WARN, "istio.disabled",
            AMC_S("detail", "ISTIO_ENABLED=false: Gateways are not "
                            "programmed on AVI"));
  }

  /* Rules. */
  r->rules_dir = cfg->rules_dir ? cfg->rules_dir : default_rules_dir();
  char lerr[2048];
  amc_rules_engine_t *e = load_engine(r, lerr, sizeof lerr);
  if (!e) {
    snprintf(err, errlen, "rules %s: %.1900s", r->rules_dir, lerr);
    return AMC_EXIT_FAIL;
  }
  r->generation = 1;
  amc_controller_set_engine(r->ctl, e, &engine_ops, 1,
                            amc_rules_engine_digest(e));

  /* Admin HTTP. */
  if (cfg->admin_port >= 0) {
    r->admin =
        amc_admin_start(&r->loop, cfg->admin_addr, cfg->admin_port, r->metrics,
                        amc_controller_ready, r->ctl, err, errlen);
    if (!r->admin)
      return AMC_EXIT_USAGE;
    amc_log(AMC_INFO, "admin.listening", AMC_S("addr", cfg->admin_addr),
            AMC_I("port", amc_admin_port(r->admin)));
    if (cfg->admin_port_file &&
        write_port_file(cfg->admin_port_file, amc_admin_port(r->admin)) != 0) {
      snprintf(err, errlen, "admin-port-file %s: %s", cfg->admin_port_file,
               strerror(errno));
      return AMC_EXIT_USAGE;
    }
  }

  /* Signals and the rules watch. */
  uv_signal_init(&r->loop, &r->sighup);
  uv_signal_init(&r->loop, &r->sigterm);
  uv_signal_init(&r->loop, &r->sigint);
  r->sighup.data = r->sigterm.data = r->sigint.data = r;
  uv_signal_start(&r->sighup, on_signal, SIGHUP);
  uv_signal_start(&r->sigterm, on_signal, SIGTERM);
  uv_signal_start(&r->sigint, on_signal, SIGINT);
  uv_timer_init(&r->loop, &r->rules_debounce);
  uv_timer_init(&r->loop, &r->rules_check);
  r->timers_init = 1;
  r->rules_debounce.data = r->rules_check.data = r;
  watch_rules(r, r->rules_dir, 0);
  /* A periodic digest check catches events a watch missed. */
  uv_timer_start(&r->rules_check, on_rules_check, 60000, 60000);

  if (r->avi)
    avi_start(r); /* login and read what amc owns, in parallel */
  if (r->lease)
    amc_lease_start(r->lease);
  if (cfg->mcp && mcp_start(r, err, errlen) != 0)
    return AMC_EXIT_USAGE;
  if (r->ksrc) {
    amc_log(AMC_INFO, "source.listing", AMC_S("source", "kube"));
    amc_kube_source_start(r->ksrc);
    return AMC_EXIT_OK;
  }
  /* Source: the initial listing happens here (registered earlier). */
  r->fs_loader.L = r->fs_L;
  r->fs_loader.default_namespace = cfg->default_namespace;
  amc_fs_source_opts_t fo = {
      .root = cfg->fs_dir,
      .debounce_ms = (unsigned)cfg->fs_debounce_ms,
      .resync_ms = (unsigned)cfg->resync_seconds * 1000,
      .parse = amc_fs_parse_loader,
      .parse_data = &r->fs_loader,
      .sink = {fs_upsert, fs_remove, fs_synced, fs_error, NULL,
               fs_watch_restarted},
      .sink_data = r,
  };
  amc_log(AMC_INFO, "source.listing", AMC_S("source", cfg->source));
  r->fs = amc_fs_source_start(&r->loop, &fo, err, errlen);
  if (!r->fs)
    return AMC_EXIT_USAGE;
  return AMC_EXIT_OK;
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

int amc_cmd_run(int argc, char **argv) {
  run_t *r = calloc(1, sizeof *r);
  if (!r)
    return AMC_EXIT_FAIL;
  char err[2048];
  int rc =
      amc_config_load(&r->cfg, argc, argv, environ, stdout, err, sizeof err);
  if (rc == AMC_CONFIG_HELP) {
    amc_config_free(&r->cfg);
    free(r);
    return AMC_EXIT_OK;
  }
  if (rc != 0) {
    fprintf(stderr, "amc run: %s\n", err);
    amc_config_free(&r->cfg);
    free(r);
    return AMC_EXIT_USAGE;
  }
  amc_log_init((amc_log_level_t)amc_log_level_parse(r->cfg.log_level),
               strcmp(r->cfg.log_format, "json") == 0 ? AMC_LOG_JSON
                                                      : AMC_LOG_LOGFMT,
               stderr);
  amc_log(AMC_INFO, "run.start", AMC_S("version", AMC_VERSION),
          AMC_S("source", r->cfg.source),
          AMC_S("mcp", r->cfg.mcp ? r->cfg.mcp_url : ""),
          AMC_S("avi", r->cfg.dry_run ? "dry-run" : r->cfg.avi_url),
          AMC_S("cluster", r->cfg.cluster_name ? r->cfg.cluster_name : ""),
          AMC_S("cloud", r->cfg.cloud_name ? r->cfg.cloud_name : ""),
          AMC_B("istio_enabled", r->cfg.istio_enabled));
  if (r->cfg.avi_insecure)
    amc_log(AMC_WARN, "avi.tls_verification_disabled");
  /* Sources: fs://DIR, or the cluster ("kube", and "mcp" = kube + MCP). */
  if (r->cfg.leader_elect && r->cfg.fs_dir) {
    /* A Lease lives in the cluster: without the Kubernetes source there is
     * none to hold (a local fs:// run is a single replica). */
    amc_log(AMC_WARN, "leader_election.off",
            AMC_S("detail", "--leader-elect needs --source kube; ignored"));
    r->cfg.leader_elect = 0;
  }
  /* A peer closing a socket must not kill the process. */
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&r->loop);
  rc = setup(r, err, sizeof err);
  if (rc != AMC_EXIT_OK) {
    fprintf(stderr, "amc run: %s\n", err);
    amc_log(AMC_ERROR, "run.failed", AMC_S("error", err));
    /* Close what setup made, owners first (each closes its own handles),
     * then any plain handle left (signals, timers, watches). */
    r->stopping = 1; /* no reload from a timer meanwhile */
    if (r->timers_init) {
      uv_timer_stop(&r->rules_debounce);
      uv_timer_stop(&r->rules_check);
      uv_close((uv_handle_t *)&r->rules_debounce, close_cb_noop);
      uv_close((uv_handle_t *)&r->rules_check, close_cb_noop);
      uv_close((uv_handle_t *)&r->sighup, close_cb_noop);
      uv_close((uv_handle_t *)&r->sigterm, close_cb_noop);
      uv_close((uv_handle_t *)&r->sigint, close_cb_noop);
      for (int i = 0; i < r->n_rule_watches; i++)
        uv_close((uv_handle_t *)&r->rule_watch[i], close_cb_noop);
    }
    if (r->ctl) {
      amc_controller_free(r->ctl);
      r->ctl = NULL;
    }
    amc_fs_source_close(r->fs);
    r->fs = NULL;
    mcp_close(r);
    amc_admin_close(r->admin);
    r->admin = NULL;
    if (r->lease) {
      amc_lease_stop(r->lease, NULL, NULL);
      r->lease = NULL;
    }
    if (r->ksrc) {
      amc_kube_source_stop(r->ksrc, NULL, NULL);
      r->ksrc = NULL;
    }
    status_free(r);
    if (r->avi) { /* drops a login in flight */
      amc_avi_sync_free(r->avi);
      r->avi = NULL;
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    amc_kube_client_free(r->kube);
    r->kube = NULL;
    if (r->http) {
      amc_http_close(r->http, NULL, NULL);
      r->http = NULL;
    }
    uv_walk(&r->loop, close_walk, NULL);
  }
  uv_run(&r->loop, UV_RUN_DEFAULT);
  uv_walk(&r->loop, close_walk, NULL); /* nothing is left normally */
  uv_run(&r->loop, UV_RUN_DEFAULT);
  uv_loop_close(&r->loop);
  if (r->fs_L)
    lua_close(r->fs_L);
  amc_dry_run_free(r->dry_run);
  if (r->settings_init)
    amc_settings_free(&r->settings);
  amc_store_free(r->store);
  amc_metrics_free(r->metrics);
  amc_config_free(&r->cfg);
  if (rc == AMC_EXIT_OK)
    rc = r->exit_code; /* 0, or 1 when leadership was lost */
  free(r);
  return rc;
}
