/* test_rules_engine.c - generations, sandbox, limits, reads and output
 * checks of the rules engine, with fixture rule sets under
 * tests/unit/fixtures/rules_* and a stand-in runtime library
 * (tests/unit/fixtures/runtime_lua) so the engine is tested on its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rules_engine.h"
#include "settings.h"
#include "store.h"

#include "obj_json.h"

#define FIX AMC_SOURCE_DIR "/tests/unit/fixtures/"

typedef struct {
  amc_store_t *store;
  amc_settings_t settings;
  amc_rules_engine_t *eng;
  /* The same with a small CPU-time budget, for the runaway loops (the
   * memory bombs need more: the VM's emergency collections at every
   * refused allocation take a few hundred ms under ASan). */
  amc_rules_engine_t *fast;
} fx_t;

static void put(amc_store_t *s, const char *kind, const char *ns,
                const char *name, const char *json) {
  assert_int_equal(amc_store_put_json(s, kind, ns, name, json, strlen(json),
                                      NULL, NULL, NULL),
                   0);
}

static void put_gateway(amc_store_t *s, const char *ns, const char *name,
                        const char *labels) {
  char json[512];
  snprintf(json, sizeof json,
           "{\"apiVersion\":\"networking.istio.io/v1beta1\",\"kind\":"
           "\"Gateway\",\"metadata\":{\"labels\":%s,\"name\":\"%s\","
           "\"namespace\":\"%s\"},\"spec\":{\"servers\":[]}}",
           labels, name, ns);
  put(s, "Gateway", ns, name, json);
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  f->store = amc_store_new();
  amc_settings_init(&f->settings);
  amc_settings_set(&f->settings, "cluster", "c1");
  amc_rules_opts_t opts = {
      .translation_memory = 16 << 20,
      .cpu_budget_ms = 5000,
      .runtime_lua_dir = FIX "runtime_lua",
  };
  f->eng = amc_rules_engine_new(f->store, &f->settings, &opts);
  opts.cpu_budget_ms = 100;
  f->fast = amc_rules_engine_new(f->store, &f->settings, &opts);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  amc_rules_engine_free(f->eng);
  amc_rules_engine_free(f->fast);
  amc_settings_free(&f->settings);
  amc_store_free(f->store);
  free(f);
  return 0;
}

static void load_ok_on(amc_rules_engine_t *eng, const char *dir) {
  char err[2048];
  if (amc_rules_engine_load(eng, dir, err, sizeof err) != 0)
    fail_msg("load %s: %s", dir, err);
}

static void load_ok(fx_t *f, const char *dir) {
  load_ok_on(f->eng, dir);
}

static void load_fails_on(amc_rules_engine_t *eng, const char *dir,
                          const char *want) {
  char err[2048] = "";
  assert_int_equal(amc_rules_engine_load(eng, dir, err, sizeof err), -1);
  if (!strstr(err, want))
    fail_msg("load %s: error\n  %s\ndoes not contain\n  %s", dir, err, want);
}

static void load_fails(fx_t *f, const char *dir, const char *want) {
  load_fails_on(f->eng, dir, want);
}

/* Translates Gateway/ns/name and returns the error (or NULL). */
static char *translate_error_on(amc_rules_engine_t *eng, const char *ns,
                                const char *name) {
  amc_translation_t *t = amc_rules_engine_translate(eng, "Gateway", ns, name);
  assert_non_null(t);
  char *err = t->error ? strdup(t->error) : NULL;
  if (t->error)
    assert_int_equal(t->n_objects, 0);
  amc_translation_free(t);
  return err;
}

static char *translate_error(fx_t *f, const char *ns, const char *name) {
  return translate_error_on(f->eng, ns, name);
}

static void expect_error_on(amc_rules_engine_t *eng, const char *ns,
                            const char *name, const char *want) {
  char *err = translate_error_on(eng, ns, name);
  if (!err)
    fail_msg("%s/%s: translation succeeded, expected \"%s\"", ns, name, want);
  if (!strstr(err, want))
    fail_msg("%s/%s: error\n  %s\ndoes not contain\n  %s", ns, name, err, want);
  free(err);
}

static void expect_error(fx_t *f, const char *ns, const char *name,
                         const char *want) {
  expect_error_on(f->eng, ns, name, want);
}

/* Runaway loops run on the engine with the small budget. */
static void expect_loop_error(fx_t *f, const char *ns, const char *name,
                              const char *want) {
  expect_error_on(f->fast, ns, name, want);
}

