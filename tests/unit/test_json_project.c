/* test_json_project.c - json_project.h against a reference made of the
 * codec.
 *
 * The reference: decode the canonical text (json.h), keep the paths in a
 * Lua function written from the header's rules, encode canonically.
 * amc_json_project on the canonical text must give the same bytes, for
 * several projections (overlapping prefixes, paths to arrays and through
 * them, missing paths, single keys), on every object of the tree's JSON
 * files (and every object nested in them), on the YAML documents the
 * direct path (canon.h) takes, and on thousands of mutations of these.
 * For a mutated text, the projection must refuse (-1, `out` as it was)
 * exactly the texts the decoder refuses for their syntax (the decoder's
 * other refusals, UTF-8 and the like, are not the projection's to find,
 * json_project.h), and take the others to the reference's value. Every
 * input is given in a buffer of its exact size, so the ASan twin catches
 * a read past the end; every prefix of a set of texts is tried too. */
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
#include "json.h"
#include "json_project.h"
#include "loader.h"
#include "text_mutate.h"
#include "tree_files.h"
#include "util/buf.h"

static lua_State *L;

/* The projections compared (NULL-terminated lists). */
static const char *const vs_paths[] = {
    "metadata.name", "metadata.namespace", "metadata.creationTimestamp",
    "spec.hosts",    "spec.gateways",      "spec.exportTo",
    "spec.tls",      "spec.tcp",           NULL};
static const char *const overlap_paths[] = {"metadata.labels",
                                            "metadata",
                                            "spec.template.spec.containers",
                                            "spec.template",
                                            "spec.selector.matchLabels",
                                            "status.x",
                                            NULL};
static const char *const single_paths[] = {"kind",    "apiVersion", "data",
                                           "missing", "items",      NULL};
static const char *const deep_paths[] = {"spec.http.route",
                                         "spec.ports",
                                         "a.b.c.d.e.f.g.h",
                                         "spec.servers",
                                         "metadata.annotations",
                                         "metadata.labels.app",
                                         "spec.http",
                                         "spec.hosts.0",
                                         "metadata.name.x",
                                         "spec.template.metadata.labels",
                                         NULL};
static const char *const *const projections[] = {vs_paths, overlap_paths,
                                                 single_paths, deep_paths};
#define NPROJ (sizeof projections / sizeof *projections)
static amc_json_projection_t *proj[NPROJ];

/* The reference, from json_project.h's rules. */
static const char reference_lua[] =
    "local array_mt = ...\n"
    "local function split(paths)\n"
    "  local out = {}\n"
    "  for _, p in ipairs(paths) do\n"
    "    local segs = {}\n"
    "    for s in p:gmatch('[^.]+') do segs[#segs + 1] = s end\n"
    "    out[#out + 1] = segs\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local function is_object(v)\n"
    "  return type(v) == 'table' and getmetatable(v) ~= array_mt\n"
    "end\n"
    "local function keep(v, paths)\n"
    "  local whole, under = {}, {}\n"
    "  for _, p in ipairs(paths) do\n"
    "    if #p == 1 then whole[p[1]] = true\n"
    "    else\n"
    "      local g = under[p[1]] or {}\n"
    "      under[p[1]] = g\n"
    "      g[#g + 1] = table.move(p, 2, #p, 1, {})\n"
    "    end\n"
    "  end\n"
    "  local out, any = {}, false\n"
    "  for k, val in pairs(v) do\n"
    "    if whole[k] then out[k] = val; any = true\n"
    "    elseif under[k] and is_object(val) then\n"
    "      local sub, has = keep(val, under[k])\n"
    "      if has then out[k] = sub; any = true end\n"
    "    end\n"
    "  end\n"
    "  return out, any\n"
    "end\n"
    "return function(v, paths) return (keep(v, split(paths))) end\n";

