/* test_canon.c - the direct path stores what the loader's path stores.
 *
 * Differential: every YAML document and JSON item of the project's files,
 * the JSON the loader makes of the YAML documents (compact and indented),
 * every JSON value of the tree wrapped as an object's spec, thousands of
 * mutations of all of these, and hand-written corner cases go through
 * canon.h's direct path (amc_canon_yaml, amc_canon_json) and through the
 * loader (amc_loader_load_span with amc_canon_lua, as the fs source's
 * on_loaded does; YAML with the fast path on and off). Wherever the direct
 * path takes a text, the loader must give exactly one object with the same
 * kind, namespace, name, "file:line" source and JSON bytes. Where it
 * declines, the fs source hands the text to the loader, so the results
 * (objects or errors) are the loader's by construction; the counts show
 * the direct path takes what matters (all of bookinfo, most of the tree).
 * The corner cases also check the declines the loader would not refuse
 * (NaN in a stripped status is taken, kind: List is not). */
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

#include "canon.h"
#include "canon_same.h"
#include "json.h"
#include "loader.h"
#include "text_mutate.h"
#include "tree_files.h"
#include "util/buf.h"

static lua_State *L;
static canon_same_t cs;
static amc_canon_t *direct;

static int setup(void **state) {
  (void)state;
  L = luaL_newstate();
  luaL_openlibs(L);
  cs.direct = direct = amc_canon_new();
  cs.ref = amc_canon_new();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  lua_close(L);
  amc_canon_free(cs.direct);
  amc_canon_free(cs.ref);
  amc_buf_free(&cs.d);
  amc_buf_free(&cs.r);
  amc_loader_fast_yaml = 1;
  return 0;
}

typedef struct {
  long taken, declined, mismatches;
} tally_t;

/* Both paths on a span (canon_same.h); returns whether the direct path
 * took it. */
static int compare_span(const char *name, const amc_loader_span_t *sp, int json,
                        tally_t *t) {
  int top = lua_gettop(L);
  int rc = canon_same(L, &cs, name, sp, json);
  assert_int_equal(lua_gettop(L), top);
  if (rc == 0) {
    t->declined++;
    return 0;
  }
  t->taken++;
  if (rc < 0) {
    fprintf(stderr,
            "%s:%zu: the direct path differs from the loader:\n%.*s\n"
            "--- direct:\n%s--- loader:\n%s",
            name, sp->line + 1, (int)sp->len, sp->text,
            cs.d.data ? cs.d.data : "", cs.r.data ? cs.r.data : "");
    t->mismatches++;
  }
  return 1;
}

/* The JSON the loader stores for a YAML span (NULL, 0 on an error); valid
 * until the next comparison. */
static const char *loader_json(const char *name, const amc_loader_span_t *sp,
                               size_t *len) {
  canon_ref(L, &cs, name, sp, 0, 1);
  const char *j = cs.r.data ? strchr(cs.r.data, '{') : NULL;
  if (!j || strncmp(cs.r.data, "error", 5) == 0 ||
      memchr(j, '\n', cs.r.len - (size_t)(j - cs.r.data)) !=
          cs.r.data + cs.r.len - 1)
    return NULL; /* an error, or several objects */
  *len = cs.r.len - 1 - (size_t)(j - cs.r.data);
  return j;
}

static int compare_text(const char *text, size_t len, int json, tally_t *t) {
  amc_loader_span_t sp = {text, len, 0, json ? 1 : 1};
  return compare_span(json ? "t.json" : "t.yaml", &sp, json, t);
}

/* ---- the corpus: the project's files -------------------------------------
 */

/* The tree's manifests, fixtures and cases (tree_files.h). */
static tree_files_t corpus(void) {
  tree_files_t p = {0};
  tree_files_find(
      &p, (const char *const[]){"examples", "deploy", "tests", "bench", NULL},
      (const char *const[]){".yaml", ".yml", ".json", NULL});
  assert_true(p.n >= 40);
  return p;
}

/* Calls fn on every span of every file of the corpus. */
typedef void (*span_fn)(const char *path, const amc_loader_span_t *sp, int json,
                        void *ud);