static void setup_mesh(fx_t *f) {
  put_gateway(f->store, "ns", "gw", "{\"svc\":\"web\"}");
  put_gateway(f->store, "ns", "lonely", "{\"svc\":\"nope\"}");
  put(f->store, "Service", "ns", "web",
      "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":"
      "\"web\",\"namespace\":\"ns\"},\"spec\":{\"ports\":[{\"port\":8080}]}}");
  put(f->store, "EndpointSlice", "ns", "web-1",
      "{\"apiVersion\":\"discovery.k8s.io/v1\",\"endpoints\":[{\"addresses\":["
      "\"10.0.0.1\"]},{\"addresses\":[\"10.0.0.2\"]}],\"kind\":"
      "\"EndpointSlice\",\"metadata\":{\"labels\":{\"kubernetes.io/"
      "service-name\":\"web\"},\"name\":\"web-1\",\"namespace\":\"ns\"}}");
  put(f->store, "EndpointSlice", "other", "x",
      "{\"metadata\":{\"labels\":{}}}");
}

static void test_translate(void **state) {
  fx_t *f = *state;
  setup_mesh(f);
  assert_int_equal(amc_rules_engine_generation(f->eng), 0);
  load_ok(f, FIX "rules_ok");
  assert_int_equal(amc_rules_engine_generation(f->eng), 1);
  assert_int_equal(strlen(amc_rules_engine_digest(f->eng)), 64);
  assert_string_equal(amc_rules_engine_entry_file(f->eng), "rules/gateway.lua");
  const amc_store_obj_t *svc = amc_store_get(f->store, "Service", "ns", "web");
  char *svc_before = strdup(obj_json(svc));
  char *gw_before =
      strdup(obj_json(amc_store_get(f->store, "Gateway", "ns", "gw")));

  for (int round = 0; round < 2; round++) {
    amc_translation_t *t =
        amc_rules_engine_translate(f->eng, "Gateway", "ns", "gw");
    assert_non_null(t);
    if (t->error)
      fail_msg("%s", t->error);
    assert_string_equal(t->key, "Gateway/ns/gw");
    assert_int_equal(t->n_objects, 2);
    assert_string_equal(t->objects[0].type, "pool");
    assert_string_equal(t->objects[0].name, "amc--c1--pool--ns--web");
    assert_string_equal(t->objects[0].json,
                        "{\"name\":\"amc--c1--pool--ns--web\",\"port\":8080,"
                        "\"servers\":[{\"ip\":\"10.0.0.1\"},{\"ip\":"
                        "\"10.0.0.2\"}]}");
    assert_int_equal(t->objects[0].json_len, strlen(t->objects[0].json));
    assert_string_equal(t->objects[1].type, "vsvip");
    assert_string_equal(t->objects[1].json,
                        "{\"name\":\"amc--c1--vip--ns--gw\"}");
    assert_int_equal(t->n_diags, 0);
    /* Reads: deduplicated and sorted; lists have no name. */
    assert_int_equal(t->n_reads, 3);
    assert_string_equal(t->reads[0].kind, "EndpointSlice");
    assert_string_equal(t->reads[0].namespace_, "ns");
    assert_null(t->reads[0].name);
    assert_string_equal(t->reads[1].kind, "Secret");
    assert_string_equal(t->reads[1].name, "missing");
    assert_string_equal(t->reads[2].kind, "Service");
    assert_string_equal(t->reads[2].name, "web");
    amc_translation_free(t);
  }
  /* The rule mutated everything it was given; the store is unchanged. */
  assert_string_equal(obj_json(amc_store_get(f->store, "Service", "ns", "web")),
                      svc_before);
  assert_string_equal(obj_json(amc_store_get(f->store, "Gateway", "ns", "gw")),
                      gw_before);
  free(svc_before);
  free(gw_before);

  /* Diagnostics. */
  amc_translation_t *t =
      amc_rules_engine_translate(f->eng, "Gateway", "ns", "lonely");
  assert_null(t->error);
  assert_int_equal(t->n_objects, 1);
  assert_int_equal(t->n_diags, 1);
  assert_int_equal(t->diags[0].severity, AMC_DIAG_WARNING);
  assert_string_equal(t->diags[0].kind, "Gateway");
  assert_string_equal(t->diags[0].namespace_, "ns");
  assert_string_equal(t->diags[0].name, "lonely");
  assert_string_equal(t->diags[0].field, "metadata.labels.svc");
  assert_string_equal(t->diags[0].message, "service nope not found");
  amc_translation_free(t);

  expect_error(f, "ns", "absent", "Gateway/ns/absent: not found in the store");
}

static void test_no_generation(void **state) {
  fx_t *f = *state;
  put_gateway(f->store, "ns", "gw", "{}");
  expect_error(f, "ns", "gw",
               "no rules loaded (while translating Gateway/ns/gw)");
}

