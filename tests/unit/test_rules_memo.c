/* test_rules_memo.c - the rules engine's memo (rules_engine.h "Memo"):
 * replays give the same translation as running everything (objects by
 * checksum, diagnostics, reads) but with unchanged objects; a change to
 * anything a memoized call read, or to its input object, makes it run
 * again; a replay whose out:get answers would differ runs again;
 * translate_full never replays; a failed translation keeps the entries;
 * filtered lists (by field, by label) invalidate the entries that read
 * them, on the object's values before and after a change; turning the
 * memo off drops everything.
 * Uses the real runtime library (rt.memo) and the fixture rule set
 * tests/unit/fixtures/rules_memo. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules_engine.h"
#include "settings.h"
#include "store.h"

#include "obj_json.h"

#define FIX AMC_SOURCE_DIR "/tests/unit/fixtures/"

typedef struct {
  amc_store_t *store;
  amc_settings_t settings;
  amc_rules_engine_t *memo; /* memo on */
  amc_rules_engine_t *ref;  /* memo off: the reference */
} fx_t;

static amc_rules_engine_t *engine(fx_t *f) {
  amc_rules_engine_t *e = amc_rules_engine_new(f->store, &f->settings, NULL);
  char err[2048];
  if (amc_rules_engine_load(e, FIX "rules_memo", err, sizeof err) != 0)
    fail_msg("load: %s", err);
  return e;
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  f->store = amc_store_new();
  amc_settings_init(&f->settings);
  amc_settings_set(&f->settings, "cluster", "c1");
  f->memo = engine(f);
  assert_int_equal(amc_rules_engine_set_memo(f->memo, 1), 0);
  f->ref = engine(f);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  amc_rules_engine_free(f->memo);
  amc_rules_engine_free(f->ref);
  amc_settings_free(&f->settings);
  amc_store_free(f->store);
  free(f);
  return 0;
}

/* Puts (json != NULL) or deletes an object and tells the memo engine, as
 * the controller does. */
static void change(fx_t *f, const char *kind, const char *ns, const char *name,
                   const char *json) {
  const amc_store_obj_t *o = amc_store_get(f->store, kind, ns, name);
  char *old = o ? strdup(obj_json(o)) : NULL;
  if (json)
    assert_int_equal(amc_store_put_json(f->store, kind, ns, name, json,
                                        strlen(json), NULL, NULL, NULL),
                     0);
  else
    amc_store_delete(f->store, kind, ns, name);
  amc_rules_engine_changed(f->memo, kind, ns, name, old, json);
  free(old);
}

static void put_vs(fx_t *f, const char *name, const char *svc, int weight) {
  char json[512];
  snprintf(json, sizeof json,
           "{\"kind\":\"VirtualService\",\"metadata\":{\"name\":\"%s\","
           "\"namespace\":\"ns\"},\"spec\":{\"service\":\"%s\",\"weight\":%d}}",
           name, svc, weight);
  change(f, "VirtualService", "ns", name, json);
}

/* An Endpoints object: spec.service `svc` (field list), label svc=`label`
 * (label list); NULL: delete it. */
static void put_ep(fx_t *f, const char *name, const char *svc,
                   const char *label) {
  char json[512];
  snprintf(json, sizeof json,
           "{\"kind\":\"Endpoints\",\"metadata\":{\"name\":\"%s\","
           "\"namespace\":\"ns\",\"labels\":{\"svc\":\"%s\"}},"
           "\"spec\":{\"service\":\"%s\"}}",
           name, label ? label : "", svc ? svc : "");
  change(f, "Endpoints", "ns", name, svc || label ? json : NULL);
}

static void put_svc(fx_t *f, const char *name, const char *ip) {
  char json[512];
  snprintf(json, sizeof json,
           "{\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\",\"namespace\":"
           "\"ns\"},\"spec\":{\"ips\":[\"%s\"]}}",
           name, ip);
  change(f, "Service", "ns", name, json);
}