static void each_span(span_fn fn, void *ud) {
  tree_files_t p = corpus();
  for (size_t i = 0; i < p.n; i++) {
    amc_buf_t text = AMC_BUF_INIT;
    assert_int_equal(amc_buf_read_file(&text, p.paths[i]), 0);
    int json = tree_has_suffix(p.paths[i], ".json");
    amc_loader_span_t *spans = NULL;
    long n =
        amc_loader_split(text.data ? text.data : "", text.len, json, &spans);
    for (long k = 0; k < n; k++)
      fn(p.paths[i], &spans[k], json, ud);
    free(spans);
    amc_buf_free(&text);
  }
  tree_files_free(&p);
}

typedef struct {
  tally_t yaml, json, wrapped, from_yaml;
  long bookinfo_docs, bookinfo_taken;
} files_t;

static void file_span(const char *path, const amc_loader_span_t *sp, int json,
                      void *ud) {
  files_t *f = ud;
  int taken = compare_span(path, sp, json, json ? &f->json : &f->yaml);
  if (strstr(path, "/examples/bookinfo/")) {
    f->bookinfo_docs++;
    f->bookinfo_taken += taken;
  }
  amc_buf_t b = AMC_BUF_INIT;
  if (json) {
    canon_wrap_json(&b, sp->text, sp->len);
    compare_text(b.data, b.len, 1, &f->wrapped);
  } else if (taken) {
    /* the JSON the loader made of it, compact and indented, is JSON the
     * direct path takes to the same bytes */
    size_t jn;
    const char *j0 = loader_json(path, sp, &jn);
    assert_non_null(j0);
    amc_buf_t j = AMC_BUF_INIT;
    amc_buf_append(&j, j0, jn);
    compare_text(j.data, j.len, 1, &f->from_yaml);
    assert_int_equal(amc_json_pretty_canonical(j.data, j.len, &b), 0);
    compare_text(b.data, b.len, 1, &f->from_yaml);
    amc_buf_free(&j);
  }
  amc_buf_free(&b);
}

static void test_project_files(void **state) {
  (void)state;
  files_t f = {0};
  each_span(file_span, &f);
  fprintf(stderr,
          "project YAML documents: %ld taken, %ld declined\n"
          "project JSON items: %ld taken, %ld declined\n"
          "JSON values wrapped as a spec: %ld taken, %ld declined\n"
          "the loader's JSON of taken YAML: %ld taken, %ld declined\n",
          f.yaml.taken, f.yaml.declined, f.json.taken, f.json.declined,
          f.wrapped.taken, f.wrapped.declined, f.from_yaml.taken,
          f.from_yaml.declined);
  assert_int_equal(f.yaml.mismatches + f.json.mismatches +
                       f.wrapped.mismatches + f.from_yaml.mismatches,
                   0);
  /* The examples are manifests as people write them: all taken. */
  assert_true(f.bookinfo_docs >= 10);
  assert_int_equal(f.bookinfo_taken, f.bookinfo_docs);
  assert_true(f.yaml.taken >= 300);
  assert_true(f.wrapped.taken >= 25);
  assert_int_equal(f.from_yaml.declined, 0);
}

/* ---- mutations -----------------------------------------------------------
 */

/* One random edit of `s` (len n) into `out` (room for n + 8). */
static size_t mutate(const char *s, size_t n, char *out, int json) {
  if (!json)
    return mutate_yaml(s, n, out);
  static const char json_chars[] = " \"\\/{}[],:.-+eE0123456789ntrfbu\n\t\x01"
                                   "\x7f\xc3\xa9\xed\xa0\x80";
  char ch = json_chars[mutate_rand() % (sizeof json_chars - 1)];
  size_t at = n ? mutate_rand() % n : 0;
  int op = (int)(mutate_rand() % 4);
  if (op < 3)
    return mutate_edit(s, n, out, op, at, ch);
  /* a token from elsewhere in JSON texts */
  static const char *const tokens[] = {"\\u00e9",
                                       "\\ud83d\\ude00",
                                       "\\u0000",
                                       "1e400",
                                       "-0",
                                       "1.5e-7",
                                       "12345678901234567890",
                                       "0.1",
                                       "\"status\"",
                                       "\"metadata\"",
                                       "null",
                                       "[]",
                                       "{}",
                                       "\"List\"",
                                       "\"Pod\"",
                                       "\"managedFields\"",
                                       "\"\""};
  const char *tk = tokens[mutate_rand() % (sizeof tokens / sizeof *tokens)];
  size_t tn = strlen(tk) > 8 ? 8 : strlen(tk);
  memcpy(out, s, at);
  memcpy(out + at, tk, tn);
  memcpy(out + at + tn, s + at, n - at);
  return n + tn;
}