static void test_generations_swap_and_bad_load_keeps_old(void **state) {
  fx_t *f = *state;
  setup_mesh(f);
  load_ok(f, FIX "rules_ok");
  char d1[65];
  strcpy(d1, amc_rules_engine_digest(f->eng));
  load_ok(f, FIX "rules_ok2");
  assert_int_equal(amc_rules_engine_generation(f->eng), 2);
  assert_string_not_equal(amc_rules_engine_digest(f->eng), d1);
  char d2[65];
  strcpy(d2, amc_rules_engine_digest(f->eng));

  load_fails(f, FIX "rules_syntax",
             "loading rules from " FIX "rules_syntax: rules/gateway.lua:5: "
             "unexpected symbol near '='");
  load_fails(f, FIX "rules_nonexistent", "No such file or directory");
  load_fails_on(f->fast, FIX "rules_loadloop",
                "rules/gateway.lua:3: CPU time budget exceeded (100 ms) while "
                "loading rules from");
  /* Still generation 2, still translating with it. */
  assert_int_equal(amc_rules_engine_generation(f->eng), 2);
  assert_string_equal(amc_rules_engine_digest(f->eng), d2);
  amc_translation_t *t =
      amc_rules_engine_translate(f->eng, "Gateway", "ns", "gw");
  assert_null(t->error);
  assert_int_equal(t->n_objects, 1);
  assert_string_equal(t->objects[0].json, "{\"name\":\"v2-gw\"}");
  amc_translation_free(t);
  /* Reloading the same files gives the same digest. */
  load_ok(f, FIX "rules_ok");
  assert_string_equal(amc_rules_engine_digest(f->eng), d1);
  assert_int_equal(amc_rules_engine_generation(f->eng), 3);
}

static void write_text(const char *path, const char *text) {
  FILE *fh = fopen(path, "w");
  assert_non_null(fh);
  fputs(text, fh);
  fclose(fh);
}

static void dir_digest_ok(const char *dir, char out[65]) {
  char err[512];
  int rc = amc_rules_dir_digest(dir, out, err, sizeof err);
  if (rc != 0)
    fail_msg("%s", err);
  assert_int_equal(strlen(out), 64);
}

/* amc_rules_dir_digest gives the digest a load would give, without a
 * load: it follows the rule files' contents and names only. */
static void test_dir_digest_matches_generation(void **state) {
  fx_t *f = *state;
  char d[65];
  dir_digest_ok(FIX "rules_ok", d);
  load_ok(f, FIX "rules_ok");
  assert_string_equal(d, amc_rules_engine_digest(f->eng));
  dir_digest_ok(FIX "rules_ok2", d);
  assert_string_not_equal(d, amc_rules_engine_digest(f->eng));
  load_ok(f, FIX "rules_ok2");
  assert_string_equal(d, amc_rules_engine_digest(f->eng));

  char root[] = "/tmp/amc-rules-digest-XXXXXX", path[256], lib[256];
  assert_non_null(mkdtemp(root));
  snprintf(lib, sizeof lib, "%s/lib", root);
  assert_int_equal(mkdir(lib, 0755), 0);
  char base[65], now[65], err[512];
  assert_int_equal(amc_rules_dir_digest(root, now, err, sizeof err), -1);
  assert_non_null(strstr(err, "no rule files (*.lua)"));
  snprintf(path, sizeof path, "%s/gateway.lua", root);
  write_text(path, "return {}\n");
  dir_digest_ok(root, base);
  /* what is not a rule file does not count */
  snprintf(path, sizeof path, "%s/README.md", root);
  write_text(path, "notes\n");
  snprintf(path, sizeof path, "%s/.gateway.lua.swp", root);
  write_text(path, "editor state\n");
  dir_digest_ok(root, now);
  assert_string_equal(now, base);
  /* a rule file's content, a new file, a file's name: each counts */
  snprintf(path, sizeof path, "%s/gateway.lua", root);
  write_text(path, "return { }\n");
  dir_digest_ok(root, now);
  assert_string_not_equal(now, base);
  write_text(path, "return {}\n");
  dir_digest_ok(root, now);
  assert_string_equal(now, base);
  snprintf(path, sizeof path, "%s/lib/a.lua", root);
  write_text(path, "return 1\n");
  dir_digest_ok(root, now);
  assert_string_not_equal(now, base);
  char moved[256], with_a[65];
  strcpy(with_a, now);
  snprintf(moved, sizeof moved, "%s/lib/b.lua", root);
  assert_int_equal(rename(path, moved), 0);
  dir_digest_ok(root, now);
  assert_string_not_equal(now, with_a);
  assert_string_not_equal(now, base);

  assert_int_equal(
      amc_rules_dir_digest(FIX "rules_nonexistent", now, err, sizeof err), -1);
  assert_non_null(strstr(err, "No such file or directory"));

  unlink(moved);
  rmdir(lib);
  snprintf(path, sizeof path, "%s/gateway.lua", root);
  unlink(path);
  snprintf(path, sizeof path, "%s/README.md", root);
  unlink(path);
  snprintf(path, sizeof path, "%s/.gateway.lua.swp", root);
  unlink(path);
  assert_int_equal(rmdir(root), 0);
}

