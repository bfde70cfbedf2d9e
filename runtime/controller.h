/* controller.h - the reconcile loop of `amc run`.
 *
 *   sources --> store --(listener)--> deps --> queue --> translate --> sink
 *
 * Sources put objects into the store (store.h). The controller listens to
 * the store: every change maps, through the dependency index (deps.h), to
 * exactly the keys (gateways) whose last translation read the changed
 * object or a list containing it, and those keys are queued (queue.h). A
 * worker takes a key, translates it with the active rules engine and hands
 * the whole desired AVI tree to the sink (AVI sync, or the dry-run
 * printer), which diffs it against AVI and makes the fewest calls. A
 * gateway that is gone is synced with no translation: its tree is deleted.
 *
 * Level-based, as in controller-runtime: the queue holds keys only; a
 * translation error (a rule failed on this input) leaves AVI as it is and
 * waits for the next change to anything the key read; a sync error is
 * retried with per-key backoff.
 *
 * Start-up: keys are processed only once every registered source has
 * synced and an engine is set; then every gateway is queued ("initial
 * sync", with progress log lines). When the initial pass is through, the
 * sink's gc runs once with the live keys (objects of gateways that no
 * longer exist are deleted; never before, so a source that is still
 * listing never causes deletes).
 *
 * Rules reload: amc_controller_swap_engine() validates a new engine (a new
 * rules generation) by translating every gateway in the store with it. Any
 * gateway that translates today and fails with the new rules rejects the
 * new engine: the old one keeps serving, and the error is kept for /readyz
 * and counted in metrics. On success the new engine replaces the old one
 * and every gateway is queued; the sink sends only what changed.
 *
 * Engines and sinks are small vtables so tests can plug fakes; cmd_run.c
 * plugs the rules engine and AVI sync.
 *
 * Single-threaded (loop thread). */
#ifndef AMC_CONTROLLER_H
#define AMC_CONTROLLER_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <uv.h>

#include "metrics.h"
#include "store.h"
#include "translation.h"
#include "util/buf.h"

typedef struct amc_controller amc_controller_t;

/* A translator (one rules generation). translate() returns a translation
 * the caller frees (amc_translation_free), or NULL when out of memory. */
typedef struct {
  amc_translation_t *(*translate)(void *engine, const char *kind,
                                  const char *ns, const char *name);
  void (*free)(void *engine);
  /* Bytes the engine holds (optional; the amc_rules_memory_bytes gauge). */
  size_t (*memory)(void *engine);
  /* Gives memory the engine no longer needs back (optional): called after
   * the initial pass, after a reload and once translations have paused
   * (compact_idle_ms). */
  size_t (*compact)(void *engine);
  /* Optional, for engines that memoize (rules_engine.h "Memo"): told of
   * every store change; and a translation without replays, taken when the
   * sink cannot take a translation's unchanged objects. */
  void (*changed)(void *engine, const char *kind, const char *ns,
                  const char *name, const char *old_json, const char *new_json);
  amc_translation_t *(*translate_full)(void *engine, const char *kind,
                                       const char *ns, const char *name);
  /* Optional: work a translation left for later (rules_engine.h,
   * amc_rules_engine_settle), called once the sink has started the key's
   * sync, so that it is not between a change and its first AVI call. */
  void (*settle)(void *engine);
} amc_ctrl_engine_ops_t;

/* Where translations go. */
typedef struct {
  /* Makes the target match `t` for `key` (t == NULL: the gateway is gone;
   * delete what was created for it). `t` stays valid until the sink calls
   * amc_controller_sync_done(c, key, ...), exactly once, now or later. */
  void (*sync)(void *sink, amc_controller_t *c, const char *key,
               const amc_translation_t *t);
  /* Deletes what belongs to keys not in `live` (called once, after the
   * initial sync). Optional. */
  void (*gc)(void *sink, const char *const *live, size_t n);
  /* 1 when the target answers (for /readyz). Optional (then 1). */
  int (*reachable)(void *sink);
  /* Abandon work in flight (shutdown timeout). Optional. */
  void (*cancel)(void *sink);
  /* The translation of `key` failed (t->error set; nothing is synced):
   * lets the sink report it (status write-back). `t` is valid only during
   * the call. Optional. */
  void (*rejected)(void *sink, const char *key, const amc_translation_t *t);
  /* 1 when the sink holds every unchanged object of `t` (translation.h:
   * json NULL) for `key` with its checksum, so it can sync `t`. Without it
   * (or when it says 0) the controller syncs a full translation instead. */
  int (*has_unchanged)(void *sink, const char *key, const amc_translation_t *t);
} amc_ctrl_sink_ops_t;