typedef struct {
  tally_t yaml, json;
  long spans;
} mut_t;

static void mutate_span(const char *path, const amc_loader_span_t *sp, int json,
                        void *ud) {
  mut_t *m = ud;
  (void)path;
  if (sp->len > 6000)
    return;
  /* JSON: the item as is, and the loader's JSON of YAML documents */
  amc_buf_t base = AMC_BUF_INIT;
  if (json) {
    amc_buf_append(&base, sp->text, sp->len);
  } else {
    if (m->spans++ % 2) { /* half the YAML documents as JSON text */
      size_t jn;
      const char *j = loader_json(path, sp, &jn);
      if (j) {
        amc_buf_append(&base, j, jn);
        json = 1;
      }
    }
    if (!json)
      amc_buf_append(&base, sp->text, sp->len);
  }
  size_t len = base.len;
  char *a = malloc(len + 400), *b = malloc(len + 400);
  for (int k = 0; k < 40; k++) {
    memcpy(a, base.data, len);
    size_t l = len;
    int edits = 1 + (int)(mutate_rand() % 3);
    for (int e = 0; e < edits; e++) {
      l = mutate(a, l, b, json);
      memcpy(a, b, l);
    }
    amc_loader_span_t s = {a, l, sp->line, json ? 3 : sp->index};
    compare_span(json ? "m.json" : "m.yaml", &s, json,
                 json ? &m->json : &m->yaml);
  }
  free(a);
  free(b);
  amc_buf_free(&base);
}

static void test_mutations(void **state) {
  (void)state;
  mut_t m = {0};
  each_span(mutate_span, &m);
  fprintf(stderr,
          "YAML mutations: %ld taken, %ld declined\n"
          "JSON mutations: %ld taken, %ld declined\n",
          m.yaml.taken, m.yaml.declined, m.json.taken, m.json.declined);
  assert_int_equal(m.yaml.mismatches + m.json.mismatches, 0);
  /* the comparison is not only of declines */
  assert_true(m.yaml.taken > 2000 && m.yaml.declined > 1000);
  assert_true(m.json.taken > 1500 && m.json.declined > 1000);
}

/* ---- corner cases ----------------------------------------------------------
 */

#define OBJ_Y "apiVersion: v1\nkind: X\nmetadata:\n  name: n\n"
#define OBJ_J                                                                  \
  "{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"name\":\"n\"}"
#define OUT_J                                                                  \
  "{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"name\":\"n\","        \
  "\"namespace\":\"default\"}"

typedef struct {
  const char *text;
  const char *json; /* what is stored; NULL: declined */
} case_t;

static void run_cases(const case_t *cases, size_t n, int json) {
  tally_t t = {0};
  for (size_t i = 0; i < n; i++) {
    const case_t *c = &cases[i];
    int taken = compare_text(c->text, strlen(c->text), json, &t);
    if (taken != (c->json != NULL))
      fail_msg("%s %s (%s):\n%s", json ? "JSON" : "YAML",
               taken ? "taken" : "declined", amc_canon_why(direct), c->text);
    if (!taken)
      continue;
    amc_canon_obj_t o;
    if (json)
      assert_int_equal(
          amc_canon_json(direct, c->text, strlen(c->text), "default", &o), 0);
    else
      assert_int_equal(
          amc_canon_yaml(direct, c->text, strlen(c->text), "default", &o), 0);
    if (strcmp(o.json, c->json) != 0)
      fail_msg("%s\n stored %s\n wanted %s", c->text, o.json, c->json);
  }
  assert_int_equal(t.mismatches, 0);
}