static void test_load_errors(void **state) {
  fx_t *f = *state;
  load_fails(f, FIX "rules_cycle", "import cycle: a -> b -> a");
  load_fails(f, FIX "rules_noentry",
             "no entry rule: no module has translate with api_version = 1 "
             "and kind = \"Gateway\"");
  load_fails(f, FIX "rules_two_entries",
             "rules/other.lua and rules/gateway.lua both translate Gateway");
  load_fails(f, FIX "rules_badversion",
             "rules/gateway.lua: entry rule must declare api_version = 1");
  assert_int_equal(amc_rules_engine_generation(f->eng), 0);
}

static void test_runtime_errors(void **state) {
  fx_t *f = *state;
  load_ok(f, FIX "rules_runtime");
  put_gateway(f->store, "ns", "gw", "{}");
  put_gateway(f->store, "ns", "throw-table", "{}");
  put_gateway(f->store, "ns", "throw-string", "{}");
  char *err = translate_error(f, "ns", "gw");
  assert_non_null(err);
  const char *want = "rules/gateway.lua:2: attempt to index a nil value "
                     "(field 'nothing') while translating Gateway/ns/gw\n"
                     "stack traceback:";
  if (strncmp(err, want, strlen(want)) != 0)
    fail_msg("got: %s", err);
  if (!strstr(err, "rules/gateway.lua:2: in function"))
    fail_msg("got: %s", err);
  free(err);
  expect_error(f, "ns", "throw-table",
               "(error object is a table value) while translating "
               "Gateway/ns/throw-table");
  expect_error(f, "ns", "throw-string",
               "rules/gateway.lua:13: custom failure while translating "
               "Gateway/ns/throw-string");
}