static int setup(void **state) {
  (void)state;
  L = luaL_newstate();
  luaL_openlibs(L);
  /* the array metatable exists once something was decoded */
  char err[128];
  assert_int_equal(amc_json_decode(L, "[]", 2, err, sizeof err), 0);
  lua_pop(L, 1);
  assert_int_equal(luaL_loadstring(L, reference_lua), LUA_OK);
  luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
  assert_true(lua_istable(L, -1));
  assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
  lua_setglobal(L, "keep");
  for (size_t i = 0; i < NPROJ; i++) {
    size_t n = 0;
    while (projections[i][n])
      n++;
    proj[i] = amc_json_projection_new(projections[i], n, err, sizeof err);
    assert_non_null(proj[i]);
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  for (size_t i = 0; i < NPROJ; i++)
    amc_json_projection_free(proj[i]);
  lua_close(L);
  return 0;
}

/* amc_json_project on a copy of exactly `n` bytes (ASan sees a read past
 * it); checks that a refusal leaves `out` as it was. */
static int project(const amc_json_projection_t *p, const char *s, size_t n,
                   amc_buf_t *out) {
  char *copy = malloc(n ? n : 1);
  memcpy(copy, s, n);
  amc_buf_putn(out, "keep", 4); /* something before: appended after it */
  size_t at = out->len;
  int rc = amc_json_project(p, copy, n, out);
  free(copy);
  if (rc < 0) {
    assert_int_equal(out->len, at);
    assert_memory_equal(out->data, "keep", 4);
  }
  assert_int_equal(out->data[out->len], '\0');
  /* drop the marker */
  memmove(out->data, out->data + 4, out->len - 4 + 1);
  out->len -= 4;
  return rc;
}

/* Whether the value at `idx` is a table decoded from an object. */
static int is_object(int idx) {
  if (lua_type(L, idx) != LUA_TTABLE)
    return 0;
  if (!lua_getmetatable(L, idx))
    return 1;
  luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
  int array = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return !array;
}

/* Whether the decoder takes `s` as an object: 1, 0 (not an object, or a
 * syntax error), or -1 (refused for what the projection does not check). */
static int decodes(const char *s, size_t n) {
  char err[256];
  if (amc_json_decode(L, s, n, err, sizeof err) < 0) {
    static const char *const unchecked[] = {"UTF-8", "surrogate",
                                            "out of range", "duplicate key"};
    for (size_t i = 0; i < sizeof unchecked / sizeof *unchecked; i++)
      if (strstr(err, unchecked[i]))
        return -1;
    return 0;
  }
  int obj = is_object(-1);
  lua_pop(L, 1);
  return obj;
}

/* The canonical text of a JSON text (decode, encode): 0, or -1. */
static int canonical(const char *s, size_t n, amc_buf_t *out) {
  char err[256];
  amc_buf_reset(out);
  if (amc_json_decode(L, s, n, err, sizeof err) < 0)
    return -1;
  int rc = amc_json_encode(L, -1, out, err, sizeof err);
  lua_pop(L, 1);
  return rc;
}

/* The reference's projection of canonical text. */
static void reference(int pi, const char *s, size_t n, amc_buf_t *out) {
  char err[256];
  int top = lua_gettop(L);
  lua_getglobal(L, "keep");
  assert_int_equal(amc_json_decode_canonical(L, s, n, err, sizeof err), 0);
  lua_createtable(L, 0, 0);
  for (int i = 0; projections[pi][i]; i++) {
    lua_pushstring(L, projections[pi][i]);
    lua_rawseti(L, -2, i + 1);
  }
  assert_int_equal(lua_pcall(L, 2, 1, 0), LUA_OK);
  amc_buf_reset(out);
  assert_int_equal(amc_json_encode(L, -1, out, err, sizeof err), 0);
  lua_settop(L, top);
}

typedef struct {
  long objects, kept_something, compared;
  long kept_by[NPROJ]; /* objects of which each projection kept something */
  long mut_taken, mut_refused, mut_unchecked;
} tally_t;

/* Every projection of canonical object text `c`: the reference's bytes. */
static void compare_canonical(const char *c, size_t n, tally_t *t) {
  amc_buf_t got = AMC_BUF_INIT, want = AMC_BUF_INIT;
  t->objects++;
  for (size_t i = 0; i < NPROJ; i++) {
    amc_buf_reset(&got);
    assert_int_equal(project(proj[i], c, n, &got), 0);
    reference((int)i, c, n, &want);
    if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0) {
      fprintf(stderr, "projection %zu of\n%.*s\ngot  %s\nwant %s\n", i, (int)n,
              c, got.data, want.data);
      fail();
    }
    t->compared++;
    t->kept_something += got.len > 2;
    t->kept_by[i] += got.len > 2;
  }
  amc_buf_free(&got);
  amc_buf_free(&want);
}