static void mesh(fx_t *f) {
  change(f, "Gateway", "ns", "gw",
         "{\"kind\":\"Gateway\",\"metadata\":{\"name\":\"gw\",\"namespace\":"
         "\"ns\"},\"spec\":{}}");
  put_svc(f, "a", "10.0.0.1");
  put_svc(f, "b", "10.0.0.2");
  put_vs(f, "r1", "a", 10);
  put_vs(f, "r2", "a", 20); /* shares r1's pool */
  put_vs(f, "r3", "b", 30);
  put_vs(f, "r4", "missing", 40);
}

static int str_eq(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* `t` (memo) must equal `want` (reference) but for unchanged objects,
 * which must carry the reference's checksum. Returns t's unchanged count. */
static size_t same(const amc_translation_t *t, const amc_translation_t *want) {
  assert_null(t->error);
  assert_null(want->error);
  assert_int_equal(t->n_objects, want->n_objects);
  for (size_t i = 0; i < t->n_objects; i++) {
    const amc_avi_object_t *a = &t->objects[i], *b = &want->objects[i];
    assert_string_equal(a->type, b->type);
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->cksum, b->cksum);
    if (a->json)
      assert_string_equal(a->json, b->json);
  }
  assert_int_equal(t->n_diags, want->n_diags);
  for (size_t i = 0; i < t->n_diags; i++) {
    const amc_diag_t *a = &t->diags[i], *b = &want->diags[i];
    assert_int_equal(a->severity, b->severity);
    assert_string_equal(a->kind, b->kind);
    assert_true(str_eq(a->namespace_, b->namespace_));
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->field, b->field);
    assert_string_equal(a->message, b->message);
  }
  return t->n_unchanged;
}

static const char *ns_or_null(const char *ns) {
  return ns && *ns ? ns : NULL;
}

/* The reads of `t` must be exactly those of `want` (both deduplicated and
 * sorted): a replay records the reads its call made, no more (not the
 * root or the inputs, which only its entry depends on), no fewer. */
static void reads_equal(const amc_translation_t *t,
                        const amc_translation_t *want) {
  for (size_t i = 0; i < want->n_reads || i < t->n_reads; i++) {
    if (i >= want->n_reads || i >= t->n_reads)
      fail_msg("reads differ in number: %zu, want %zu", t->n_reads,
               want->n_reads);
    const amc_read_t *w = &want->reads[i], *r = &t->reads[i];
    if (!(str_eq(r->kind, w->kind) &&
          str_eq(ns_or_null(r->namespace_), ns_or_null(w->namespace_)) &&
          str_eq(r->name, w->name) && str_eq(r->field, w->field) &&
          str_eq(r->label, w->label) && str_eq(r->value, w->value)))
      fail_msg("read %zu: %s %s %s, want %s %s %s", i, r->kind,
               r->namespace_ ? r->namespace_ : "", r->name ? r->name : "",
               w->kind, w->namespace_ ? w->namespace_ : "",
               w->name ? w->name : "");
  }
}

/* Translates with both engines, checks they agree, returns the unchanged
 * count and the memo's hits/misses since the last call. */
static size_t check(fx_t *f, uint64_t *hits, uint64_t *misses) {
  static uint64_t h0, m0;
  amc_translation_t *t =
      amc_rules_engine_translate(f->memo, "Gateway", "ns", "gw");
  amc_translation_t *w =
      amc_rules_engine_translate(f->ref, "Gateway", "ns", "gw");
  size_t n = same(t, w);
  reads_equal(t, w);
  amc_translation_free(t);
  amc_translation_free(w);
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(f->memo, &st);
  *hits = st.hits - h0;
  *misses = st.misses - m0;
  h0 = st.hits;
  m0 = st.misses;
  return n;
}

static void test_replay_equals_full(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  mesh(f);
  assert_int_equal(check(f, &h, &m), 0);
  assert_int_equal(h, 0);
  assert_int_equal(m, 4);
  /* Nothing changed: everything replays; both pools come unchanged. */
  assert_int_equal(check(f, &h, &m), 2);
  assert_int_equal(h, 4);
  assert_int_equal(m, 0);
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(f->memo, &st);
  assert_int_equal(st.entries, 4);
  assert_true(st.bytes > 0);
  /* translate_full runs every call (and keeps the entries fresh). */
  amc_translation_t *t =
      amc_rules_engine_translate_full(f->memo, "Gateway", "ns", "gw");
  assert_int_equal(t->n_unchanged, 0);
  assert_non_null(t->objects[0].json);
  amc_translation_free(t);
  assert_int_equal(check(f, &h, &m), 2);
  assert_int_equal(m, 4); /* translate_full's */
  assert_int_equal(h, 4);
}