static void test_sandbox(void **state) {
  fx_t *f = *state;
  load_ok(f, FIX "rules_sandbox");
  static const char *const cases[][2] = {
      {"io", "rules/gateway.lua:4: undefined global 'io'"},
      {"os", "undefined global 'os'"},
      {"load", "undefined global 'load'"},
      {"loadstring", "undefined global 'loadstring'"},
      {"dofile", "undefined global 'dofile'"},
      {"require", "undefined global 'require'"},
      {"debug", "undefined global 'debug'"},
      {"package", "undefined global 'package'"},
      {"collectgarbage", "undefined global 'collectgarbage'"},
      {"print", "undefined global 'print'"},
      {"rawset", "undefined global 'rawset'"},
      {"coroutine", "undefined global 'coroutine'"},
      {"dump", "attempt to call a nil value (field 'dump')"},
      {"strmeta", "attempt to index a boolean value (local 'mt')"},
      {"strmodify", "attempt to modify read-only table (field 'upper')"},
      {"mathmodify", "attempt to modify read-only table (field 'floor')"},
      {"random", "attempt to call a nil value (field 'random')"},
      {"global_write", "rules/gateway.lua:24: assignment to global 'leaked'"},
      {"global_read", "rules/gateway.lua:25: undefined global "
                      "'undefined_thing'"},
      {"arraymt", "attempt to modify read-only table (field '__index')"},
      {"arraymt_set", "cannot change a protected metatable"},
      {"gc", "setmetatable: __gc metamethods are not allowed"},
      {"loop", "rules/gateway.lua:34: CPU time budget exceeded (100 ms) "
               "while translating Gateway/ns/loop"},
      {"pcall_loop", "CPU time budget exceeded (100 ms) while translating "
                     "Gateway/ns/pcall_loop"},
      {"bomb", "rules/gateway.lua: memory limit exceeded (16777216 bytes per "
               "translation, 268435456 per generation) while translating "
               "Gateway/ns/bomb"},
      {"pcall_bomb", "memory limit exceeded"},
      {"concat_bomb", "memory limit exceeded"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    put_gateway(f->store, "ns", cases[i][0], "{}");
  load_ok_on(f->fast, FIX "rules_sandbox");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (strstr(cases[i][1], "CPU time budget"))
      expect_loop_error(f, "ns", cases[i][0], cases[i][1]);
    else
      expect_error(f, "ns", cases[i][0], cases[i][1]);
  }
  /* After all that, the string library and the VM still work. */
  load_ok(f, FIX "rules_ok");
  setup_mesh(f);
  amc_translation_t *t =
      amc_rules_engine_translate(f->eng, "Gateway", "ns", "gw");
  assert_null(t->error);
  amc_translation_free(t);
}

/* Memory and budget errors do not poison the generation. */
static void test_limits_leave_generation_usable(void **state) {
  fx_t *f = *state;
  load_ok(f, FIX "rules_sandbox");
  load_ok_on(f->fast, FIX "rules_sandbox");
  put_gateway(f->store, "ns", "bomb", "{}");
  put_gateway(f->store, "ns", "loop", "{}");
  put_gateway(f->store, "ns", "rawset", "{}");
  put_gateway(f->store, "ns", "gc", "{}");
  for (int i = 0; i < 3; i++) {
    expect_error(f, "ns", "bomb", "memory limit exceeded");
    expect_error(f, "ns", "rawset", "undefined global 'rawset'");
    expect_loop_error(f, "ns", "loop", "CPU time budget exceeded");
    expect_loop_error(f, "ns", "rawset", "undefined global 'rawset'");
    /* A late budget signal does not leak into the next translation. */
    expect_loop_error(f, "ns", "gc", "__gc metamethods are not allowed");
  }
  /* The memory held after the bombs is back near the start. */
  assert_true(amc_rules_engine_memory(f->eng) < (8u << 20));
  assert_true(amc_rules_engine_memory(f->fast) < (8u << 20));
}

/* Compaction gives the garbage's slabs back; the generation works on, with
 * its limits. */
static void test_compact_returns_memory(void **state) {
  fx_t *f = *state;
  assert_int_equal(amc_rules_engine_compact(f->eng), 0); /* no generation */
  load_ok(f, FIX "rules_sandbox");
  put_gateway(f->store, "ns", "litter", "{}");
  put_gateway(f->store, "ns", "bomb", "{}");
  put_gateway(f->store, "ns", "rawset", "{}");
  size_t base = amc_rules_engine_retained(f->eng);
  assert_true(base >= amc_rules_engine_memory(f->eng));
  for (int i = 0; i < 3; i++)
    assert_null(translate_error(f, "ns", "litter"));
  size_t used = amc_rules_engine_memory(f->eng);
  size_t held = amc_rules_engine_retained(f->eng);
  assert_true(held > base + (4u << 20)); /* ~8 MB of tables per pass */
  size_t freed = amc_rules_engine_compact(f->eng);
  assert_true(freed > (4u << 20));
  assert_true(amc_rules_engine_memory(f->eng) < used);
  assert_true(amc_rules_engine_retained(f->eng) <= held - freed);
  assert_true(amc_rules_engine_retained(f->eng) < base + (1u << 20));
  /* Again: nothing left to give back. */
  assert_true(amc_rules_engine_compact(f->eng) < (1u << 20));
  for (int i = 0; i < 3; i++) {
    assert_null(translate_error(f, "ns", "litter"));
    expect_error(f, "ns", "rawset", "undefined global 'rawset'");
    expect_error(f, "ns", "bomb", "memory limit exceeded");
    amc_rules_engine_compact(f->eng);
  }
  assert_true(amc_rules_engine_retained(f->eng) < base + (1u << 20));
}

static void test_output_checks(void **state) {
  fx_t *f = *state;
  load_ok(f, FIX "rules_output");
  static const char *const cases[][2] = {
      {"invalid", "rules/gateway.lua: invalid pool \"p\": port: 70000 is out "
                  "of range 0-65535 while translating Gateway/ns/invalid"},
      {"unknown_field", "invalid pool \"p\": bogus: unknown field of pool"},
      {"unknown_type", "invalid frob \"p\": frob: not an AVI type amc emits"},
      {"dup", "two pool objects named \"p\" (names must be unique per type)"},
      {"noname", "objects[0]: pool without a name"},
      {"notype", "objects[0].type must be a non-empty string"},
      {"func", "pool \"p\": f.print: cannot encode a function"},
      {"number", "translate must return a table (out:result()), got number"},
      {"baddiag", "diagnostics[0].severity must be \"warning\" or \"error\""},
  };
  put_gateway(f->store, "ns", "ok", "{}");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    put_gateway(f->store, "ns", cases[i][0], "{}");
  load_ok_on(f->fast, FIX "rules_sandbox");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (strstr(cases[i][1], "CPU time budget"))
      expect_loop_error(f, "ns", cases[i][0], cases[i][1]);
    else
      expect_error(f, "ns", cases[i][0], cases[i][1]);
  }
  char *err = translate_error(f, "ns", "ok");
  if (err)
    fail_msg("%s", err);
}

