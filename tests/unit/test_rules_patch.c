/* test_rules_patch.c - a patch is the translation it stands for.
 *
 * rules_engine.h "Patches": after a change that leaves a Gateway's own
 * reads alone, the engine runs just its stale top-level memoized calls
 * again and, when each did exactly what it did before (result, out:get
 * answers, objects by name, diagnostics, reads), returns only their
 * objects. Each step here changes the store, translates with a patching
 * engine and with a reference engine without the memo, and checks that
 * the patching engine's view (its last whole translation with the
 * patches since put in) equals the reference: objects and checksums,
 * diagnostics and reads. The steps also check *whether* a patch was made
 * or declined, so that the cases a patch must not take (a changed result,
 * an out:get answered otherwise, new diagnostics, other reads, an error,
 * a change to the Gateway's own reads) are each shown to fall back.
 * Patches follow patches (the view is the last whole translation with
 * every patch since put in). */
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
  amc_rules_engine_t *patching; /* memo and patches on */
  amc_rules_engine_t *ref;      /* memo off: the reference */
  char *view;                   /* the patching engine's view of the key */
  uint64_t patches, declined;   /* its counts at the last step */
  size_t patch_objects;         /* the objects of the last step's patch */
} fx_t;

static amc_rules_engine_t *engine(fx_t *f, const char *rules) {
  amc_rules_engine_t *e = amc_rules_engine_new(f->store, &f->settings, NULL);
  char err[2048];
  if (amc_rules_engine_load(e, rules, err, sizeof err) != 0)
    fail_msg("load: %s", err);
  return e;
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  f->store = amc_store_new();
  amc_settings_init(&f->settings);
  amc_settings_set(&f->settings, "cluster", "c1");
  /* (not AMC_PATCH_CHECK: it translates in full after each patch, so
   * patches would never follow patches; the steps compare instead) */
  f->patching = engine(f, FIX "rules_patch");
  assert_int_equal(amc_rules_engine_set_memo(f->patching, 1), 0);
  assert_int_equal(amc_rules_engine_set_patch(f->patching, 1), 0);
  f->ref = engine(f, FIX "rules_patch");
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  amc_rules_engine_free(f->patching);
  amc_rules_engine_free(f->ref);
  amc_settings_free(&f->settings);
  amc_store_free(f->store);
  free(f->view);
  free(f);
  return 0;
}

/* Puts (json != NULL) or deletes an object and tells the patching engine,
 * as the controller does. */
static void change(fx_t *f, const char *kind, const char *name,
                   const char *json) {
  const amc_store_obj_t *o = amc_store_get(f->store, kind, "ns", name);
  char *old = o ? strdup(obj_json(o)) : NULL;
  if (json)
    assert_int_equal(amc_store_put_json(f->store, kind, "ns", name, json,
                                        strlen(json), NULL, NULL, NULL),
                     0);
  else
    amc_store_delete(f->store, kind, "ns", name);
  amc_rules_engine_changed(f->patching, kind, "ns", name, old, json);
  free(old);
}

/* A VirtualService: `extra` is more of its spec ("" or ",\"k\":v"). */
static void put_vs_spec(fx_t *f, const char *name, const char *svc,
                        const char *config, const char *extra) {
  char json[512];
  snprintf(json, sizeof json,
           "{\"kind\":\"VirtualService\",\"metadata\":{\"name\":\"%s\","
           "\"namespace\":\"ns\"},\"spec\":{\"service\":\"%s\","
           "\"config\":\"%s\",\"gateway\":\"gw\"%s}}",
           name, svc, config, extra);
  change(f, "VirtualService", name, json);
}

static void put_vs_disabled(fx_t *f, const char *name, const char *svc,
                            const char *config, int disabled) {
  put_vs_spec(f, name, svc, config, disabled ? ",\"disabled\":true" : "");
}

static void put_vs(fx_t *f, const char *name, const char *svc,
                   const char *config) {
  put_vs_disabled(f, name, svc, config, 0);
}

/* A Config: `spec` is the JSON of its spec (NULL: delete it). */
static void put_config(fx_t *f, const char *name, const char *spec) {
  char json[512];
  snprintf(json, sizeof json,
           "{\"kind\":\"Config\",\"metadata\":{\"name\":\"%s\","
           "\"namespace\":\"ns\"},\"spec\":%s}",
           name, spec ? spec : "{}");
  change(f, "Config", name, spec ? json : NULL);
}