typedef struct {
  uv_loop_t *loop;
  amc_store_t *store;           /* borrowed */
  amc_metrics_t *metrics;       /* borrowed; the controller registers its own */
  const char *root_kind;        /* NULL: "Gateway" */
  unsigned workers;             /* keys in flight; 0: 4 */
  unsigned resync_seconds;      /* re-queue every gateway; 0: off */
  unsigned progress_ms;         /* initial sync progress lines; 0: 1000 */
  unsigned shutdown_timeout_ms; /* abandon in-flight syncs after; 0: 10 s */
  unsigned compact_idle_ms;     /* engine compact after a pause; 0: 1000 */
  amc_ctrl_sink_ops_t sink_ops;
  void *sink;
} amc_controller_opts_t;

amc_controller_t *amc_controller_new(const amc_controller_opts_t *opts);

/* Registers a source by name ("fs", "kube", "mcp"); returns its id. */
int amc_controller_add_source(amc_controller_t *c, const char *name);
/* Registers a gate: like a source (nothing is processed until it is
 * "synced", i.e. opened with amc_controller_source_synced), but a closed
 * gate does not make the replica unready: it is a standby. Used for leader
 * election ("leader") and ISTIO_ENABLED=false ("istio", never opened). */
int amc_controller_add_gate(amc_controller_t *c, const char *name);
/* The source has listed everything once. */
void amc_controller_source_synced(amc_controller_t *c, int id);
/* A source's watch restarted (metric). */
void amc_controller_watch_restarted(amc_controller_t *c, int id);

/* Sets the first engine (no validation). Takes ownership. */
void amc_controller_set_engine(amc_controller_t *c, void *engine,
                               const amc_ctrl_engine_ops_t *ops,
                               uint64_t generation, const char *digest);
/* Validates `engine` against every gateway and, if it passes, makes it the
 * active one (taking ownership) and re-queues every gateway; returns 0.
 * Otherwise frees it, keeps the old one and returns -1 with `err` set (also
 * kept for /readyz). */
int amc_controller_swap_engine(amc_controller_t *c, void *engine,
                               const amc_ctrl_engine_ops_t *ops,
                               uint64_t generation, const char *digest,
                               char *err, size_t errlen);
/* Records a reload that failed before validation (the rules did not load):
 * counted and kept for /readyz like a validation failure. */
void amc_controller_reload_failed(amc_controller_t *c, const char *error);
/* Records that the rule files are again those of the active generation
 * (same digest: nothing to load): a failure kept from an earlier reload no
 * longer describes them and is cleared from /readyz. */
void amc_controller_rules_unchanged(amc_controller_t *c);
/* The active digest ("" when none). */
const char *amc_controller_digest(const amc_controller_t *c);
uint64_t amc_controller_generation(const amc_controller_t *c);

/* Called by the sink when a sync ends: status 0 = done; < 0 = failed
 * (retried with backoff; `error` is logged). */
void amc_controller_sync_done(amc_controller_t *c, const char *key, int status,
                              const char *error);

/* Counts one AVI request (the sink reports them). */
void amc_controller_count_request(amc_controller_t *c, const char *method,
                                  const char *type, int code);

/* Readiness for /readyz: the JSON detail into `detail`; 1 when ready
 * (sources synced, rules loaded, target reachable, initial sync done; or,
 * while a gate is closed, a standby with sources and rules ready). */
int amc_controller_ready(void *controller, amc_buf_t *detail);
/* 1 once the initial sync (and gc) is done. */
int amc_controller_synced(const amc_controller_t *c);
/* Keys waiting, and syncs done since start (for tests and benchmarks). */
size_t amc_controller_queue_len(const amc_controller_t *c);
uint64_t amc_controller_syncs(const amc_controller_t *c);

/* Re-queues every gateway now (what the resync timer does). */
void amc_controller_resync(amc_controller_t *c);

/* Stops taking keys; in-flight syncs finish (or are cancelled after the
 * timeout), then `done` runs. */
void amc_controller_stop(amc_controller_t *c,
                         void (*done)(amc_controller_t *c, void *data),
                         void *data);
/* Frees the controller (after stop's callback). */
void amc_controller_free(amc_controller_t *c);

/* The dry-run sink: remembers what each key last produced and prints the
 * calls that would be made ("POST pool name", "PUT ...", "DELETE ...") to
 * `out`, one per line, prefixed by "dry-run: ". */
typedef struct amc_dry_run amc_dry_run_t;
amc_dry_run_t *amc_dry_run_new(FILE *out);
void amc_dry_run_free(amc_dry_run_t *d);
extern const amc_ctrl_sink_ops_t amc_dry_run_ops;

#endif
