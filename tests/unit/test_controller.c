/* test_controller.c - the reconcile loop with a fake engine and a recording
 * sink: initial sync, dependency-driven re-queues, deletes, gc, rules swap
 * validation, retries, shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "controller.h"

#include "obj_json.h"

static uv_loop_t loop;
static amc_store_t *store;
static amc_metrics_t *reg;
static amc_controller_t *ctl;

/* ---- fake engine: Gateway {"spec":{"svc":"NAME"}} reads Service NAME in
 * its namespace and emits one object whose JSON joins both. "boom" in the
 * gateway fails; an engine with `fail_all` fails everything. */
typedef struct {
  int fail_all;
  int suffix; /* changes the output */
  int freed;
  int compacts;
  int settles;
  size_t synced_at_settle; /* the sink's record when it last settled */
} fake_engine_t;

static char *xstrdup(const char *s) {
  return s ? strdup(s) : NULL;
}

static amc_translation_t *fake_translate(void *engine, const char *kind,
                                         const char *ns, const char *name) {
  fake_engine_t *e = engine;
  amc_translation_t *t = calloc(1, sizeof *t);
  char key[256];
  snprintf(key, sizeof key, "%s/%s/%s", kind, ns ? ns : "", name);
  t->key = xstrdup(key);
  const amc_store_obj_t *gw = amc_store_get(store, kind, ns, name);
  t->reads = calloc(2, sizeof *t->reads);
  t->reads[0].kind = xstrdup(kind);
  t->reads[0].namespace_ = xstrdup(ns);
  t->reads[0].name = xstrdup(name);
  t->n_reads = 1;
  if (e->fail_all || (gw && strstr(obj_json(gw), "boom"))) {
    t->error = xstrdup("rules/gateway.lua:1: boom");
    return t;
  }
  char svc[64] = "";
  const char *p = gw ? strstr(obj_json(gw), "\"svc\":\"") : NULL;
  if (p)
    sscanf(p + 7, "%63[^\"]", svc);
  const amc_store_obj_t *so = NULL;
  if (svc[0]) {
    t->reads[1].kind = xstrdup("Service");
    t->reads[1].namespace_ = xstrdup(ns);
    t->reads[1].name = xstrdup(svc);
    t->n_reads = 2;
    so = amc_store_get(store, "Service", ns, svc);
  }
  t->objects = calloc(1, sizeof *t->objects);
  t->objects[0].type = xstrdup("virtualservice");
  t->objects[0].name = xstrdup(name);
  char json[1024];
  snprintf(json, sizeof json, "{\"gw\":%s,\"svc\":%s,\"v\":%d}",
           gw ? obj_json(gw) : "null", so ? obj_json(so) : "null", e->suffix);
  t->objects[0].json = xstrdup(json);
  t->objects[0].json_len = strlen(json);
  t->n_objects = 1;
  return t;
}

static void fake_free(void *engine) {
  ((fake_engine_t *)engine)->freed = 1;
}

static size_t fake_compact(void *engine) {
  ((fake_engine_t *)engine)->compacts++;
  return 0;
}

static amc_buf_t synced; /* "key:n_objects;" or "key:gone;" per sync */

static void fake_settle(void *engine) {
  fake_engine_t *e = engine;
  e->settles++;
  e->synced_at_settle = synced.len;
}

static const amc_ctrl_engine_ops_t fake_ops = {.translate = fake_translate,
                                               .free = fake_free,
                                               .compact = fake_compact,
                                               .settle = fake_settle};

/* ---- recording sink */
static int gc_calls;
static char gc_live[512];
static int fail_next_sync;
static int hold_syncs; /* a slow AVI: syncs end when the test says */
static char held[8][64];
static int n_held;

static void rec_sync(void *sink, amc_controller_t *c, const char *key,
                     const amc_translation_t *t) {
  (void)sink;
  if (t)
    amc_buf_printf(&synced, "%s:%zu;", key, t->n_objects);
  else
    amc_buf_printf(&synced, "%s:gone;", key);
  if (hold_syncs && n_held < 8) {
    snprintf(held[n_held++], sizeof held[0], "%s", key);
    return;
  }
  if (fail_next_sync) {
    fail_next_sync--;
    amc_controller_sync_done(c, key, -1, "AVI said 500");
    return;
  }
  amc_controller_sync_done(c, key, 0, NULL);
}