static void put_gateway(fx_t *f, int port) {
  char json[256];
  snprintf(json, sizeof json,
           "{\"kind\":\"Gateway\",\"metadata\":{\"name\":\"gw\","
           "\"namespace\":\"ns\"},\"spec\":{\"port\":%d}}",
           port);
  change(f, "Gateway", "gw", json);
}

/* r1 and r2 route to Service a (r1 adds the shared pool, r2 finds it),
 * r3 to b; each has its own Config. */
static void mesh(fx_t *f) {
  put_gateway(f, 80);
  put_config(f, "c1", "{\"weight\":10}");
  put_config(f, "c2", "{\"weight\":20}");
  put_config(f, "c3", "{\"weight\":30}");
  put_vs(f, "r1", "a", "c1");
  put_vs(f, "r2", "a", "c2");
  put_vs(f, "r3", "b", "c3");
}

/* A translation as lines: "o type name cksum", "d ...", "r ...". */
static void obj_line(amc_buf_t *b, const amc_avi_object_t *o) {
  amc_buf_printf(b, "o %s %s %s\n", o->type, o->name, o->cksum);
}

static char *text_of(const amc_translation_t *t) {
  amc_buf_t b = AMC_BUF_INIT;
  for (size_t i = 0; i < t->n_objects; i++)
    obj_line(&b, &t->objects[i]);
  for (size_t i = 0; i < t->n_diags; i++) {
    const amc_diag_t *d = &t->diags[i];
    amc_buf_printf(&b, "d %d %s %s %s %s\n", (int)d->severity, d->kind, d->name,
                   d->field, d->message);
  }
  for (size_t i = 0; i < t->n_reads; i++) {
    const amc_read_t *r = &t->reads[i];
    amc_buf_printf(&b, "r %s %s %s %s %s %s\n", r->kind,
                   r->namespace_ ? r->namespace_ : "-", r->name ? r->name : "-",
                   r->field ? r->field : "-", r->label ? r->label : "-",
                   r->value ? r->value : "-");
  }
  return b.data ? b.data : strdup("");
}

/* The view with a patch's objects put in (each must already be there:
 * a patch adds the same objects by name). */
static char *patched(const char *view, const amc_translation_t *p) {
  amc_buf_t b = AMC_BUF_INIT;
  size_t found = 0;
  for (const char *q = view; *q;) {
    const char *nl = strchr(q, '\n');
    size_t len = (size_t)(nl - q) + 1;
    const amc_avi_object_t *hit = NULL;
    for (size_t i = 0; i < p->n_objects && !hit; i++) {
      amc_buf_t pre = AMC_BUF_INIT;
      amc_buf_printf(&pre, "o %s %s ", p->objects[i].type, p->objects[i].name);
      if (len > pre.len && memcmp(q, pre.data, pre.len) == 0)
        hit = &p->objects[i];
      amc_buf_free(&pre);
    }
    if (hit) {
      obj_line(&b, hit);
      found++;
    } else {
      amc_buf_append(&b, q, len);
    }
    q += len;
  }
  assert_int_equal(found, p->n_objects);
  return b.data;
}

enum { FULL, PATCH, DECLINED };

/* Translates with both engines and compares; returns what the patching
 * engine did: a full translation without trying a patch (FULL), a patch
 * (PATCH), or a patch tried and dropped (DECLINED). `err`: the reference
 * must fail too (then so must the patching engine). */
static int step_err(fx_t *f, int err) {
  amc_translation_t *t =
      amc_rules_engine_translate(f->patching, "Gateway", "ns", "gw");
  amc_translation_t *want =
      amc_rules_engine_translate(f->ref, "Gateway", "ns", "gw");
  amc_rules_memo_stats_t st;
  amc_rules_engine_memo_stats(f->patching, &st);
  int what = st.patches > f->patches     ? PATCH
             : st.declined > f->declined ? DECLINED
                                         : FULL;
  f->patches = st.patches;
  f->declined = st.declined;
  if (err) {
    assert_non_null(want->error);
    assert_non_null(t->error);
    assert_int_equal(t->partial, 0);
  } else {
    if (want->error)
      fail_msg("reference: %s", want->error);
    if (t->error)
      fail_msg("patching engine: %s", t->error);
    assert_int_equal(t->partial, what == PATCH);
    f->patch_objects = t->partial ? t->n_objects : 0;
    char *view = t->partial ? patched(f->view, t) : text_of(t);
    char *ref = text_of(want);
    assert_string_equal(view, ref);
    free(ref);
    free(f->view);
    f->view = view;
  }
  amc_translation_free(t);
  amc_translation_free(want);
  return what;
}

