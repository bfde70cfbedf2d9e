/* fuzz_yaml.c - libFuzzer target: the YAML fast path against libyaml.
 *
 * Whatever text amc_yaml_fast_document takes, libyaml (the loader's
 * amc_loader_parse_yaml_value) must take too and give the same value
 * (lua_same: types, metatables, key order), and loading the text as a span
 * of a file must give the same objects, sources and errors with the fast
 * path on and off. Whatever it declines, it must leave the Lua stack as it
 * found it. And the text as a whole YAML file loads as its spans do
 * (loader_spans.h). canon.h's direct path must store what the loader
 * stores wherever it takes a text (canon_same.h): the text as a span, each
 * span the text is cut into (as the fs source loads a file), and the text
 * as an object's spec. A difference aborts (the fuzzer saves the input). */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "canon_same.h"
#include "json.h"
#include "loader.h"
#include "loader_spans.h"
#include "lua_same.h"
#include "util/buf.h"
#include "yaml_fast.h"

static lua_State *L;
static canon_same_t cs;

/* The direct path against the loader: the text as a span, its spans, the
 * text as an object's spec. */
static void direct_vs_loader(const char *text, size_t size) {
  amc_loader_span_t sp = {text, size, 3, 2};
  if (canon_same(L, &cs, "f.yaml", &sp, 0) < 0)
    abort();
  amc_loader_span_t *spans = NULL;
  long n = amc_loader_split(text, size, 0, &spans);
  for (long i = 0; i < n; i++) {
    if (canon_same(L, &cs, "f.yaml", &spans[i], 0) < 0)
      abort();
  }
  free(spans);
  amc_buf_t w = AMC_BUF_INIT;
  canon_wrap_yaml(&w, text, size);
  amc_loader_span_t ws = {w.data, w.len, 0, 1};
  if (canon_same(L, &cs, "w.yaml", &ws, 0) < 0)
    abort();
  amc_buf_free(&w);
}

static void load(int fast, const amc_loader_span_t *sp, amc_buf_t *out) {
  amc_loader_fast_yaml = fast;
  amc_loader_opts_t opts = {.default_namespace = "default"};
  char err[512];
  if (amc_loader_load_span(L, "f.yaml", sp, 0, &opts, spans_collect, out, err,
                           sizeof err) != 0)
    amc_buf_printf(out, "error: %s\n", err);
  amc_loader_fast_yaml = 1;
  if (lua_gettop(L) != 1)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) {
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_newmetatable(L, AMC_JSON_ARRAY_MT); /* index 1 */
    cs.direct = amc_canon_new();
    cs.ref = amc_canon_new();
  }
  const char *text = (const char *)data;
  whole_vs_spans(L, text, size, 0);
  direct_vs_loader(text, size);
  if (lua_gettop(L) != 1)
    abort();
  size_t line, col;
  if (!amc_yaml_fast_document(L, text, size, 1, &line, &col)) {
    if (lua_gettop(L) != 1)
      abort(); /* a decline leaves nothing behind */
    return 0;
  }
  char err[512];
  if (amc_loader_parse_yaml_value(L, "f.yaml", text, size, err, sizeof err) !=
          0 ||
      !lua_same(L, -2, -1))
    abort(); /* taken, but libyaml refuses it or reads it otherwise */
  lua_settop(L, 1);
  amc_loader_span_t sp = {text, size, 3, 2};
  amc_buf_t a = AMC_BUF_INIT, b = AMC_BUF_INIT;
  load(1, &sp, &a);
  load(0, &sp, &b);
  if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
    abort(); /* objects, sources or errors differ */
  amc_buf_free(&a);
  amc_buf_free(&b);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