/* rt.list(kind, ns, labels): only objects with all the labels; a read
 * with labels is recorded with one of its labels (deps.h), without as a
 * plain (kind, namespace) list. */
static void test_list_labels(void **state) {
  fx_t *f = *state;
  setup_mesh(f);
  put(f->store, "EndpointSlice", "ns", "web-2",
      "{\"metadata\":{\"labels\":{\"app\":\"x\",\"kubernetes.io/"
      "service-name\":\"web\"},\"name\":\"web-2\",\"namespace\":\"ns\"}}");
  put(f->store, "EndpointSlice", "ns", "nolabels",
      "{\"metadata\":{\"name\":\"nolabels\",\"namespace\":\"ns\"}}");
  put_gateway(f->store, "ns", "bad", "{}");
  load_ok(f, FIX "rules_labels");
  amc_translation_t *t =
      amc_rules_engine_translate(f->eng, "Gateway", "ns", "gw");
  if (t->error)
    fail_msg("%s", t->error);
  assert_string_equal(t->objects[0].name,
                      "web=ns/web-1,ns/web-2;none=;all=ns/nolabels,ns/web-1,"
                      "ns/web-2;n=0");
  assert_int_equal(t->n_reads, 3);
  assert_null(t->reads[0].namespace_);
  assert_null(t->reads[0].field);
  assert_string_equal(t->reads[0].label, "kubernetes.io/service-name");
  assert_string_equal(t->reads[0].value, "web");
  assert_string_equal(t->reads[1].namespace_, "ns");
  assert_null(t->reads[1].label); /* {}: every object */
  assert_null(t->reads[1].value);
  assert_string_equal(t->reads[2].namespace_, "ns");
  assert_string_equal(t->reads[2].label, "app");
  assert_string_equal(t->reads[2].value, "nope");
  amc_translation_free(t);
  expect_error(f, "ns", "bad", "rt.list: labels must map strings to strings");
}

/* host.list(kind, ns, labels, field, value): objects whose string (or
 * array element) at the dotted path equals value, from the store's field
 * index; with labels too; decoded once per translation; reads recorded
 * per (kind, namespace, field, value), duplicates once. */
static void test_list_field(void **state) {
  fx_t *f = *state;
  put_gateway(f->store, "ns", "gw", "{}");
  put_gateway(f->store, "ns", "bad-empty", "{}");
  put_gateway(f->store, "ns", "bad-value", "{}");
  put(f->store, "VirtualService", "a", "v1",
      "{\"metadata\":{\"labels\":{\"team\":\"x\"},\"name\":\"v1\","
      "\"namespace\":\"a\"},\"spec\":{\"gateways\":[\"ns/gw\"],\"hosts\":["
      "\"h.example.com\"]}}");
  put(f->store, "VirtualService", "b", "v2",
      "{\"metadata\":{\"name\":\"v2\",\"namespace\":\"b\"},\"spec\":{"
      "\"gateways\":[\"other\",\"ns/gw\"]}}");
  put(f->store, "VirtualService", "a", "v3",
      "{\"metadata\":{\"name\":\"v3\",\"namespace\":\"a\"},\"spec\":{"
      "\"gateways\":[\"ns/other\"]}}");
  load_ok(f, FIX "rules_fields");
  amc_translation_t *t =
      amc_rules_engine_translate(f->eng, "Gateway", "ns", "gw");
  if (t->error)
    fail_msg("%s", t->error);
  assert_string_equal(t->objects[0].name,
                      "all=a/v1,b/v2;a=a/v1;labelled=a/v1;hosts=a/v1;"
                      "same=true");
  assert_int_equal(t->n_reads, 3);
  assert_string_equal(t->reads[0].kind, "VirtualService");
  assert_null(t->reads[0].namespace_);
  assert_null(t->reads[0].name);
  assert_string_equal(t->reads[0].field, "spec.gateways");
  assert_null(t->reads[0].label); /* the field, not the labels */
  assert_string_equal(t->reads[0].value, "ns/gw");
  assert_null(t->reads[1].namespace_);
  assert_string_equal(t->reads[1].field, "spec.hosts");
  assert_string_equal(t->reads[1].value, "h.example.com");
  assert_string_equal(t->reads[2].namespace_, "a");
  assert_string_equal(t->reads[2].field, "spec.gateways");
  assert_string_equal(t->reads[2].value, "ns/gw");
  amc_translation_free(t);
  /* the index follows changes */
  put(f->store, "VirtualService", "a", "v3",
      "{\"metadata\":{\"name\":\"v3\",\"namespace\":\"a\"},\"spec\":{"
      "\"gateways\":[\"ns/gw\"]}}");
  assert_int_equal(amc_store_delete(f->store, "VirtualService", "b", "v2"), 1);
  t = amc_rules_engine_translate(f->eng, "Gateway", "ns", "gw");
  if (t->error)
    fail_msg("%s", t->error);
  assert_string_equal(t->objects[0].name,
                      "all=a/v1,a/v3;a=a/v1,a/v3;labelled=a/v1;hosts=a/v1;"
                      "same=true");
  amc_translation_free(t);
  expect_error(f, "ns", "bad-empty",
               "rt.list: field \"spec..gateways\" must be dot-separated keys");
  expect_error(f, "ns", "bad-value", "bad argument #5");
}

