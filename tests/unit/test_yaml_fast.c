/* test_yaml_fast.c - the YAML fast path builds what libyaml's path builds.
 *
 * Differential: every document of the project's YAML files, thousands of
 * mutations of them, and hand-written corner cases go through
 * amc_yaml_fast_document and through the loader's libyaml path. Wherever
 * the fast path takes a text, libyaml must take it too and give the same
 * value: same types (integer or float), same metatables, same keys visited
 * in the same order by next(). Through the loader (amc_loader_load_span)
 * the objects, their "file:line" sources and the loader's errors must be
 * the same with the fast path on and off. */
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

#include "json.h"
#include "loader.h"
#include "loader_spans.h"
#include "lua_same.h"
#include "text_mutate.h"
#include "tree_files.h"
#include "util/buf.h"
#include "yaml_fast.h"

static lua_State *L;
static int array_mt;

static int setup(void **state) {
  (void)state;
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_newmetatable(L, AMC_JSON_ARRAY_MT);
  array_mt = lua_gettop(L);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  lua_close(L);
  amc_loader_fast_yaml = 1;
  return 0;
}

typedef struct {
  long taken, declined, mismatches;
} tally_t;

/* The fast path on `text`: if it takes it, libyaml must too, alike. */
static void compare_value(const char *name, const char *text, size_t len,
                          tally_t *t) {
  int top = lua_gettop(L);
  size_t line = 99, col = 99;
  if (!amc_yaml_fast_document(L, text, len, array_mt, &line, &col)) {
    assert_int_equal(lua_gettop(L), top); /* nothing left behind */
    t->declined++;
    return;
  }
  assert_int_equal(lua_gettop(L), top + 1);
  t->taken++;
  char err[512];
  if (amc_loader_parse_yaml_value(L, name, text, len, err, sizeof err) != 0) {
    fprintf(stderr, "%s: fast path took what libyaml refuses (%s):\n%.*s\n",
            name, err, (int)len, text);
    t->mismatches++;
  } else if (!lua_same(L, -2, -1)) {
    fprintf(stderr, "%s: fast path and libyaml differ:\n%.*s\n", name, (int)len,
            text);
    t->mismatches++;
  }
  lua_settop(L, top);
}

/* What the loader makes of a span (objects, sources, or its error). */
static void load_with(int fast, const char *name, const amc_loader_span_t *span,
                      amc_buf_t *out) {
  amc_loader_fast_yaml = fast;
  amc_loader_opts_t opts = {.default_namespace = "default"};
  char err[512] = "";
  amc_buf_reset(out);
  int top = lua_gettop(L);
  if (amc_loader_load_span(L, name, span, 0, &opts, spans_collect, out, err,
                           sizeof err) != 0)
    amc_buf_printf(out, "error: %s\n", err);
  assert_int_equal(lua_gettop(L), top);
  amc_loader_fast_yaml = 1;
}

static void compare_loader(const char *name, const amc_loader_span_t *span,
                           tally_t *t) {
  amc_buf_t a = AMC_BUF_INIT, b = AMC_BUF_INIT;
  load_with(1, name, span, &a);
  load_with(0, name, span, &b);
  if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0)) {
    fprintf(stderr, "%s:%zu: the loader differs with the fast path:\n%s---\n%s",
            name, span->line + 1, a.data ? a.data : "", b.data ? b.data : "");
    t->mismatches++;
  }
  amc_buf_free(&a);
  amc_buf_free(&b);
}

/* ---- the corpus: the project's YAML files -------------------------------- */

static void corpus(tree_files_t *p) {
  tree_files_find(p, (const char *const[]){"examples", "deploy", "tests", NULL},
                  (const char *const[]){".yaml", ".yml", NULL});
  assert_true(p->n >= 20); /* the tree's manifests, fixtures and cases */
}

