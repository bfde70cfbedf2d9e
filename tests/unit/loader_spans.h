/* loader_spans.h - for tests and fuzz targets: a text loaded as a whole
 * file and as the fs source loads it (cut into spans, the text around them
 * checked, each span loaded) must agree: the same objects and "file:line"
 * sources when the whole load succeeds, a failure either way when it
 * fails (whole_vs_spans aborts on a difference); spans_collect is the
 * loader callback both use. */
#ifndef AMC_TEST_LOADER_SPANS_H
#define AMC_TEST_LOADER_SPANS_H

#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "loader.h"
#include "util/buf.h"

/* Appends "source json\n" per object. */
static inline int spans_collect(lua_State *S, const char *source, void *data,
                                char *err, size_t errlen) {
  amc_buf_t *out = data;
  amc_buf_printf(out, "%s ", source);
  if (amc_json_encode(S, -1, out, err, errlen) < 0)
    return -1;
  amc_buf_putc(out, '\n');
  return 0;
}

static inline void whole_vs_spans(lua_State *L, const char *text, size_t size,
                                  int json) {
  int top = lua_gettop(L);
  amc_loader_opts_t opts = {.default_namespace = "default"};
  amc_buf_t whole = AMC_BUF_INIT, parts = AMC_BUF_INIT;
  char err[512];
  const char *name = json ? "f.json" : "f.yaml";
  int whole_rc = amc_loader_load_buffer(L, name, text, size, json, &opts,
                                        spans_collect, &whole, err, sizeof err);
  amc_loader_span_t *sp = NULL;
  long n = amc_loader_split(text, size, json, &sp);
  if (n >= 0) { /* -1: the fs source loads such a file whole */
    int rc =
        amc_loader_check_split(L, text, size, json, sp, n, err, sizeof err);
    for (long i = 0; i < n && rc == 0; i++)
      rc = amc_loader_load_span(L, name, &sp[i], json, &opts, spans_collect,
                                &parts, err, sizeof err);
    if (whole_rc == 0 &&
        (rc != 0 || whole.len != parts.len ||
         (whole.len && memcmp(whole.data, parts.data, whole.len) != 0)))
      abort(); /* spans load otherwise than the whole file */
    if (whole_rc != 0 && rc == 0)
      abort(); /* the whole file fails, its spans do not */
  }
  free(sp);
  amc_buf_free(&whole);
  amc_buf_free(&parts);
  if (lua_gettop(L) != top)
    abort();
}

#endif