/* With the real runtime library (runtime/lua): the engine's C fast path
 * for validation must accept exactly what validate.lua accepts; every
 * broken object is still refused with validate.lua's message. */
static void test_real_schema(void **state) {
  fx_t *f = *state;
  amc_rules_engine_free(f->eng);
  amc_rules_opts_t opts = {.runtime_lua_dir = AMC_SOURCE_DIR "/runtime/lua"};
  f->eng = amc_rules_engine_new(f->store, &f->settings, &opts);
  load_ok(f, FIX "rules_schema");
  static const char *const cases[][2] = {
      {"unknown_field", "invalid pool \"p\": bogus: unknown field of Pool"},
      {"read_only", "_last_modified: read-only field of Pool"},
      {"wrong_type", "default_server_port: expected integer, got string"},
      {"not_integer", "min_servers_up: expected integer, got 1.5"},
      {"enum", "lb_algorithm: \"LB_NOPE\" is not one of the allowed values"},
      {"range", "default_server_port: 70000 is out of range 1-65535"},
      {"required", "servers[0].ip: required field missing"},
      {"nested", "servers[1].ip.type: \"V5\" is not one of the allowed values"},
      {"array_expected", "servers: expected array, got object"},
      {"object_expected", "fail_action: expected object, got array"},
      {"max_items", "health_monitor_refs: 51 items, at most 50 allowed"},
      {"scalar_items", "health_monitor_refs[0]: expected string, got integer"},
      {"nullvalue", "description: expected string, got userdata"},
  };
  put_gateway(f->store, "ns", "valid", "{}");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    put_gateway(f->store, "ns", cases[i][0], "{}");
  for (int round = 0; round < 2; round++) {
    amc_translation_t *t =
        amc_rules_engine_translate(f->eng, "Gateway", "ns", "valid");
    if (t->error)
      fail_msg("%s", t->error);
    assert_int_equal(t->n_objects, 1);
    assert_string_equal(
        t->objects[0].json,
        "{\"default_server_port\":8080,\"fail_action\":{\"type\":"
        "\"FAIL_ACTION_CLOSE_CONN\"},\"health_monitor_refs\":[],"
        "\"lb_algorithm\":\"LB_ALGORITHM_ROUND_ROBIN\",\"min_servers_up\":2,"
        "\"name\":\"p\",\"servers\":[{\"ip\":{\"addr\":\"10.0.0.1\","
        "\"type\":\"V4\"},\"port\":80}]}");
    amc_translation_free(t);
    /* Refused also after the same-named valid object passed. */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
      expect_error(f, "ns", cases[i][0], cases[i][1]);
  }
}

/* The fixture's translation: its rules report one diagnostic per case,
 * carrying what the host function gave. */
static amc_translation_t *translate_fixture(fx_t *f, const char *dir) {
  load_ok(f, dir);
  put_gateway(f->store, "ns", "gw", "{}");
  amc_translation_t *t =
      amc_rules_engine_translate(f->eng, "Gateway", "ns", "gw");
  if (t->error)
    fail_msg("%s", t->error);
  return t;
}

/* fnv_hex(s): 64-bit FNV-1a of s in hex, as the fixtures' host.hash. */
static int l_fnv_hex(lua_State *L) {
  size_t len;
  const unsigned char *r = (const unsigned char *)luaL_checklstring(L, 1, &len);
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t j = 0; j < len; j++)
    h = (h ^ r[j]) * 0x100000001b3ULL;
  char hex[20];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  lua_pushstring(L, hex);
  return 1;
}

/* Checks that the host function gave, for every case of the fixture in
 * `dir` (its gateway.lua's `cases`), what runtime/lua/rt.lua's copy gives:
 * `expr` is the Lua expression of one case's result (a string; "<nil>"
 * for none) with `rt` and the case `c` in scope. Returns how many cases
 * had a result other than "<nil>". */