static void test_json_cases(void **state) {
  (void)state;
  static const case_t cases[] = {
      /* numbers: integers, integral floats, huge integers, shortest floats */
      {OBJ_J ",\"s\":[0,-0,-0.0,1.0,1e2,1E+2,-1e0,1.5,0.1,1e-7,2.5e-310]}",
       OUT_J ",\"s\":[0,0,0,1,100,100,-1,1.5,0.1,1e-07,"
             "2.50000000000002e-310]}"},
      {OBJ_J ",\"s\":[123456789012345678,1234567890123456789,"
             "9223372036854775807,9223372036854775808,-9223372036854775808,"
             "-9223372036854775809,99999999999999999999,1e19]}",
       OUT_J ",\"s\":[123456789012345678,1234567890123456789,"
             "9223372036854775807,9.223372036854776e+18,"
             "-9223372036854775808,-9223372036854775808,1e+20,1e+19]}"},
      {OBJ_J ",\"s\":[1.7976931348623157e308,5e-324,0.30000000000000004,"
             "3.14159,100000000000000000000000.5]}",
       OUT_J ",\"s\":[1.7976931348623157e+308,4.94065645841247e-324,"
             "0.30000000000000004,3.14159,1.0000000000000001e+23]}"},
      {OBJ_J ",\"s\":1e400}", NULL},
      {OBJ_J ",\"s\":01}", NULL},
      {OBJ_J ",\"s\":1.}", NULL},
      {OBJ_J ",\"s\":-}", NULL},
      {OBJ_J ",\"s\":+1}", NULL},
      /* strings: escapes out and in, UTF-8 */
      {OBJ_J
       ",\"s\":[\"\\u00e9\\/\\\"\\\\\",\"\\ud83d\\ude00\",\"\\u0000\\u001f"
       "\\b\\f\\n\\r\\t\\u007f\",\"caf\xc3\xa9\",\"\x7f\"]}",
       OUT_J ",\"s\":[\"\xc3\xa9/\\\"\\\\\",\"\xf0\x9f\x98\x80\",\"\\u0000"
             "\\u001f\\b\\f\\n\\r\\t\x7f\",\"caf\xc3\xa9\",\"\x7f\"]}"},
      {OBJ_J ",\"s\":\"\\ud83d\"}", NULL},
      {OBJ_J ",\"s\":\"\\ude00\"}", NULL},
      {OBJ_J ",\"s\":\"\\x41\"}", NULL},
      {OBJ_J ",\"s\":\"a\tb\"}", NULL},
      {OBJ_J ",\"s\":\"\xc3\"}", NULL},
      {OBJ_J ",\"s\":\"\xed\xa0\x80\"}", NULL},
      {OBJ_J ",\"s\":\"\xe0\x80\xaf\"}", NULL},
      {OBJ_J ",\"s\":\"\xf4\x90\x80\x80\"}", NULL},
      /* keys sorted bytewise, escaped keys, more than the insertion sort */
      {OBJ_J ",\"s\":{\"b\":1,\"a\":2,\"B\":3,\"aa\":4,\"a\\u0000\":5,"
             "\"\\u00e9\":6,\"\":7}}",
       OUT_J ",\"s\":{\"\":7,\"B\":3,\"a\":2,\"a\\u0000\":5,\"aa\":4,\"b\":1,"
             "\"\xc3\xa9\":6}}"},
      {OBJ_J
       ",\"s\":{\"p\":1,\"o\":1,\"n\":1,\"m\":1,\"l\":1,\"k\":1,\"j\":1,"
       "\"i\":1,\"h\":1,\"g\":1,\"f\":1,\"e\":1,\"d\":1,\"c\":1,\"b\":1}}",
       OUT_J
       ",\"s\":{\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,"
       "\"i\":1,\"j\":1,\"k\":1,\"l\":1,\"m\":1,\"n\":1,\"o\":1,\"p\":1}}"},
      /* empty containers, nulls, booleans, whitespace */
      {" \n\t" OBJ_J ",\"s\" : { } , \"t\":[ ],\"u\":[{},[]],\"v\":null,"
       "\"w\":[true,false,null]}\r\n ",
       OUT_J ",\"s\":{},\"t\":[],\"u\":[{},[]],\"v\":null,"
             "\"w\":[true,false,null]}"},
      /* stripped fields; a Pod keeps its status */
      {"{\"apiVersion\":\"v1\",\"kind\":\"X\",\"status\":{\"a\":1},"
       "\"metadata\":{\"name\":\"n\",\"namespace\":\"ns\",\"managedFields\":[1]"
       ","
       "\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
       "\"{}\"}}}",
       "{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"annotations\":{},"
       "\"name\":\"n\",\"namespace\":\"ns\"}}"},
      {"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"status\":{\"podIP\":\"1\"},"
       "\"metadata\":{\"name\":\"p\",\"namespace\":\"\"},\"spec\":{"
       "\"status\":1,\"managedFields\":2}}",
       "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\","
       "\"namespace\":\"default\"},\"spec\":{\"managedFields\":2,\"status\":1},"
       "\"status\":{\"podIP\":\"1\"}}"},
      /* only the top's status, metadata's fields, annotations' key */
      {OBJ_J ",\"spec\":{\"metadata\":{\"managedFields\":1,\"annotations\":{"
             "\"kubectl.kubernetes.io/last-applied-configuration\":1}}}}",
       OUT_J ",\"spec\":{\"metadata\":{\"annotations\":{"
             "\"kubectl.kubernetes.io/last-applied-configuration\":1},"
             "\"managedFields\":1}}}"},
      /* duplicate keys: anywhere, stripped parts too */
      {OBJ_J ",\"s\":1,\"s\":2}", NULL},
      {OBJ_J ",\"s\":{\"a\":{\"b\":1,\"b\":1}}}", NULL},
      {OBJ_J ",\"status\":{\"a\":1,\"a\":1}}", NULL},
      {"{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"name\":\"n\","
       "\"managedFields\":[{\"m\":1,\"m\":2}]}}",
       NULL},
      /* namespaces: default, kept, cluster-scoped, not a string */
      {"{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":"
       "\"shop\"}}",
       "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":"
       "\"shop\"}}"},
      {"{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":"
       "\"shop\",\"namespace\":\"\"}}",
       "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":"
       "\"shop\",\"namespace\":\"\"}}"},
      {"{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"name\":\"n\","
       "\"namespace\":\"a\"}}",
       "{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"name\":\"n\","
       "\"namespace\":\"a\"}}"},
      {"{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"name\":\"n\","
       "\"namespace\":null}}",
       NULL},
      /* what the loader refuses or takes apart */
      {"{\"kind\":\"X\",\"metadata\":{\"name\":\"n\"}}", NULL},
      {"{\"apiVersion\":\"\",\"kind\":\"X\",\"metadata\":{\"name\":\"n\"}}",
       NULL},
      {"{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":[]}", NULL},
      {"{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"name\":\"\"}}",
       NULL},
      {"{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"name\":1}}",
       NULL},
      {"{\"apiVersion\":\"v1\",\"kind\":\"List\",\"metadata\":{\"name\":\"n\"},"
       "\"items\":[]}",
       NULL},
      {"{\"apiVersion\":\"v1\",\"kind\":\"X\\u0000\",\"metadata\":{\"name\":"
       "\"n\"}}",
       NULL},
      {"[" OBJ_J "}]", NULL},
      {OBJ_J "}}", NULL},
      {OBJ_J "", NULL},
      {"", NULL},
  };
  run_cases(cases, sizeof cases / sizeof *cases, 1);
}