static int step(fx_t *f) {
  return step_err(f, 0);
}

/* Puts Config `config` (unless NULL), translates, and checks that the
 * patching engine made a patch that stands for the reference; returns the
 * patch's objects (what it re-sent). */
static size_t patch_objects(fx_t *f, const char *config, const char *spec) {
  if (config)
    put_config(f, config, spec);
  assert_int_equal(step(f), PATCH);
  return f->patch_objects;
}

/* A weight: only the route's pool group changes; the patch is its call's
 * objects (the pool group, and the shared pool r1 adds), nothing else. */
static void test_weight_is_patched(void **state) {
  fx_t *f = *state;
  mesh(f);
  assert_int_equal(step(f), FULL);
  assert_int_equal(patch_objects(f, "c1", "{\"weight\":11}"), 2);
  assert_int_equal(patch_objects(f, "c3", "{\"weight\":31}"), 2);
  /* twice in a row, and back */
  assert_int_equal(patch_objects(f, "c3", "{\"weight\":30}"), 2);
}

/* Two stale calls in one patch. */
static void test_two_stale_calls(void **state) {
  fx_t *f = *state;
  mesh(f);
  assert_int_equal(step(f), FULL);
  put_config(f, "c1", "{\"weight\":12}");
  put_config(f, "c3", "{\"weight\":32}");
  assert_int_equal(step(f), PATCH);
}

/* r2 finds the pool r1 added: run again alone, it must find it too (the
 * objects added before the call in the last translation are present for
 * out:get), and its patch is its pool group alone. */
static void test_shared_pool(void **state) {
  fx_t *f = *state;
  mesh(f);
  assert_int_equal(step(f), FULL);
  assert_int_equal(patch_objects(f, "c2", "{\"weight\":21}"), 1);
  /* r1 and r2 together: r1 adds the pool in the patch first, as before */
  put_config(f, "c1", "{\"weight\":13}");
  put_config(f, "c2", "{\"weight\":22}");
  assert_int_equal(step(f), PATCH);
  /* a call that adds another object now: not the same events */
  put_config(f, "c2", "{\"weight\":22,\"extra\":true}");
  assert_int_equal(step(f), DECLINED);
  put_config(f, "c2", "{\"weight\":23,\"extra\":true}");
  assert_int_equal(step(f), PATCH);
}

/* A route whose result, diagnostics or reads change is not patched. */
static void test_different_call_declines(void **state) {
  fx_t *f = *state;
  mesh(f);
  assert_int_equal(step(f), FULL);
  put_config(f, "c1", "{\"weight\":10,\"rule\":\" +x\"}");
  assert_int_equal(step(f), DECLINED); /* its result */
  put_config(f, "c1", "{\"weight\":10,\"rule\":\" +x\",\"warn\":\"w\"}");
  assert_int_equal(step(f), DECLINED); /* a diagnostic */
  put_config(f, "c1",
             "{\"weight\":10,\"rule\":\" +x\",\"warn\":\"w\","
             "\"also\":\"c3\"}");
  assert_int_equal(step(f), DECLINED); /* a read */
  /* and then the same again, with another weight */
  put_config(f, "c1",
             "{\"weight\":14,\"rule\":\" +x\",\"warn\":\"w\","
             "\"also\":\"c3\"}");
  assert_int_equal(step(f), PATCH);
  /* a change to what it reads as `also` */
  put_config(f, "c3", "{\"weight\":33}");
  assert_int_equal(step(f), PATCH);
}

/* The Gateway lists its VirtualServices projected onto spec.disabled: an
 * edit to another field of one is a patch (its route runs again); an
 * edit the projection shows, or one that moves it in or out of the
 * list, is a change to the Gateway's own reads: no patch is tried. */