static void test_changes_invalidate(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  mesh(f);
  check(f, &h, &m);
  /* The input object: only that route runs again. */
  put_vs(f, "r3", "b", 31);
  assert_int_equal(check(f, &h, &m), 1); /* r3 re-adds pool b: not unchanged */
  assert_int_equal(m, 1);
  assert_int_equal(h, 3);
  /* A read object: the routes that read it. */
  put_svc(f, "a", "10.0.0.9");
  assert_int_equal(check(f, &h, &m), 1);
  assert_int_equal(m, 2);
  /* A missing object that appears (the read recorded "not found"). */
  put_svc(f, "missing", "10.0.0.7");
  check(f, &h, &m);
  assert_int_equal(m, 1);
  /* An object nobody read: nothing. */
  put_svc(f, "unrelated", "10.0.0.8");
  check(f, &h, &m);
  assert_int_equal(m, 0);
  assert_int_equal(h, 4);
  /* The root object: everything. */
  change(f, "Gateway", "ns", "gw",
         "{\"kind\":\"Gateway\",\"metadata\":{\"name\":\"gw\",\"namespace\":"
         "\"ns\"},\"spec\":{\"x\":1}}");
  assert_int_equal(check(f, &h, &m), 0);
  assert_int_equal(m, 4);
}

static void test_out_get_answers_checked(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  mesh(f);
  check(f, &h, &m);
  /* r1 made pool a, r2 only saw it. Without r1, r2's replay would not add
   * the pool: it must run again (and add it in full). */
  change(f, "VirtualService", "ns", "r1", NULL);
  assert_int_equal(check(f, &h, &m), 1); /* pool b from r3 */
  assert_int_equal(m, 1);
  assert_int_equal(h, 2);
  /* r1 back (sorted first): it adds pool a again, so r2's entry, made when
   * it added the pool itself, cannot replay either. */
  put_vs(f, "r1", "a", 10);
  check(f, &h, &m);
  assert_int_equal(m, 2);
}

/* A call whose events cannot be kept (out:get given a number) is not kept:
 * it runs on every translation, the others still replay. */
static void test_unkept_call_runs_again(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  mesh(f);
  check(f, &h, &m);
  change(f, "VirtualService", "ns", "r5",
         "{\"kind\":\"VirtualService\",\"metadata\":{\"name\":\"r5\","
         "\"namespace\":\"ns\"},\"spec\":{\"service\":\"b\",\"probe\":7}}");
  check(f, &h, &m);
  assert_int_equal(m, 1);
  assert_int_equal(h, 4);
  check(f, &h, &m);
  assert_int_equal(m, 1);
  assert_int_equal(h, 4);
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(f->memo, &st);
  assert_int_equal(st.entries, 4);
}

static void test_failed_translation_keeps_entries(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  mesh(f);
  check(f, &h, &m);
  /* An invalid pool (bad address type) fails the translation. */
  change(f, "Service", "ns", "b",
         "{\"kind\":\"Service\",\"metadata\":{\"name\":\"b\",\"namespace\":"
         "\"ns\"},\"spec\":{\"ips\":[{\"bad\":true}]}}");
  amc_translation_t *t =
      amc_rules_engine_translate(f->memo, "Gateway", "ns", "gw");
  assert_non_null(t->error);
  amc_translation_free(t);
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(f->memo, &st);
  /* the old entries stay (r3's invalid one until a translation succeeds) */
  assert_int_equal(st.entries, 4);
  put_svc(f, "b", "10.0.0.2");
  check(f, &h, &m);
  /* the failed translation: r3 ran, 3 replays; this one: the same */
  assert_int_equal(m, 1 + 1);
  assert_int_equal(h, 3 + 3);
}