/* Each document of each file: value and loader alike. */
static void test_project_yaml_files(void **state) {
  (void)state;
  tree_files_t p = {0};
  corpus(&p);
  tally_t t = {0};
  long bookinfo_docs = 0, bookinfo_taken = 0;
  for (size_t i = 0; i < p.n; i++) {
    amc_buf_t text = AMC_BUF_INIT;
    assert_int_equal(amc_buf_read_file(&text, p.paths[i]), 0);
    amc_loader_span_t *spans = NULL;
    long n = amc_loader_split(text.data ? text.data : "", text.len, 0, &spans);
    for (long k = 0; k < n; k++) {
      long before = t.taken;
      compare_value(p.paths[i], spans[k].text, spans[k].len, &t);
      compare_loader(p.paths[i], &spans[k], &t);
      if (strstr(p.paths[i], "/examples/bookinfo/")) {
        bookinfo_docs++;
        bookinfo_taken += t.taken - before;
      }
    }
    free(spans);
    amc_buf_free(&text);
  }
  fprintf(stderr, "project YAML: %ld documents taken, %ld left to libyaml\n",
          t.taken, t.declined);
  assert_int_equal(t.mismatches, 0);
  /* The examples are manifests as people write them: all in the subset. */
  assert_true(bookinfo_docs >= 10);
  assert_int_equal(bookinfo_taken, bookinfo_docs);
  tree_files_free(&p);
}

/* ---- mutations ------------------------------------------------------------
 */

static void test_mutations_match_libyaml(void **state) {
  (void)state;
  tree_files_t p = {0};
  corpus(&p);
  tally_t t = {0};
  for (size_t i = 0; i < p.n; i++) {
    amc_buf_t text = AMC_BUF_INIT;
    assert_int_equal(amc_buf_read_file(&text, p.paths[i]), 0);
    amc_loader_span_t *spans = NULL;
    long n = amc_loader_split(text.data ? text.data : "", text.len, 0, &spans);
    for (long k = 0; k < n && k < 6; k++) {
      size_t len = spans[k].len < 4000 ? spans[k].len : 4000;
      char *a = malloc(len + 64), *b = malloc(len + 64);
      for (int m = 0; m < 60; m++) {
        /* one to three edits */
        memcpy(a, spans[k].text, len);
        size_t l = len;
        int edits = 1 + (int)(mutate_rand() % 3);
        for (int e = 0; e < edits; e++) {
          l = mutate_yaml(a, l, b);
          memcpy(a, b, l);
        }
        compare_value(p.paths[i], a, l, &t);
        amc_loader_span_t sp = spans[k];
        sp.text = a;
        sp.len = l;
        compare_loader(p.paths[i], &sp, &t);
      }
      free(a);
      free(b);
    }
    free(spans);
    amc_buf_free(&text);
  }
  fprintf(stderr,
          "mutations: %ld taken by the fast path, %ld left to libyaml\n",
          t.taken, t.declined);
  assert_int_equal(t.mismatches, 0);
  assert_true(t.taken > 1000); /* the comparison is not only of declines */
  assert_true(t.declined > 1000);
  tree_files_free(&p);
}

/* ---- corner cases -----------------------------------------------------------
 */