static void test_yaml_cases(void **state) {
  (void)state;
  static const case_t cases[] = {
      /* the core schema's scalars */
      {OBJ_Y
       "s: [0x1F, 0o17, 1e3, .5, 1., -0, +3, 007, 1_000, 9223372036854775808,"
       " 1.5, -.5e-3, 0x, 0xFFFFFFFFFFFFFFFFF]\n",
       OUT_J ",\"s\":[31,15,1000,0.5,1,0,3,7,\"1_000\",9.223372036854776e+18,"
             "1.5,-0.0005,\"0x\",\"0xFFFFFFFFFFFFFFFFF\"]}"},
      {OBJ_Y "s: [~, null, Null, NULL, true, True, FALSE, yes, 'true', \"1\"]\n"
             "t:\nu: # c\n",
       OUT_J ",\"s\":[null,null,null,null,true,true,false,\"yes\",\"true\","
             "\"1\"],\"t\":null,\"u\":null}"},
      /* the encoder refuses NaN and infinity, unless stripped */
      {OBJ_Y "s: .nan\n", NULL},
      {OBJ_Y "s: [-.inf]\n", NULL},
      {OBJ_Y "status: {a: .nan, b: .inf}\n", OUT_J "}"},
      /* escapes */
      {OBJ_Y "s: \"a\\\"b\\\\c\\nd\\te\\rf\"\nt: 'it''s'\n\"q k\": 1\n",
       "{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"name\":\"n\","
       "\"namespace\":\"default\"},\"q k\":1,\"s\":\"a\\\"b\\\\c\\nd\\te\\rf\","
       "\"t\":\"it's\"}"},
      /* empty collections */
      {OBJ_Y "s: {}\nt: []\nu: [{}, []]\n",
       OUT_J ",\"s\":{},\"t\":[],\"u\":[{},[]]}"},
      /* stripped fields; a Pod keeps its status */
      {"apiVersion: v1\nkind: X\nmetadata:\n  name: n\n  managedFields:\n"
       "  - {manager: kubectl}\n  annotations:\n"
       "    kubectl.kubernetes.io/last-applied-configuration: '{}'\n"
       "    keep: 'yes'\nstatus:\n  x: 1\n",
       "{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{\"annotations\":{"
       "\"keep\":\"yes\"},\"name\":\"n\",\"namespace\":\"default\"}}"},
      {"apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\n"
       "status: {podIP: 10.0.0.1}\n",
       "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\","
       "\"namespace\":\"x\"},\"status\":{\"podIP\":\"10.0.0.1\"}}"},
      /* duplicates anywhere */
      {OBJ_Y "s: 1\ns: 2\n", NULL},
      {OBJ_Y "status: {a: 1, a: 2}\n", NULL},
      {OBJ_Y "  name: m\n", NULL},
      /* what the loader refuses or takes apart */
      {"apiVersion: v1\nkind: List\nmetadata: {name: n}\nitems: []\n", NULL},
      {"apiVersion: 1\nkind: X\nmetadata: {name: n}\n", NULL},
      {"apiVersion: v1\nkind: X\nmetadata: {name: n, namespace: 3}\n", NULL},
      {"apiVersion: v1\nkind: X\nmetadata: {name: n, namespace: }\n", NULL},
      {"apiVersion: v1\nkind: X\nmetadata:\n", NULL},
      {"- a\n", NULL},
      /* outside the subset (libyaml's) */
      {OBJ_Y "s: &a 1\n", NULL},
      {OBJ_Y "s: |\n  x\n", NULL},
      {OBJ_Y "---\nx: 1\n", NULL},
      /* where the document starts */
      {"# c\n---\n# d\n" OBJ_Y, OUT_J "}"},
  };
  run_cases(cases, sizeof cases / sizeof *cases, 0);
  /* the line of the "file:line" source */
  amc_canon_obj_t o;
  const char *doc = "# c\n\n---\n# d\n" OBJ_Y;
  assert_int_equal(amc_canon_yaml(direct, doc, strlen(doc), NULL, &o), 0);
  assert_int_equal(o.line, 4);
  assert_string_equal(o.ns, "");
  assert_string_equal(o.name, "n");
  assert_string_equal(o.kind, "X");
}