static void test_gateway_gone_drops_entries(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  mesh(f);
  check(f, &h, &m);
  change(f, "Gateway", "ns", "gw", NULL);
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(f->memo, &st);
  assert_int_equal(st.entries, 0);
  assert_int_equal(st.bytes, 0);
}

static void test_filtered_lists_invalidate(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  mesh(f);
  check(f, &h, &m);
  /* An Endpoints of Service a (both lists of r1 and r2 see it). */
  put_ep(f, "e1", "a", "a");
  check(f, &h, &m); /* the diagnostic shows ep=1/1: a stale replay fails */
  assert_int_equal(m, 2);
  assert_int_equal(h, 2);
  /* It moves to b: the lists on a (before) and on b (after). */
  put_ep(f, "e1", "b", "b");
  check(f, &h, &m);
  assert_int_equal(m, 3);
  assert_int_equal(h, 1);
  /* Only the label moves (a's label list, b's label list). */
  put_ep(f, "e1", "b", "a");
  check(f, &h, &m);
  assert_int_equal(m, 3);
  /* Endpoints of a Service no route reads: nothing runs. */
  put_ep(f, "e2", "zzz", "zzz");
  check(f, &h, &m);
  assert_int_equal(m, 0);
  assert_int_equal(h, 4);
  /* Deleted: the lists it was on (field b, label a). */
  put_ep(f, "e1", NULL, NULL);
  check(f, &h, &m);
  assert_int_equal(m, 3);
}

/* A translation's entries are packed after it, by amc_rules_engine_settle
 * or by whatever comes next: the same replays either way, and nothing left
 * behind when the gateway goes or the memo is turned off meanwhile. */
static void test_entries_settle_later(void **state) {
  fx_t *f = *state;
  mesh(f);
  amc_translation_t *t =
      amc_rules_engine_translate(f->memo, "Gateway", "ns", "gw");
  assert_int_equal(t->n_unchanged, 0);
  amc_translation_free(t);
  amc_rules_engine_settle(f->memo);
  amc_rules_engine_settle(f->memo); /* nothing left: a no-op */
  t = amc_rules_engine_translate(f->memo, "Gateway", "ns", "gw");
  assert_int_equal(t->n_unchanged, 2);
  amc_translation_free(t);
  /* not settled: the next translation does it first */
  t = amc_rules_engine_translate(f->memo, "Gateway", "ns", "gw");
  assert_int_equal(t->n_unchanged, 2);
  amc_translation_free(t);
  /* not settled, then the gateway goes: its entries with it */
  change(f, "Gateway", "ns", "gw", NULL);
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(f->memo, &st);
  assert_int_equal(st.entries, 0);
  mesh(f);
  t = amc_rules_engine_translate(f->memo, "Gateway", "ns", "gw");
  amc_translation_free(t);
  amc_rules_engine_memo_stats(f->memo, &st); /* counts the pending ones */
  assert_int_equal(st.entries, 4);
  t = amc_rules_engine_translate(f->memo, "Gateway", "ns", "gw");
  amc_translation_free(t);
  assert_int_equal(amc_rules_engine_set_memo(f->memo, 0), 0); /* pending */
  amc_rules_engine_settle(f->memo);
  amc_rules_engine_memo_stats(f->memo, &st);
  assert_int_equal(st.entries, 0);
}

static void test_memo_off_drops_entries(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  mesh(f);
  check(f, &h, &m);
  assert_int_equal(check(f, &h, &m), 2);
  assert_int_equal(amc_rules_engine_set_memo(f->memo, 0), 0);
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(f->memo, &st);
  assert_int_equal(st.entries, 0);
  /* off: every call runs, nothing comes unchanged */
  assert_int_equal(check(f, &h, &m), 0);
  /* on again: starts empty */
  assert_int_equal(amc_rules_engine_set_memo(f->memo, 1), 0);
  assert_int_equal(check(f, &h, &m), 0);
  assert_int_equal(check(f, &h, &m), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_replay_equals_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_changes_invalidate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unkept_call_runs_again, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_out_get_answers_checked, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_failed_translation_keeps_entries,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_filtered_lists_invalidate, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_entries_settle_later, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_memo_off_drops_entries, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_gateway_gone_drops_entries, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