/* Any JSON text: the projection takes exactly what the decoder takes (up
 * to what it does not check), to the same values as the reference's on
 * the canonical text. */
static void compare_any(const char *s, size_t n, tally_t *t) {
  int ok = decodes(s, n);
  amc_buf_t got = AMC_BUF_INIT, c = AMC_BUF_INIT, g = AMC_BUF_INIT,
            want = AMC_BUF_INIT;
  for (size_t i = 0; i < NPROJ; i++) {
    amc_buf_reset(&got);
    int rc = project(proj[i], s, n, &got);
    if (ok < 0) {
      t->mut_unchecked++;
      continue;
    }
    if (rc != (ok ? 0 : -1)) {
      fprintf(stderr, "projection %zu: %d, the decoder %s:\n%.*s\n", i, rc,
              ok ? "takes it" : "does not", (int)n, s);
      fail();
    }
    if (!ok) {
      t->mut_refused++;
      continue;
    }
    t->mut_taken++;
    assert_int_equal(canonical(s, n, &c), 0);
    reference((int)i, c.data, c.len, &want);
    /* the raw text's projection holds the same values */
    assert_int_equal(canonical(got.data, got.len, &g), 0);
    if (g.len != want.len || memcmp(g.data, want.data, g.len) != 0) {
      fprintf(stderr, "projection %zu of\n%.*s\ngot  %s\nwant %s\n", i, (int)n,
              s, got.data, want.data);
      fail();
    }
  }
  amc_buf_free(&got);
  amc_buf_free(&c);
  amc_buf_free(&g);
  amc_buf_free(&want);
}

/* ---- the corpus ----------------------------------------------------------
 */

typedef struct {
  amc_buf_t *texts; /* canonical objects */
  size_t n, cap;
} corpus_t;

static void corpus_add(corpus_t *c, const char *s, size_t n) {
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 256;
    c->texts = realloc(c->texts, c->cap * sizeof *c->texts);
    assert_non_null(c->texts);
  }
  c->texts[c->n] = (amc_buf_t)AMC_BUF_INIT;
  amc_buf_append(&c->texts[c->n++], s, n);
}

/* Every object in the value at the top of the stack (itself included),
 * canonical; pops it. */
