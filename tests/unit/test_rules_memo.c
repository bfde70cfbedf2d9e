/* test_rules_memo.c - the rules engine's memo (rules_engine.h "Memo"):
 * replays give the same translation as running everything (objects by
 * checksum, diagnostics, reads) but with unchanged objects; a change to
 * anything a memoized call read, or to its input object, makes it run
 * again; a replay whose out:get answers would differ runs again;
 * translate_full never replays; a failed translation keeps the entries;
 * filtered lists (by field, by label) invalidate the entries that read
 * them, on the object's values before and after a change; turning the
 * memo off drops everything. Nested calls (a memoized pool inside a
 * memoized route, fixture rules_memo_nested): a route that runs replays
 * its pools; what a pool read changes runs the pool and the routes whose
 * entries hold it; out:get answers inside the inner call, a pool shared by
 * routes, inner errors (raised, caught); entries stay bounded.
 * Uses the real runtime library (rt.memo) and the fixture rule sets
 * tests/unit/fixtures/rules_memo and rules_memo_nested. */
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
  uint64_t h0, m0;          /* the memo's hits and misses at the last check */
} fx_t;

static amc_rules_engine_t *engine(fx_t *f, const char *rules) {
  amc_rules_engine_t *e = amc_rules_engine_new(f->store, &f->settings, NULL);
  char err[2048];
  if (amc_rules_engine_load(e, rules, err, sizeof err) != 0)
    fail_msg("load: %s", err);
  return e;
}

static int setup_rules(void **state, const char *rules) {
  fx_t *f = calloc(1, sizeof *f);
  f->store = amc_store_new();
  amc_settings_init(&f->settings);
  amc_settings_set(&f->settings, "cluster", "c1");
  f->memo = engine(f, rules);
  assert_int_equal(amc_rules_engine_set_memo(f->memo, 1), 0);
  /* replays alone (test_rules_patch.c has the patches) */
  assert_int_equal(amc_rules_engine_set_patch(f->memo, 0), 0);
  f->ref = engine(f, rules);
  *state = f;
  return 0;
}

static int setup(void **state) {
  return setup_rules(state, FIX "rules_memo");
}