/* Nesting: up to AMC_CANON_MAX_DEPTH taken, deeper declined (the loader
 * takes those up to AMC_JSON_MAX_DEPTH). */
static void test_depth(void **state) {
  (void)state;
  tally_t t = {0};
  for (int depth = 1; depth < 140; depth += depth < 70 ? 1 : 20) {
    amc_buf_t b = AMC_BUF_INIT, y = AMC_BUF_INIT;
    amc_buf_puts(&b, OBJ_J ",\"s\":");
    amc_buf_puts(&y, OBJ_Y "s: ");
    for (int i = 0; i < depth; i++) {
      amc_buf_puts(&b, i % 2 ? "{\"k\":" : "[");
      amc_buf_puts(&y, i % 2 ? "{k: " : "[");
    }
    amc_buf_puts(&b, "1");
    amc_buf_puts(&y, "1");
    for (int i = depth - 1; i >= 0; i--) {
      amc_buf_puts(&b, i % 2 ? "}" : "]");
      amc_buf_puts(&y, i % 2 ? "}" : "]");
    }
    amc_buf_puts(&b, "}");
    amc_buf_puts(&y, "\n");
    /* the object, then `depth` levels in its spec */
    int want = depth + 1 <= AMC_CANON_MAX_DEPTH;
    assert_int_equal(compare_text(b.data, b.len, 1, &t), want);
    assert_int_equal(compare_text(y.data, y.len, 0, &t), want);
    amc_buf_free(&b);
    amc_buf_free(&y);
  }
  assert_int_equal(t.mismatches, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_json_cases, setup, teardown),
      cmocka_unit_test_setup_teardown(test_yaml_cases, setup, teardown),
      cmocka_unit_test_setup_teardown(test_depth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_project_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mutations, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