static void test_corner_cases(void **state) {
  (void)state;
  /* taken: the subset, with the values libyaml gives */
  static const char *const taken[] = {
      "a: 1\n",
      "a: 1\nb: -2\nc: 0x1F\nd: 0o17\ne: 1.5\nf: 1e3\ng: .inf\nh: -.Inf\n"
      "i: .nan\nj: ~\nk: null\nl: True\nm: FALSE\nn: yes\no: 007\np: +3\n",
      "k:\n",
      "k: # comment\n",
      "---\na: b\n",
      "# c\n---\n# c2\na: b # c3\n\n",
      "a:\n- 1\n- 2\nb: 3\n",
      "a:\n  - 1\n  -\n    x: y\n  - - n1\n    - n2\n",
      "- a: 1\n  b: 2\n- c\n-\n- [x, 'y', \"z\"]\n",
      "a: {b: c, d: [1, 2, {e: f}], g: {}}\nh: []\n",
      "a: 'it''s'\nb: \"q\\\"uote\\\\ \\n\\t\"\nc: it's\nd: a:b\ne: a#b\n",
      "url: http://example.com:80/x?y=z#frag\n",
      "\"quoted key\": 1\n'single': 2\n",
      "  indented: 1\n  top: 2\n",
      "a b c: d e f   \n",
      "list:\n- name: x\n  ports:\n  - 80\n  - 443\n- name: y\n",
      "a: -foo\nb: .5\nc: 1.\nd: -0\ne: 9223372036854775808\n",
      "a: [a b, c]\n",
      "x: <<\n",
  };
  /* declined: outside the subset, or not YAML at all */
  static const char *const declined[] = {
      "a: &x 1\nb: *x\n",
      "a: !!str 1\n",
      "a: |\n  text\n",
      "a: >\n  text\n",
      "a: b\n  c\n",
      "a: 'b\n  c'\n",
      "a: {b: c,\n  d: e}\n",
      "? a\n: b\n",
      "%YAML 1.2\n---\na: b\n",
      "a: b\n---\nc: d\n",
      "a: b\n...\n",
      "a:\tb\n",
      "a: b\r\n",
      "a: caf\xc3\xa9\n",
      "a: 1\na: 2\n",
      "<<: {a: b}\n",
      "a: {b: c, <<: d}\n",
      "a: b: c\n",
      "a: [b, c,]\n",
      "a: {b}\n",
      "a: {b: c:d}\n",
      "a: \"\\x41\"\n",
      "a : b\n",
      "a: 'b'c\n",
      "- a\nb: c\n",
      "a:\n  b\n",
      "{a: b}\n",
      "",
      "# only a comment\n",
      "--- a: b\n",
  };
  tally_t t = {0};
  for (size_t i = 0; i < sizeof taken / sizeof *taken; i++) {
    long before = t.taken;
    compare_value("taken", taken[i], strlen(taken[i]), &t);
    if (t.taken == before)
      fail_msg("the fast path declined:\n%s", taken[i]);
    amc_loader_span_t sp = {taken[i], strlen(taken[i]), 0, 0};
    compare_loader("taken", &sp, &t);
  }
  for (size_t i = 0; i < sizeof declined / sizeof *declined; i++) {
    int top = lua_gettop(L);
    size_t line, col;
    if (amc_yaml_fast_document(L, declined[i], strlen(declined[i]), array_mt,
                               &line, &col))
      fail_msg("the fast path took:\n%s", declined[i]);
    assert_int_equal(lua_gettop(L), top);
  }
  /* keys longer than libyaml's 1024 characters, in a flow, quoted, plain */
  static const char *const long_keys[] = {"m: {%s: 1}\n", "'%s': 1\n",
                                          "%s: 1\n"};
  char key[1101], doc[1200];
  memset(key, 'k', 1100);
  key[1100] = '\0';
  for (size_t i = 0; i < sizeof long_keys / sizeof *long_keys; i++) {
    snprintf(doc, sizeof doc, long_keys[i], key);
    size_t line, col;
    int top = lua_gettop(L);
    if (amc_yaml_fast_document(L, doc, strlen(doc), array_mt, &line, &col))
      fail_msg("the fast path took a key of 1100 characters (%zu)", i);
    assert_int_equal(lua_gettop(L), top);
  }
  assert_int_equal(t.mismatches, 0);
}

/* The document's position is libyaml's: "file:line" sources, and the
 * column in the loader's errors. */
static void test_positions(void **state) {
  (void)state;
  static const char *const docs[] = {
      "# c\n\n---\n# c\n  apiVersion: v1\n  kind: X\n  metadata: {}\n",
      "apiVersion: v1\nkind: X\nmetadata:\n  namespace: n\n",
      "---\n- a\n",
      "\n\n  kind: X\n  apiVersion: v1\n  metadata: {name: n}\n",
  };
  tally_t t = {0};
  for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
    amc_loader_span_t sp = {docs[i], strlen(docs[i]), 7, 0};
    long before = t.taken;
    compare_value("pos", docs[i], strlen(docs[i]), &t);
    assert_int_equal(t.taken, before + 1);
    compare_loader("pos", &sp, &t);
  }
  assert_int_equal(t.mismatches, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_corner_cases, setup, teardown),
      cmocka_unit_test_setup_teardown(test_positions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_project_yaml_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mutations_match_libyaml, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