/* The fixture with nested calls (a memoized pool inside a memoized route). */
static int setup_nested(void **state) {
  return setup_rules(state, FIX "rules_memo_nested");
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
  *hits = st.hits - f->h0;
  *misses = st.misses - f->m0;
  f->h0 = st.hits;
  f->m0 = st.misses;
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

/* -- nested calls (fixture rules_memo_nested) ------------------------------
 * Routes r1..r4 (outer calls) and the pools they build (inner calls):
 *   r1: a (pool-a), b (pool-b)    r2: a (pool-a: r1's, no inner call)
 *   r3: a/v1, a/v2 (pools a-v1, a-v2: hm-a is r1's pool-a's, out:get)
 *   r4: c (pool-c: no endpoints, a warning)
 * 4 routes + 5 pools = 9 calls; objects: 5 pools, 3 health monitors. */

static void put_obj(fx_t *f, const char *kind, const char *name,
                    const char *fmt, ...) {
  char spec[1024], json[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(spec, sizeof spec, fmt, ap);
  va_end(ap);
  snprintf(json, sizeof json,
           "{\"kind\":\"%s\",\"metadata\":{\"name\":\"%s\",\"namespace\":"
           "\"ns\"%s},\"spec\":{%s}}",
           kind, name,
           strcmp(kind, "Endpoints") == 0 ? ",\"labels\":{\"version\":\"v1\"}"
                                          : "",
           spec);
  change(f, kind, "ns", name, json);
}

/* Endpoints `name` of Service `svc`, label version=`version`, one IP. */
static void put_nep(fx_t *f, const char *name, const char *svc,
                    const char *version, const char *ip) {
  char json[512];
  snprintf(json, sizeof json,
           "{\"kind\":\"Endpoints\",\"metadata\":{\"name\":\"%s\","
           "\"namespace\":\"ns\",\"labels\":{\"version\":\"%s\"}},"
           "\"spec\":{\"service\":\"%s\",\"ips\":[\"%s\"]}}",
           name, version, svc, ip);
  change(f, "Endpoints", "ns", name, json);
}

static void nested_mesh(fx_t *f) {
  change(f, "Gateway", "ns", "gw",
         "{\"kind\":\"Gateway\",\"metadata\":{\"name\":\"gw\",\"namespace\":"
         "\"ns\"},\"spec\":{}}");
  put_obj(f, "Service", "a", "\"port\":80");
  put_obj(f, "Service", "b", "\"port\":8080");
  put_obj(f, "Service", "c", "\"port\":80");
  put_nep(f, "ea1", "a", "v1", "10.0.1.1");
  put_nep(f, "ea2", "a", "v2", "10.0.1.2");
  put_nep(f, "eb1", "b", "v1", "10.0.2.1");
  put_obj(f, "DestinationRule", "a",
          "\"subsets\":{\"v1\":{\"version\":\"v1\"},"
          "\"v2\":{\"version\":\"v2\"}}");
  put_obj(f, "VirtualService", "r1",
          "\"dests\":[{\"service\":\"a\",\"weight\":70},"
          "{\"service\":\"b\",\"weight\":30}]");
  put_obj(f, "VirtualService", "r2",
          "\"dests\":[{\"service\":\"a\",\"weight\":100}]");
  put_obj(f, "VirtualService", "r3",
          "\"dests\":[{\"service\":\"a\",\"subset\":\"v1\",\"weight\":50},"
          "{\"service\":\"a\",\"subset\":\"v2\",\"weight\":50}]");
  put_obj(f, "VirtualService", "r4", "\"dests\":[{\"service\":\"c\"}]");
}

static size_t memo_entries(fx_t *f) {
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(f->memo, &st);
  return st.entries;
}

/* Both engines fail the translation with the same error (the traceback
 * that follows differs: rt.memo's frames). */
static void check_error(fx_t *f, const char *part) {
  amc_translation_t *t =
      amc_rules_engine_translate(f->memo, "Gateway", "ns", "gw");
  amc_translation_t *w =
      amc_rules_engine_translate(f->ref, "Gateway", "ns", "gw");
  assert_non_null(t->error);
  assert_non_null(w->error);
  size_t n = strcspn(w->error, "\n");
  assert_int_equal(strcspn(t->error, "\n"), n);
  assert_memory_equal(t->error, w->error, n);
  assert_non_null(strstr(t->error, part));
  amc_translation_free(t);
  amc_translation_free(w);
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(f->memo, &st);
  f->h0 = st.hits;
  f->m0 = st.misses;
}

static void test_nested_replay_equals_full(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  nested_mesh(f);
  assert_int_equal(check(f, &h, &m), 0);
  assert_int_equal(m, 9);
  assert_int_equal(h, 0);
  assert_int_equal(memo_entries(f), 9);
  /* Nothing changed: the routes replay (with their pools' adds); the pool
   * entries are kept although their calls were not made. */
  assert_int_equal(check(f, &h, &m), 8);
  assert_int_equal(m, 0);
  assert_int_equal(h, 4);
  assert_int_equal(memo_entries(f), 9);
  /* translate_full runs every call, inner ones too */
  amc_translation_t *t =
      amc_rules_engine_translate_full(f->memo, "Gateway", "ns", "gw");
  assert_int_equal(t->n_unchanged, 0);
  amc_translation_free(t);
  assert_int_equal(check(f, &h, &m), 8);
  assert_int_equal(m, 9); /* translate_full's */
  assert_int_equal(h, 4);
}

/* A weight change runs its route again; its pools replay inside it (and
 * stay unchanged), also after translations that only replayed the route. */
static void test_nested_weight_change_replays_pools(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  nested_mesh(f);
  check(f, &h, &m);
  check(f, &h, &m); /* only the routes replay */
  put_obj(f, "VirtualService", "r1",
          "\"dests\":[{\"service\":\"a\",\"weight\":60},"
          "{\"service\":\"b\",\"weight\":40}]");
  assert_int_equal(check(f, &h, &m), 8);
  assert_int_equal(m, 1);
  assert_int_equal(h, 3 + 2);
  assert_int_equal(memo_entries(f), 9);
  put_obj(f, "VirtualService", "r1",
          "\"dests\":[{\"service\":\"a\",\"weight\":50},"
          "{\"service\":\"b\",\"weight\":50}]");
  assert_int_equal(check(f, &h, &m), 8);
  assert_int_equal(m, 1);
  assert_int_equal(h, 3 + 2);
  /* r3's pools: their out:get of hm-a (r1's pool-a's) answers the same */
  put_obj(f, "VirtualService", "r3",
          "\"dests\":[{\"service\":\"a\",\"subset\":\"v1\",\"weight\":10},"
          "{\"service\":\"a\",\"subset\":\"v2\",\"weight\":90}]");
  assert_int_equal(check(f, &h, &m), 8);
  assert_int_equal(m, 1);
  assert_int_equal(h, 3 + 2);
  check(f, &h, &m);
  assert_int_equal(h, 4);
  assert_int_equal(memo_entries(f), 9);
  /* r1's entry, made while its pools replayed, keeps them too */
  put_obj(f, "VirtualService", "r1",
          "\"dests\":[{\"service\":\"a\",\"weight\":40},"
          "{\"service\":\"b\",\"weight\":60}]");
  assert_int_equal(check(f, &h, &m), 8);
  assert_int_equal(m, 1);
  assert_int_equal(h, 3 + 2);
}

/* What a pool read changes: the pool runs again, and so does every route
 * whose entry holds it (made when the pool ran, or when it replayed inside
 * the route). */
static void test_nested_endpoints_rerun_pool(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  nested_mesh(f);
  check(f, &h, &m);
  put_obj(f, "VirtualService", "r1", /* r1's entry: made with pool replays */
          "\"dests\":[{\"service\":\"a\",\"weight\":60},"
          "{\"service\":\"b\",\"weight\":40}]");
  check(f, &h, &m);
  put_nep(f, "eb1", "b", "v1", "10.0.2.9");
  assert_int_equal(check(f, &h, &m), 6); /* pool-b's body changed, hm-b */
  assert_int_equal(m, 2);                /* r1, pool-b */
  assert_int_equal(h, 3 + 1);            /* pool-a inside r1 */
  /* a's Endpoints: every pool of a (r1's, r3's two) and their routes; r2
   * (no pool call: r1 added it) replays. */
  put_nep(f, "ea1", "a", "v1", "10.0.1.9");
  check(f, &h, &m);
  assert_int_equal(m, 5);
  assert_int_equal(h, 3); /* r2, r4, pool-b */
  /* an Endpoints that leaves a for c: a's pools and c's */
  put_nep(f, "ea2", "c", "v2", "10.0.1.2");
  check(f, &h, &m);
  assert_int_equal(m, 7);
  assert_int_equal(h, 2); /* r2, pool-b */
  assert_int_equal(memo_entries(f), 9);
}

/* A DestinationRule subset change: the pools that read it. */
static void test_nested_subset_change(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  nested_mesh(f);
  check(f, &h, &m);
  put_obj(f, "DestinationRule", "a",
          "\"subsets\":{\"v1\":{\"version\":\"v2\"},"
          "\"v2\":{\"version\":\"v2\"}}");
  assert_int_equal(check(f, &h, &m), 6); /* a-v1's servers; a-v2 ran */
  assert_int_equal(m, 3);                        /* r3, a-v1, a-v2 */
  assert_int_equal(h, 3);
  /* v2 gone: a-v2 warns and adds nothing */
  put_obj(f, "DestinationRule", "a", "\"subsets\":{\"v1\":{\"version\":\"v1\"}}");
  check(f, &h, &m);
  assert_int_equal(m, 3);
  assert_int_equal(check(f, &h, &m), 7);
  assert_int_equal(h, 4);
  assert_int_equal(memo_entries(f), 9);
}

/* A Service deleted: the route that reads it runs (its other pool
 * replays); the deleted one's pool entry goes. Back: it runs again. */
static void test_nested_service_deleted(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  nested_mesh(f);
  check(f, &h, &m);
  change(f, "Service", "ns", "b", NULL);
  assert_int_equal(check(f, &h, &m), 6); /* without pool-b and hm-b */
  assert_int_equal(m, 1);
  assert_int_equal(h, 3 + 1);
  assert_int_equal(memo_entries(f), 8);
  put_obj(f, "Service", "b", "\"port\":8080");
  assert_int_equal(check(f, &h, &m), 6);
  assert_int_equal(m, 2);
  assert_int_equal(h, 3 + 1);
  assert_int_equal(memo_entries(f), 9);
}

/* A pool two routes use: r1 builds it, r2 only sees it. r1 gone, r2 runs
 * and builds it in a call with r1's subkey: r1's entry replays inside r2.
 * r1 back (first again): it replays the pool, r2 runs again. */
static void test_nested_shared_pool(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  nested_mesh(f);
  check(f, &h, &m);
  change(f, "VirtualService", "ns", "r1", NULL);
  assert_int_equal(check(f, &h, &m), 6); /* pool-a, hm-a unchanged too */
  assert_int_equal(m, 1);                /* r2 */
  assert_int_equal(h, 1 + 2);            /* pool-a inside r2; r3, r4 */
  put_obj(f, "VirtualService", "r1",
          "\"dests\":[{\"service\":\"a\",\"weight\":70},"
          "{\"service\":\"b\",\"weight\":30}]");
  assert_int_equal(check(f, &h, &m), 6);
  assert_int_equal(m, 3); /* r1, pool-b (its entry went), r2 */
  assert_int_equal(h, 3); /* pool-a inside r1; r3, r4 */
  assert_int_equal(check(f, &h, &m), 8);
  assert_int_equal(h, 4);
  assert_int_equal(memo_entries(f), 9);
}

/* out:get inside an inner call: r3's pools saw hm-a (added by r1's pool-a).
 * Without r1 and r2 nobody adds it before r3: r3 runs (its entry holds
 * the pools' out:get answers), a-v1 runs (it adds hm-a now), a-v2 still
 * sees hm-a and replays. */
static void test_nested_out_get_inside(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  nested_mesh(f);
  check(f, &h, &m);
  change(f, "VirtualService", "ns", "r1", NULL);
  change(f, "VirtualService", "ns", "r2", NULL);
  assert_int_equal(check(f, &h, &m), 3); /* a-v2, pool-c, hm-c */
  assert_int_equal(m, 2);                /* r3, a-v1 */
  assert_int_equal(h, 1 + 1);            /* a-v2 inside r3; r4 */
  assert_int_equal(check(f, &h, &m), 5);
  assert_int_equal(h, 2);
  assert_int_equal(memo_entries(f), 5);
}

/* An inner call that raises: the translation fails as without the memo,
 * and keeps its entries; fixed, it converges. A route that catches the
 * error (pcall) is kept like any call, with what it did after the error. */
static void test_nested_inner_error(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  nested_mesh(f);
  check(f, &h, &m);
  put_obj(f, "Service", "b", "\"port\":8080,\"fail\":true");
  check_error(f, "Service b says fail");
  assert_int_equal(memo_entries(f), 9);
  put_obj(f, "Service", "b", "\"port\":8080");
  assert_int_equal(check(f, &h, &m), 6); /* pool-b, hm-b: new bodies */
  assert_int_equal(m, 2);                /* r1, pool-b */
  assert_int_equal(h, 3 + 1);
  /* r4 catches x's error, builds pool-c after it, adds a pool group */
  put_obj(f, "Service", "x", "\"fail\":true");
  put_obj(f, "VirtualService", "r4",
          "\"catch\":true,\"after\":true,\"dests\":[{\"service\":\"x\"},"
          "{\"service\":\"c\",\"weight\":3}]");
  assert_int_equal(check(f, &h, &m), 8); /* but pg-r4 (r4 ran) */
  assert_int_equal(m, 2);                /* r4, x's pool (raised) */
  assert_int_equal(h, 3 + 1);            /* pool-c (the old r4's) */
  assert_int_equal(check(f, &h, &m), 9); /* + pg-r4 */
  assert_int_equal(h, 4);
  put_obj(f, "VirtualService", "r4",
          "\"catch\":true,\"after\":true,\"dests\":[{\"service\":\"x\"},"
          "{\"service\":\"c\",\"weight\":4}]");
  assert_int_equal(check(f, &h, &m), 8); /* pg-r4 is r4's own */
  assert_int_equal(m, 2);                /* r4, x's pool */
  assert_int_equal(h, 3 + 1);            /* pool-c after the caught error */
  assert_int_equal(memo_entries(f), 9);
}

/* Entries stay as many as the calls of one translation, however many
 * changes come. */
static void test_nested_entries_bounded(void **state) {
  fx_t *f = *state;
  uint64_t h, m;
  nested_mesh(f);
  check(f, &h, &m);
  amc_rules_memo_stats_t st0, st;
  amc_rules_engine_memo_stats(f->memo, &st0);
  for (int i = 0; i < 60; i++) {
    char spec[256];
    snprintf(spec, sizeof spec,
             "\"dests\":[{\"service\":\"a\",\"weight\":%d},"
             "{\"service\":\"b\",\"weight\":%d}]",
             i, 100 - i);
    put_obj(f, "VirtualService", i % 2 ? "r1" : "r2", spec);
    if (i % 7 == 0) {
      char ip[32];
      snprintf(ip, sizeof ip, "10.0.2.%d", i);
      put_nep(f, "eb1", "b", "v1", ip);
    }
    check(f, &h, &m);
    assert_int_equal(memo_entries(f), 9);
  }
  amc_rules_engine_memo_stats(f->memo, &st);
  assert_true(st.bytes < 2 * st0.bytes);
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
      cmocka_unit_test_setup_teardown(test_nested_replay_equals_full,
                                      setup_nested, teardown),
      cmocka_unit_test_setup_teardown(test_nested_weight_change_replays_pools,
                                      setup_nested, teardown),
      cmocka_unit_test_setup_teardown(test_nested_endpoints_rerun_pool,
                                      setup_nested, teardown),
      cmocka_unit_test_setup_teardown(test_nested_subset_change, setup_nested,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_nested_service_deleted,
                                      setup_nested, teardown),
      cmocka_unit_test_setup_teardown(test_nested_shared_pool, setup_nested,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_nested_out_get_inside,
                                      setup_nested, teardown),
      cmocka_unit_test_setup_teardown(test_nested_inner_error, setup_nested,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_nested_entries_bounded,
                                      setup_nested, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