static int host_matches_rt_lua(fx_t *f, const char *dir, const char *expr) {
  amc_translation_t *t = translate_fixture(f, dir);
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_register(L, "fnv_hex", l_fnv_hex);
  char script[1024];
  snprintf(script, sizeof script,
           "package.path = '%s/runtime/lua/?.lua;' .. package.path\n"
           "local rt = require('rt')\n"
           "local cases = dofile('%s/gateway.lua').cases\n"
           "local res = {}\n"
           "for i, c in ipairs(cases) do res[i] = %s end\n"
           "return res",
           AMC_SOURCE_DIR, dir, expr);
  if (luaL_dostring(L, script) != LUA_OK)
    fail_msg("%s", lua_tostring(L, -1));
  size_t n = (size_t)lua_rawlen(L, -1);
  assert_true(n >= 20);
  assert_int_equal(t->n_diags, n);
  int results = 0;
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    const char *want = lua_tostring(L, -1);
    assert_non_null(want);
    results += strcmp(want, "<nil>") != 0;
    if (strcmp(t->diags[i].message, want) != 0)
      fail_msg("case %zu: host gives %s, rt.lua %s", i + 1, t->diags[i].message,
               want);
    lua_pop(L, 1);
  }
  lua_close(L);
  amc_translation_free(t);
  return results;
}

/* host.base64_decode gives what rt.lua's base64_decode gives (results
 * compared by FNV hash). */
static void test_base64_matches_rt_lua(void **state) {
  host_matches_rt_lua(*state, FIX "rules_base64",
                      "(function(r) return r and fnv_hex(r) or '<nil>' end)"
                      "(rt.base64_decode(c))");
}

/* host.ipv4 gives what rt.lua's ipv4 gives. */
static void test_ipv4_matches_rt_lua(void **state) {
  host_matches_rt_lua(*state, FIX "rules_ipv4",
                      "(function(r) return r == nil and '<nil>' or "
                      "tostring(r) end)(rt.ipv4(c))");
}

/* host.plain_name gives what rt.lua's plain_name (rt.name's usual case)
 * gives; both outcomes (joined, refused) are exercised. */
static void test_plain_name_matches_rt_lua(void **state) {
  int joined = host_matches_rt_lua(
      *state, FIX "rules_plain_name",
      "rt.plain_name('amc--c1--', table.unpack(c, 1, c.n)) or '<nil>'");
  assert_true(joined >= 5);
}

/* host.new_array(n): an empty JSON array whatever n is; filled with any
 * number of elements, it encodes as the array of those. */
static void test_new_array(void **state) {
  fx_t *f = *state;
  load_ok(f, FIX "rules_new_array");
  put_gateway(f->store, "ns", "gw", "{}");
  amc_translation_t *t =
      amc_rules_engine_translate(f->eng, "Gateway", "ns", "gw");
  if (t->error)
    fail_msg("%s", t->error);
  static const char *const want[][2] = {
      {"a", "{\"name\":\"a\",\"servers\":[{\"ip\":\"10.0.0.1\"},"
            "{\"ip\":\"10.0.0.2\"}]}"},
      {"b", "{\"name\":\"b\",\"servers\":[]}"},
      {"c", "{\"name\":\"c\",\"servers\":[{\"ip\":\"10.0.0.1\"}]}"},
      {"d", "{\"name\":\"d\",\"servers\":[{\"ip\":\"10.0.0.1\"},"
            "{\"ip\":\"10.0.0.2\"},{\"ip\":\"10.0.0.3\"}]}"},
      {"e", "{\"name\":\"e\",\"servers\":[{\"ip\":\"10.0.0.1\"}]}"},
      {"f", "{\"name\":\"f\",\"servers\":[{\"ip\":\"10.0.0.1\"},"
            "{\"ip\":\"10.0.0.2\"}]}"},
  };
  assert_int_equal(t->n_objects, sizeof want / sizeof want[0]);
  for (size_t i = 0; i < t->n_objects; i++) {
    assert_string_equal(t->objects[i].name, want[i][0]);
    assert_string_equal(t->objects[i].json, want[i][1]);
  }
  amc_translation_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_translate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_generation, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_generations_swap_and_bad_load_keeps_old, setup, teardown),
      cmocka_unit_test_setup_teardown(test_load_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_runtime_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sandbox, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits_leave_generation_usable,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_compact_returns_memory, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_output_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_real_schema, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_labels, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_field, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ipv4_matches_rt_lua, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_base64_matches_rt_lua, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_plain_name_matches_rt_lua, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_new_array, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dir_digest_matches_generation, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