static void rec_gc(void *sink, const char *const *live, size_t n) {
  (void)sink;
  gc_calls++;
  gc_live[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    strcat(gc_live, live[i]);
    strcat(gc_live, ";");
  }
}

static const amc_ctrl_sink_ops_t rec_ops = {.sync = rec_sync, .gc = rec_gc};

static void on_stop(uv_timer_t *t) {
  uv_stop(t->loop);
}

static void run_for(uint64_t ms) {
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, on_stop, ms, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* Runs the loop until `cond` holds, at most 10 s. A fixed run_for() is no
 * bound on what gets done: the queue dispatches one key per loop iteration
 * and retries on real-time timers, so a loaded machine that stalls the test
 * past the stop timer ends the run after fewer iterations. run_for() is
 * only for checking that nothing (more) happens. */
#define RUN_UNTIL(cond)                                                        \
  do {                                                                         \
    uint64_t t0_ = uv_hrtime();                                                \
    while (!(cond) && uv_hrtime() - t0_ < 10000000000ull)                      \
      run_for(5);                                                              \
  } while (0)

/* The number of syncs the sink recorded since the last take(). */
static int n_synced(void) {
  int n = 0;
  for (size_t i = 0; i < synced.len; i++)
    n += synced.data[i] == ';';
  return n;
}

static const char *take(void) {
  static char copy[4096];
  snprintf(copy, sizeof copy, "%s", synced.data ? synced.data : "");
  amc_buf_reset(&synced);
  return copy;
}

static void put(const char *kind, const char *ns, const char *name,
                const char *json) {
  amc_store_put_json(store, kind, ns, name, json, strlen(json), NULL, NULL,
                     NULL);
}

static fake_engine_t engine1;
static int source_id;
static uint64_t compact_idle_ms = 100; /* for the next setup() */

static int setup(void **state) {
  (void)state;
  uv_loop_init(&loop);
  store = amc_store_new();
  reg = amc_metrics_new();
  amc_buf_reset(&synced);
  gc_calls = 0;
  fail_next_sync = 0;
  hold_syncs = 0;
  n_held = 0;
  memset(&engine1, 0, sizeof engine1);
  amc_controller_opts_t o = {.loop = &loop,
                             .store = store,
                             .metrics = reg,
                             .progress_ms = 5,
                             .compact_idle_ms = compact_idle_ms,
                             .sink_ops = rec_ops};
  ctl = amc_controller_new(&o);
  assert_non_null(ctl);
  source_id = amc_controller_add_source(ctl, "fs");
  return 0;
}

/* A compaction window far above any stall of a loaded machine between two
 * steps of the test: "not while translations go on" must not depend on the
 * scheduler. */
static int setup_slow_compact(void **state) {
  compact_idle_ms = 500;
  int rc = setup(state);
  compact_idle_ms = 100;
  return rc;
}

static int teardown(void **state) {
  (void)state;
  amc_controller_free(ctl);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  amc_store_free(store);
  amc_metrics_free(reg);
  amc_buf_free(&synced);
  return 0;
}

/* Two gateways in ns "a": gw1 uses svc s1, gw2 uses s2. */
static void seed(void) {
  put("Gateway", "a", "gw1", "{\"spec\":{\"svc\":\"s1\"}}");
  put("Gateway", "a", "gw2", "{\"spec\":{\"svc\":\"s2\"}}");
  put("Service", "a", "s1", "{\"port\":1}");
  put("Service", "a", "s2", "{\"port\":2}");
}

static void start_synced(void) {
  seed();
  amc_controller_set_engine(ctl, &engine1, &fake_ops, 1, "d1");
  amc_controller_source_synced(ctl, source_id);
  RUN_UNTIL(amc_controller_synced(ctl));
  assert_true(amc_controller_synced(ctl));
}

static void test_waits_for_sources_then_initial_sync_and_gc(void **state) {
  (void)state;
  seed();
  amc_controller_set_engine(ctl, &engine1, &fake_ops, 1, "d1");
  run_for(10);
  assert_string_equal(take(), ""); /* source not synced: nothing */
  amc_buf_t d = AMC_BUF_INIT;
  assert_int_equal(amc_controller_ready(ctl, &d), 0);
  assert_non_null(strstr(d.data, "\"sources\":{\"fs\":false}"));
  amc_buf_free(&d);
  amc_controller_source_synced(ctl, source_id);
  RUN_UNTIL(amc_controller_synced(ctl));
  assert_string_equal(take(), "Gateway/a/gw1:1;Gateway/a/gw2:1;");
  assert_true(amc_controller_synced(ctl));
  assert_int_equal(gc_calls, 1);
  assert_string_equal(gc_live, "Gateway/a/gw1;Gateway/a/gw2;");
  assert_int_equal(amc_controller_ready(ctl, &d), 1);
  assert_non_null(strstr(d.data, "\"ready\":true"));
  assert_non_null(strstr(d.data, "\"generation\":1"));
  amc_buf_free(&d);
}

static void test_change_requeues_exactly_the_readers(void **state) {
  (void)state;
  start_synced();
  take();
  put("Service", "a", "s2", "{\"port\":22}");
  RUN_UNTIL(n_synced() >= 1);
  assert_string_equal(take(), "Gateway/a/gw2:1;");
  /* an unrelated object: nothing */
  put("Service", "a", "unrelated", "{}");
  put("Service", "b", "s1", "{}");
  run_for(10);
  assert_string_equal(take(), "");
  /* the gateway itself */
  put("Gateway", "a", "gw1", "{\"spec\":{\"svc\":\"s2\"}}");
  RUN_UNTIL(n_synced() >= 1);
  assert_string_equal(take(), "Gateway/a/gw1:1;");
  /* gw1 now reads s2, not s1 */
  put("Service", "a", "s1", "{\"port\":11}");
  run_for(10);
  assert_string_equal(take(), "");
  put("Service", "a", "s2", "{\"port\":222}");
  RUN_UNTIL(n_synced() >= 2);
  assert_string_equal(take(), "Gateway/a/gw1:1;Gateway/a/gw2:1;");
  /* a new gateway is its own key */
  put("Gateway", "b", "new", "{}");
  RUN_UNTIL(n_synced() >= 1);
  assert_string_equal(take(), "Gateway/b/new:1;");
}

/* The engine's deferred work (settle) runs once per synced translation,
 * after the sink has started the sync, not before. */
static void test_engine_settles_after_sync(void **state) {
  (void)state;
  start_synced();
  take();
  int s0 = engine1.settles;
  put("Service", "a", "s2", "{\"port\":22}");
  RUN_UNTIL(n_synced() >= 1);
  assert_int_equal(engine1.settles, s0 + 1);
  assert_int_equal(engine1.synced_at_settle, synced.len); /* sync first */
  assert_string_equal(take(), "Gateway/a/gw2:1;");
  put("Service", "a", "s2", "{\"port\":23}");
  put("Gateway", "a", "gw1", "{\"spec\":{\"svc\":\"s2\"}}");
  RUN_UNTIL(n_synced() >= 2);
  assert_int_equal(engine1.settles, s0 + 3);
  assert_int_equal(engine1.synced_at_settle, synced.len);
  const char *got = take(); /* in the queue's order */
  assert_true(strcmp(got, "Gateway/a/gw1:1;Gateway/a/gw2:1;") == 0 ||
              strcmp(got, "Gateway/a/gw2:1;Gateway/a/gw1:1;") == 0);
}

/* The engine compacts after the initial pass, then once translations pause
 * (compact_idle_ms), not while they go on and not when nothing happened. */
static void test_engine_compacts_when_idle(void **state) {
  (void)state;
  start_synced();
  take();
  assert_int_equal(engine1.compacts, 1);
  run_for(600);
  assert_int_equal(engine1.compacts, 1); /* nothing translated since */
  for (int i = 0; i < 3; i++) {
    char json[64];
    snprintf(json, sizeof json, "{\"port\":%d}", 100 + i);
    put("Service", "a", "s1", json);
    RUN_UNTIL(n_synced() >= i + 1);
  }
  assert_string_equal(take(),
                      "Gateway/a/gw1:1;Gateway/a/gw1:1;Gateway/a/gw1:1;");
  assert_int_equal(engine1.compacts, 1);
  RUN_UNTIL(engine1.compacts == 2);
  assert_int_equal(engine1.compacts, 2);
  run_for(600);
  assert_int_equal(engine1.compacts, 2);
}

/* A long initial pass (AVI slow to take the calls) compacts in its pauses
 * too: the garbage of its translations does not wait for its end. */
static void test_engine_compacts_during_a_slow_initial_pass(void **state) {
  (void)state;
  hold_syncs = 1;
  seed();
  amc_controller_set_engine(ctl, &engine1, &fake_ops, 1, "d1");
  amc_controller_source_synced(ctl, source_id);
  RUN_UNTIL(n_held == 2);
  assert_int_equal(n_held, 2);
  RUN_UNTIL(engine1.compacts == 1);
  assert_int_equal(engine1.compacts, 1);
  assert_false(amc_controller_synced(ctl)); /* still in the initial pass */
  run_for(300);
  assert_int_equal(engine1.compacts, 1); /* nothing translated since */
  hold_syncs = 0;
  for (int i = 0; i < n_held; i++)
    amc_controller_sync_done(ctl, held[i], 0, NULL);
  RUN_UNTIL(amc_controller_synced(ctl));
  assert_true(amc_controller_synced(ctl));
  assert_int_equal(engine1.compacts, 2); /* and at its end, as before */
}

/* A change during a resync (or a reload's pass) is served before the rest
 * of the pass: the pass queues in the background. */
static void test_change_during_resync_goes_first(void **state) {
  (void)state;
  put("Gateway", "a", "gw3", "{\"spec\":{\"svc\":\"s3\"}}");
  put("Gateway", "a", "gw4", "{\"spec\":{\"svc\":\"s4\"}}");
  put("Service", "a", "s3", "{\"port\":3}");
  put("Service", "a", "s4", "{\"port\":4}");
  start_synced();
  assert_int_equal(n_synced(), 4);
  take();
  amc_controller_resync(ctl);
  put("Service", "a", "s4", "{\"port\":44}"); /* gw4 reads it */
  RUN_UNTIL(n_synced() >= 4);
  run_for(50);
  const char *got = take();
  assert_int_equal(strncmp(got, "Gateway/a/gw4:1;", 16), 0);
  /* and each gateway once: gw4's pass in the resync was this one */
  assert_non_null(strstr(got, "Gateway/a/gw1:1;"));
  assert_non_null(strstr(got, "Gateway/a/gw2:1;"));
  assert_non_null(strstr(got, "Gateway/a/gw3:1;"));
  assert_null(strstr(got + 16, "gw4"));
}

static void test_deleted_gateway_removes_tree(void **state) {
  (void)state;
  start_synced();
  take();
  amc_store_delete(store, "Gateway", "a", "gw1");
  RUN_UNTIL(n_synced() >= 1);
  assert_string_equal(take(), "Gateway/a/gw1:gone;");
  /* its reads are forgotten */
  put("Service", "a", "s1", "{\"port\":5}");
  run_for(10);
  assert_string_equal(take(), "");
  /* a gateway never synced that vanishes: nothing to delete */
  put("Gateway", "c", "flash", "{\"spec\":{\"svc\":\"boom\"}}");
  amc_store_delete(store, "Gateway", "c", "flash");
  run_for(10);
  assert_string_equal(take(), "");
}

static void test_translation_error_keeps_avi_and_waits(void **state) {
  (void)state;
  start_synced();
  take();
  put("Gateway", "a", "gw1", "{\"spec\":{\"svc\":\"s1\",\"x\":\"boom\"}}");
  RUN_UNTIL(amc_controller_queue_len(ctl) == 0);
  assert_string_equal(take(), ""); /* the sink is not called */
  amc_buf_t m = AMC_BUF_INIT;
  amc_metrics_render(reg, &m);
  assert_non_null(strstr(m.data, "\namc_translation_errors_total 1\n"));
  amc_buf_free(&m);
  /* no retry loop */
  run_for(30);
  assert_string_equal(take(), "");
  /* fixing the input resumes */
  put("Gateway", "a", "gw1", "{\"spec\":{\"svc\":\"s1\"}}");
  RUN_UNTIL(n_synced() >= 1);
  assert_string_equal(take(), "Gateway/a/gw1:1;");
}

static void test_sync_error_retries_with_backoff(void **state) {
  (void)state;
  start_synced();
  take();
  fail_next_sync = 2;
  put("Service", "a", "s1", "{\"port\":9}");
  RUN_UNTIL(n_synced() >= 3); /* 5 ms then 10 ms backoff */
  assert_string_equal(take(),
                      "Gateway/a/gw1:1;Gateway/a/gw1:1;Gateway/a/gw1:1;");
  amc_buf_t m = AMC_BUF_INIT;
  amc_metrics_render(reg, &m);
  assert_non_null(
      strstr(m.data, "amc_reconcile_total{result=\"sync_error\"} 2\n"));
  amc_buf_free(&m);
}

static void test_swap_engine_validates(void **state) {
  (void)state;
  start_synced();
  take();
  fake_engine_t bad = {.fail_all = 1};
  char err[256];
  assert_int_equal(amc_controller_swap_engine(ctl, &bad, &fake_ops, 2, "d2",
                                              err, sizeof err),
                   -1);
  assert_string_equal(err, "rules/gateway.lua:1: boom");
  assert_true(bad.freed);
  assert_int_equal(amc_controller_generation(ctl), 1);
  run_for(10);
  assert_string_equal(take(), ""); /* AVI untouched */
  amc_buf_t d = AMC_BUF_INIT;
  amc_controller_ready(ctl, &d);
  assert_non_null(
      strstr(d.data, "\"last_reload_error\":\"rules/gateway.lua:1: boom\""));
  assert_non_null(strstr(d.data, "\"reload_failures\":1"));
  amc_buf_free(&d);
  /* the old engine still serves changes */
  put("Service", "a", "s1", "{\"port\":3}");
  RUN_UNTIL(n_synced() >= 1);
  assert_string_equal(take(), "Gateway/a/gw1:1;");
  /* a good engine replaces it and every gateway is re-synced */
  fake_engine_t good = {.suffix = 7};
  assert_int_equal(amc_controller_swap_engine(ctl, &good, &fake_ops, 3, "d3",
                                              err, sizeof err),
                   0);
  assert_true(engine1.freed);
  RUN_UNTIL(n_synced() >= 2);
  assert_string_equal(take(), "Gateway/a/gw1:1;Gateway/a/gw2:1;");
  amc_controller_ready(ctl, &d);
  assert_non_null(strstr(d.data, "\"last_reload_error\":null"));
  assert_non_null(strstr(d.data, "\"generation\":3"));
  amc_buf_free(&d);
  /* a gateway that already failed does not block a reload */
  put("Gateway", "a", "gw2", "{\"x\":\"boom\"}");
  RUN_UNTIL(amc_controller_queue_len(ctl) == 0);
  fake_engine_t good2 = {0};
  assert_int_equal(amc_controller_swap_engine(ctl, &good2, &fake_ops, 4, "d4",
                                              err, sizeof err),
                   0);
  run_for(10);
}

static void test_gate_holds_processing_not_readiness(void **state) {
  (void)state;
  int gate = amc_controller_add_gate(ctl, "leader");
  seed();
  amc_controller_set_engine(ctl, &engine1, &fake_ops, 1, "d1");
  amc_controller_source_synced(ctl, source_id);
  run_for(10);
  assert_string_equal(take(), ""); /* gate closed: nothing reconciled */
  amc_buf_t d = AMC_BUF_INIT;
  assert_int_equal(amc_controller_ready(ctl, &d), 1); /* a ready standby */
  assert_non_null(strstr(d.data, "\"standby\":true"));
  amc_buf_free(&d);
  amc_controller_source_synced(ctl, gate);
  RUN_UNTIL(n_synced() >= 2);
  assert_string_equal(take(), "Gateway/a/gw1:1;Gateway/a/gw2:1;");
  assert_int_equal(amc_controller_ready(ctl, &d), 1);
  assert_non_null(strstr(d.data, "\"standby\":false"));
  amc_buf_free(&d);
}

static int stopped;
static void on_stopped(amc_controller_t *c, void *data) {
  (void)c;
  (void)data;
  stopped++;
}

static void test_stop(void **state) {
  (void)state;
  start_synced();
  amc_controller_stop(ctl, on_stopped, NULL);
  put("Service", "a", "s1", "{\"port\":4}");
  RUN_UNTIL(stopped == 1);
  assert_int_equal(stopped, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          test_waits_for_sources_then_initial_sync_and_gc, setup, teardown),
      cmocka_unit_test_setup_teardown(test_change_requeues_exactly_the_readers,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_engine_settles_after_sync, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_engine_compacts_during_a_slow_initial_pass, setup, teardown),
      cmocka_unit_test_setup_teardown(test_change_during_resync_goes_first,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_engine_compacts_when_idle,
                                      setup_slow_compact, teardown),
      cmocka_unit_test_setup_teardown(test_deleted_gateway_removes_tree, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_translation_error_keeps_avi_and_waits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_error_retries_with_backoff,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_swap_engine_validates, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_gate_holds_processing_not_readiness,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