static void test_projected_list(void **state) {
  fx_t *f = *state;
  mesh(f);
  assert_int_equal(step(f), FULL);
  /* (a route's rt.get of its own VirtualService, an input of its call,
   * is no read of its own: the Gateway's list covers it) */
  assert_null(strstr(f->view, "r VirtualService ns r1 "));
  put_vs_spec(f, "r3", "b", "c3", ",\"weight\":7");
  assert_int_equal(patch_objects(f, NULL, NULL), 2);
  put_vs_spec(f, "r2", "a", "c2", ",\"weight\":8");
  assert_int_equal(patch_objects(f, NULL, NULL), 1); /* (the shared pool) */
  /* what the projection shows */
  put_vs_disabled(f, "r3", "b", "c3", 1);
  assert_int_equal(step(f), FULL);
  put_vs(f, "r3", "b", "c3");
  assert_int_equal(step(f), FULL);
  /* off the list and back (the filter's field) */
  change(f, "VirtualService", "r3",
         "{\"kind\":\"VirtualService\",\"metadata\":{\"name\":\"r3\","
         "\"namespace\":\"ns\"},\"spec\":{\"service\":\"b\","
         "\"config\":\"c3\",\"gateway\":\"other\"}}");
  assert_int_equal(step(f), FULL);
  put_vs(f, "r3", "b", "c3");
  assert_int_equal(step(f), FULL);
  /* a route that now reads another Config: not the same reads */
  put_vs(f, "r3", "b", "c2");
  assert_int_equal(step(f), DECLINED);
}

/* A change to the Gateway's own reads (the list of VirtualServices, the
 * Gateway) is never patched: no patch is tried. */
static void test_own_reads_translate(void **state) {
  fx_t *f = *state;
  mesh(f);
  assert_int_equal(step(f), FULL);
  /* what only the gateway reads of a VirtualService (its call would run
   * the same: a patch would keep the disabled route) */
  put_vs_disabled(f, "r3", "b", "c3", 1);
  assert_int_equal(step(f), FULL);
  put_vs(f, "r3", "b", "c3");
  assert_int_equal(step(f), FULL);
  put_vs(f, "r4", "c", "c1");
  assert_int_equal(step(f), FULL);
  put_gateway(f, 8080); /* the port, a kept argument, changes */
  assert_int_equal(step(f), FULL);
  /* r1 and r4 read c1: both run again (each its pool and pool group) */
  assert_int_equal(patch_objects(f, "c1", "{\"weight\":15}"), 4);
  change(f, "VirtualService", "r4", NULL);
  assert_int_equal(step(f), FULL);
  /* nothing it read changed: translated, not patched */
  put_config(f, "unread", "{\"weight\":1}");
  assert_int_equal(step(f), FULL);
}

/* An input read again: a deleted Config is a patch when the call does the
 * same with it gone (its pool group's ratio falls back to 1). */
static void test_deleted_read(void **state) {
  fx_t *f = *state;
  mesh(f);
  assert_int_equal(step(f), FULL);
  put_config(f, "c3", NULL);
  assert_int_equal(step(f), PATCH);
  put_config(f, "c3", "{\"weight\":30}");
  assert_int_equal(step(f), PATCH);
}

/* An error in a call run again: no patch, and the translation fails as
 * the reference does; once fixed, patches resume. */
static void test_error_in_call(void **state) {
  fx_t *f = *state;
  mesh(f);
  assert_int_equal(step(f), FULL);
  put_config(f, "c1", "{\"weight\":10,\"boom\":true}");
  step_err(f, 1);
  put_config(f, "c1", "{\"weight\":16}");
  assert_int_equal(step(f), FULL); /* the kept state went with the error */
  put_config(f, "c1", "{\"weight\":17}");
  assert_int_equal(step(f), PATCH);
}

/* Off: never a patch. */
static void test_off(void **state) {
  fx_t *f = *state;
  assert_int_equal(amc_rules_engine_set_patch(f->patching, 0), 0);
  mesh(f);
  assert_int_equal(step(f), FULL);
  put_config(f, "c1", "{\"weight\":18}");
  assert_int_equal(step(f), FULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_weight_is_patched, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_stale_calls, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_pool, setup, teardown),
      cmocka_unit_test_setup_teardown(test_different_call_declines, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_projected_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_own_reads_translate, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_deleted_read, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_in_call, setup, teardown),
      cmocka_unit_test_setup_teardown(test_off, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