static void collect_objects(corpus_t *c) {
  if (lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  int is_array = !is_object(-1);
  if (!is_array) {
    amc_buf_t b = AMC_BUF_INIT;
    char err[256];
    assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
    corpus_add(c, b.data, b.len);
    amc_buf_free(&b);
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -1) == LUA_TTABLE)
      collect_objects(c); /* pops the value */
    else
      lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int text_order(const void *a, const void *b) {
  const amc_buf_t *x = a, *y = b;
  if (x->len != y->len)
    return x->len < y->len ? -1 : 1;
  return memcmp(x->data, y->data, x->len);
}

/* Canonical texts: every object of the tree's JSON files (nested ones
 * too), and the store's text of every YAML document canon.h takes. */
static corpus_t corpus(size_t *top_level) {
  corpus_t c = {0};
  tree_files_t f = {0};
  tree_files_find(
      &f, (const char *const[]){"examples", "deploy", "tests", "bench", NULL},
      (const char *const[]){".json", NULL});
  assert_true(f.n >= 10);
  for (size_t i = 0; i < f.n; i++) {
    amc_buf_t text = AMC_BUF_INIT;
    char err[256];
    assert_int_equal(amc_buf_read_file(&text, f.paths[i]), 0);
    if (amc_json_decode(L, text.data ? text.data : "", text.len, err,
                        sizeof err) == 0)
      collect_objects(&c);
    amc_buf_free(&text);
  }
  tree_files_free(&f);
  /* The order of Lua's pairs() changes from run to run (string hashes
   * are seeded): sorted, the mutations are the same every run. */
  qsort(c.texts, c.n, sizeof *c.texts, text_order);
  size_t from_json = c.n;
  amc_canon_t *cn = amc_canon_new();
  tree_files_find(&f,
                  (const char *const[]){"examples", "deploy", "tests", NULL},
                  (const char *const[]){".yaml", ".yml", NULL});
  for (size_t i = 0; i < f.n; i++) {
    amc_buf_t text = AMC_BUF_INIT;
    assert_int_equal(amc_buf_read_file(&text, f.paths[i]), 0);
    amc_loader_span_t *spans = NULL;
    long n = amc_loader_split(text.data ? text.data : "", text.len, 0, &spans);
    for (long k = 0; k < n; k++) {
      amc_canon_obj_t o;
      if (amc_canon_yaml(cn, spans[k].text, spans[k].len, NULL, &o) == 0)
        corpus_add(&c, o.json, o.len);
    }
    free(spans);
    amc_buf_free(&text);
  }
  tree_files_free(&f);
  amc_canon_free(cn);
  fprintf(stderr, "corpus: %zu objects from JSON files, %zu YAML documents\n",
          from_json, c.n - from_json);
  *top_level = c.n;
  return c;
}

static void corpus_free(corpus_t *c) {
  for (size_t i = 0; i < c->n; i++)
    amc_buf_free(&c->texts[i]);
  free(c->texts);
}

static void test_corpus(void **state) {
  (void)state;
  size_t top;
  corpus_t c = corpus(&top);
  assert_true(c.n >= 300);
  tally_t t = {0};
  amc_buf_t pretty = AMC_BUF_INIT;
  for (size_t i = 0; i < c.n; i++) {
    compare_canonical(c.texts[i].data, c.texts[i].len, &t);
    /* the same object indented: the same values */
    amc_buf_reset(&pretty);
    assert_int_equal(
        amc_json_pretty_canonical(c.texts[i].data, c.texts[i].len, &pretty), 0);
    compare_any(pretty.data, pretty.len, &t);
  }
  fprintf(stderr, "%ld objects, %ld projections compared, %ld kept something\n",
          t.objects, t.compared, t.kept_something);
  /* the projections do keep things, not only `{}` (most objects are
   * nested ones, with none of the paths) */
  for (size_t i = 0; i < NPROJ; i++) {
    fprintf(stderr, "projection %zu kept something of %ld objects\n", i,
            t.kept_by[i]);
    assert_true(t.kept_by[i] >= 100);
  }
  amc_buf_free(&pretty);
  corpus_free(&c);
}

/* One random edit of JSON text (test_canon's alphabet and tokens). */
static size_t mutate_json(const char *s, size_t n, char *out) {
  static const char json_chars[] = " \"\\/{}[],:.-+eE0123456789ntrfbu\n\t\x01"
                                   "\x7f\xc3\xa9";
  char ch = json_chars[mutate_rand() % (sizeof json_chars - 1)];
  size_t at = n ? mutate_rand() % n : 0;
  int op = (int)(mutate_rand() % 4);
  if (op < 3)
    return mutate_edit(s, n, out, op, at, ch);
  static const char *const tokens[] = {
      "\\u00e9", "\\\"", "\\\\",     "-0",       "1.5e-7", "0.1",
      "null",    "[]",   "{}",       "\"spec\"", "true",   "\"hosts\"",
      "\"\"",    "[{}]", "\"\\\\\"", "01",       "1.",     "tru"};
  const char *tk = tokens[mutate_rand() % (sizeof tokens / sizeof *tokens)];
  size_t tn = strlen(tk) > 8 ? 8 : strlen(tk);
  memcpy(out, s, at);
  memcpy(out + at, tk, tn);
  memcpy(out + at + tn, s + at, n - at);
  return n + tn;
}

static void test_mutations(void **state) {
  (void)state;
  size_t top;
  corpus_t c = corpus(&top);
  tally_t t = {0};
  for (size_t i = 0; i < c.n; i++) {
    size_t len = c.texts[i].len;
    if (len > 6000 || (i % 3 && len < 200))
      continue; /* (the small nested objects: a third of them) */
    char *a = malloc(len + 64), *b = malloc(len + 64);
    for (int k = 0; k < 12; k++) {
      memcpy(a, c.texts[i].data, len);
      size_t l = len;
      int edits = 1 + (int)(mutate_rand() % 3);
      for (int e = 0; e < edits; e++) {
        l = mutate_json(a, l, b);
        memcpy(a, b, l);
      }
      compare_any(a, l, &t);
      /* what the decoder takes, canonical, against the reference */
      amc_buf_t cb = AMC_BUF_INIT;
      if (decodes(a, l) == 1 && canonical(a, l, &cb) == 0)
        compare_canonical(cb.data, cb.len, &t);
      amc_buf_free(&cb);
    }
    free(a);
    free(b);
  }
  fprintf(stderr,
          "mutations: %ld projections taken, %ld refused, %ld left "
          "(UTF-8, duplicates...)\n",
          t.mut_taken, t.mut_refused, t.mut_unchecked);
  assert_true(t.mut_taken > 2000 && t.mut_refused > 2000);
  corpus_free(&c);
}

/* Every prefix of a text: never a read past it, and -1 unless the prefix
 * is itself an object the decoder takes. */
static void all_prefixes(const char *s, size_t n) {
  tally_t t = {0};
  for (size_t k = 0; k <= n; k++)
    compare_any(s, k, &t);
}

static void test_prefixes(void **state) {
  (void)state;
  size_t top;
  corpus_t c = corpus(&top);
  amc_buf_t pretty = AMC_BUF_INIT;
  for (size_t i = 0; i < c.n; i += 7) {
    if (c.texts[i].len > 3000)
      continue;
    all_prefixes(c.texts[i].data, c.texts[i].len);
    amc_buf_reset(&pretty);
    assert_int_equal(
        amc_json_pretty_canonical(c.texts[i].data, c.texts[i].len, &pretty), 0);
    all_prefixes(pretty.data, pretty.len);
  }
  static const char *const texts[] = {
      "{\"a\\\\\":\"x\\\\\\\"y\",\"spec\":{\"hosts\":[\"\\u00e9\\\\\",1.5e-7,"
      "-0,true,false,null,{\"k\":[[]]}],\"http\":[{\"a\":\"\\\"\"}]}}",
      " { \"metadata\" : { \"name\" : \"n\" , \"x\" : [ 1 , 2 ] } } \n",
  };
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
    all_prefixes(texts[i], strlen(texts[i]));
  amc_buf_free(&pretty);
  corpus_free(&c);
}

/* ---- corner cases ----------------------------------------------------------
 */

typedef struct {
  const char *in, *want; /* want NULL: refused */
} case_t;

static void run_cases(const char *const *paths, const case_t *cases, size_t n) {
  size_t np = 0;
  while (paths[np])
    np++;
  char err[128];
  amc_json_projection_t *p =
      amc_json_projection_new(paths, np, err, sizeof err);
  assert_non_null(p);
  amc_buf_t out = AMC_BUF_INIT;
  for (size_t i = 0; i < n; i++) {
    amc_buf_reset(&out);
    int rc = project(p, cases[i].in, strlen(cases[i].in), &out);
    if (cases[i].want ? rc != 0 || strcmp(out.data, cases[i].want) != 0
                      : rc != -1) {
      fprintf(stderr, "case %zu: %s\n  got %d %s\n  want %s\n", i, cases[i].in,
              rc, rc == 0 ? out.data : "",
              cases[i].want ? cases[i].want : "-1");
      fail();
    }
  }
  amc_buf_free(&out);
  amc_json_projection_free(p);
}

static void test_cases(void **state) {
  (void)state;
  static const char *const paths[] = {"spec.hosts", "spec.tls", "metadata.name",
                                      "e",          "a.b.c",    NULL};
  static const case_t cases[] = {
      {"{}", "{}"},
      {" {\n} ", "{}"},
      /* nothing kept */
      {"{\"x\":1,\"spec\":{\"http\":[]}}", "{}"},
      {"{\"metadata\":{\"namespace\":\"n\"}}", "{}"},
      /* through a non-object: nothing */
      {"{\"spec\":[{\"hosts\":1}],\"metadata\":\"name\"}", "{}"},
      {"{\"a\":{\"b\":[{\"c\":1}]},\"spec\":null}", "{}"},
      {"{\"a\":{\"b\":\"c\"}}", "{}"},
      /* kept: whole values, the input's order */
      {"{\"metadata\":{\"a\":1,\"name\":\"n\"},\"spec\":{\"hosts\":[\"a\","
       "\"b\"],\"http\":[{\"x\":1}],\"tls\":[{\"match\":[{\"sniHosts\":[\"h\""
       "]}]}]}}",
       "{\"metadata\":{\"name\":\"n\"},\"spec\":{\"hosts\":[\"a\",\"b\"],"
       "\"tls\":[{\"match\":[{\"sniHosts\":[\"h\"]}]}]}}"},
      {"{\"spec\":{\"tls\":1,\"hosts\":2}}",
       "{\"spec\":{\"tls\":1,\"hosts\":2}}"},
      /* empty objects and arrays as whole values */
      {"{\"e\":{},\"spec\":{\"hosts\":[]}}",
       "{\"e\":{},\"spec\":{\"hosts\":[]}}"},
      {"{\"a\":{\"b\":{\"c\":{}}}}", "{\"a\":{\"b\":{\"c\":{}}}}"},
      {"{\"a\":{\"b\":{},\"x\":{}}}", "{}"},
      /* escapes: in values copied as they are; escaped keys never match */
      {"{\"e\":\"q\\\"b\\\\\\\\\\\"\\u00e9\\ud83d\\ude00\\n\\/\"}",
       "{\"e\":\"q\\\"b\\\\\\\\\\\"\\u00e9\\ud83d\\ude00\\n\\/\"}"},
      {"{\"x\":\"\\\\\",\"e\":1}", "{\"e\":1}"},
      {"{\"x\":\"\\\\\\\"\",\"e\":1}", "{\"e\":1}"},
      {"{\"x\":[\"]\",\"}\",\"\\\"]\"],\"e\":1}", "{\"e\":1}"},
      {"{\"\\u0065\":1,\"e\\\\\":2}", "{}"},
      {"{\"x\\\"\":{\"e\":1},\"e\":[{\"a\":[{\"b\":\"}\"}]},[[]]]}",
       "{\"e\":[{\"a\":[{\"b\":\"}\"}]},[[]]]}"},
      /* numbers and literals skipped and kept */
      {"{\"x\":-0.5e+10,\"y\":[true,false,null,0,1E5],\"e\":-12.25E-3}",
       "{\"e\":-12.25E-3}"},
      /* whitespace: dropped between tokens, kept inside kept values */
      {" {\n \"spec\" : { \"hosts\" : [ 1 , 2 ] ,\t\"x\" : 3 } ,\r\n"
       " \"e\" : null } \n",
       "{\"spec\":{\"hosts\":[ 1 , 2 ]},\"e\":null}"},
      /* duplicates: each on its own (not checked) */
      {"{\"e\":1,\"e\":2}", "{\"e\":1,\"e\":2}"},
      /* refused: not an object, or malformed */
      {"", NULL},
      {"   ", NULL},
      {"[]", NULL},
      {"\"e\"", NULL},
      {"1", NULL},
      {"{", NULL},
      {"{}}", NULL},
      {"{} x", NULL},
      {"{}{}", NULL},
      {"{\"e\"}", NULL},
      {"{\"e\":}", NULL},
      {"{\"e\":1,}", NULL},
      {"{,\"e\":1}", NULL},
      {"{\"e\":1 \"x\":2}", NULL},
      {"{e:1}", NULL},
      {"{\"x\":[1,]}", NULL},
      {"{\"x\":[1}", NULL},
      {"{\"x\":{\"a\":1]}", NULL},
      {"{\"x\":[1]]}", NULL},
      {"{\"x\":\"abc}", NULL},
      {"{\"x\":\"a\\\"}", NULL},
      {"{\"x\":\"a\\x\"}", NULL},
      {"{\"x\":\"a\\ug000\"}", NULL},
      {"{\"x\":\"a\\u0g00\"}", NULL},
      {"{\"x\":\"a\\u00g0\"}", NULL},
      {"{\"x\":\"a\\u000g\"}", NULL},
      {"{\"x\":\"a\\u{0e9}\"}", NULL},
      {"{\"x\":\"a\\u00\"}", NULL},
      {"{\"x\":\"a\nb\"}", NULL},
      {"{\"x\":01}", NULL},
      {"{\"x\":1.}", NULL},
      {"{\"x\":.5}", NULL},
      {"{\"x\":-}", NULL},
      {"{\"x\":1e}", NULL},
      {"{\"x\":+1}", NULL},
      {"{\"x\":tru}", NULL},
      {"{\"x\":nul}", NULL},
      {"{\"x\":truex}", NULL},
      {"{\"e\":[1,2}", NULL},
      {"{\"e\":\"x}", NULL},
      {"{\"spec\":{\"hosts\":[1]}", NULL},
      {"{\"spec\":{\"hosts\":[1]},}", NULL},
      {"{\"a\":{\"b\":{\"c\":1}}]", NULL},
  };
  run_cases(paths, cases, sizeof cases / sizeof *cases);

  /* overlapping prefixes: the shorter wins, whatever the order */
  static const char *const over1[] = {"metadata.name", "metadata", NULL};
  static const char *const over2[] = {"metadata", "metadata.name.x", "metadata",
                                      NULL};
  static const case_t over_cases[] = {
      {"{\"kind\":\"K\",\"metadata\":{\"a\":1,\"name\":\"n\"}}",
       "{\"metadata\":{\"a\":1,\"name\":\"n\"}}"},
      {"{\"metadata\":[]}", "{\"metadata\":[]}"},
  };
  run_cases(over1, over_cases, 2);
  run_cases(over2, over_cases, 2);
}

/* Nesting: as deep as the decoder takes, not deeper. */
static void test_depth(void **state) {
  (void)state;
  tally_t t = {0};
  for (int depth = 1; depth < 140; depth++) {
    amc_buf_t b = AMC_BUF_INIT;
    for (int i = 0; i < depth; i++)
      amc_buf_puts(&b, i % 2 ? "[" : "{\"a\":");
    amc_buf_puts(&b, "1");
    for (int i = depth - 1; i >= 0; i--)
      amc_buf_puts(&b, i % 2 ? "]" : "}");
    compare_any(b.data, b.len, &t);
    amc_buf_free(&b);
  }
  /* down the kept path too */
  static const char *const path[] = {"a.a.a.a.a.a.a.a", NULL};
  size_t n = 1;
  char err[128];
  amc_json_projection_t *p = amc_json_projection_new(path, n, err, sizeof err);
  for (int depth = 120; depth < 135; depth++) {
    amc_buf_t b = AMC_BUF_INIT, out = AMC_BUF_INIT;
    for (int i = 0; i < depth; i++)
      amc_buf_puts(&b, "{\"a\":");
    amc_buf_puts(&b, "1");
    for (int i = 0; i < depth; i++)
      amc_buf_puts(&b, "}");
    int rc = project(p, b.data, b.len, &out);
    assert_int_equal(rc, depth <= AMC_JSON_MAX_DEPTH ? 0 : -1);
    assert_int_equal(decodes(b.data, b.len), depth <= AMC_JSON_MAX_DEPTH);
    amc_buf_free(&b);
    amc_buf_free(&out);
  }
  amc_json_projection_free(p);
}

static void test_bad_paths(void **state) {
  (void)state;
  char err[128];
  struct {
    const char *const paths[3];
    size_t n;
    const char *want;
  } bad[] = {
      {{""}, 1, "path 1 \"\": empty key"},
      {{"a..b"}, 1, "path 1 \"a..b\": empty key"},
      {{"ok", ".a"}, 2, "path 2 \".a\": empty key"},
      {{"ok", "ok", "a."}, 3, "path 3 \"a.\": empty key"},
      {{"a.b.c.d.e.f.g.h.i"},
       1,
       "path 1 \"a.b.c.d.e.f.g.h.i\": more than 8 "
       "keys"},
      {{"a"}, 0, "0 paths (1 to 32 allowed)"},
      {{NULL}, 1, "path 1: missing"},
      {{"a.b\\c"},
       1,
       "path 1 \"a.b\\c\": a key with '\"', '\\' or a control character"},
      {{"ok", "x\""},
       2,
       "path 2 \"x\"\": a key with '\"', '\\' or a control character"},
      {{"a\tb"},
       1,
       "path 1 \"a\tb\": a key with '\"', '\\' or a control character"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err[0] = 0;
    assert_null(
        amc_json_projection_new(bad[i].paths, bad[i].n, err, sizeof err));
    assert_string_equal(err, bad[i].want);
  }
  /* the limits themselves are fine */
  const char *many[AMC_JSON_PROJECT_MAX_PATHS + 1];
  for (size_t i = 0; i <= AMC_JSON_PROJECT_MAX_PATHS; i++)
    many[i] = "a.b.c.d.e.f.g.h";
  amc_json_projection_t *p = amc_json_projection_new(
      many, AMC_JSON_PROJECT_MAX_PATHS, err, sizeof err);
  assert_non_null(p);
  amc_json_projection_free(p);
  assert_null(amc_json_projection_new(many, AMC_JSON_PROJECT_MAX_PATHS + 1, err,
                                      sizeof err));
  assert_string_equal(err, "33 paths (1 to 32 allowed)");
  /* 32 distinct paths of 8 keys: the trie's largest */
  char text[AMC_JSON_PROJECT_MAX_PATHS][32];
  for (int i = 0; i < AMC_JSON_PROJECT_MAX_PATHS; i++) {
    snprintf(text[i], sizeof text[i], "k%d.b.c.d.e.f.g.h", i);
    many[i] = text[i];
  }
  p = amc_json_projection_new(many, AMC_JSON_PROJECT_MAX_PATHS, err,
                              sizeof err);
  assert_non_null(p);
  amc_buf_t out = AMC_BUF_INIT;
  const char *in = "{\"k31\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":"
                   "7,\"i\":8}}}}}}},\"k1\":1}";
  assert_int_equal(amc_json_project(p, in, strlen(in), &out), 0);
  assert_string_equal(out.data, "{\"k31\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{"
                                "\"g\":{\"h\":7}}}}}}}}");
  amc_buf_free(&out);
  amc_json_projection_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cases, setup, teardown),
      cmocka_unit_test_setup_teardown(test_depth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corpus, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mutations, setup, teardown),
      cmocka_unit_test_setup_teardown(test_prefixes, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
