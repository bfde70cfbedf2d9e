/* canon_same.h - for tests and fuzz targets: canon.h's direct path on a
 * span must store what the loader's path stores (amc_loader_load_span,
 * its objects through amc_canon_lua as the fs source's on_loaded does).
 * canon_same() runs both and compares "source kind ns name json" lines;
 * canon_wrap_* make an object of any text (as its spec), so that any JSON
 * value or YAML block goes through the writer. */
#ifndef AMC_TEST_CANON_SAME_H
#define AMC_TEST_CANON_SAME_H

#include <lua.h>
#include <stdio.h>
#include <string.h>

#include "canon.h"
#include "loader.h"
#include "util/buf.h"

typedef struct {
  amc_canon_t *direct, *ref; /* amc_canon_new() each */
  amc_buf_t d, r;            /* the last comparison's lines */
} canon_same_t;

static inline void canon_put_obj(amc_buf_t *out, const char *source,
                                 const amc_canon_obj_t *o) {
  amc_buf_printf(out, "%s %s %s %s ", source, o->kind, o->ns, o->name);
  amc_buf_append(out, o->json, o->len);
  amc_buf_putc(out, '\n');
}

/* The loader's callback (data: canon_same_t), as the fs source's. */
static inline int canon_ref_collect(lua_State *S, const char *source,
                                    void *data, char *err, size_t errlen) {
  canon_same_t *cs = data;
  amc_canon_obj_t o;
  char oerr[256];
  if (amc_canon_lua(cs->ref, S, lua_gettop(S), &o, oerr, sizeof oerr) != 0) {
    snprintf(err, errlen, "%s: %s", source, oerr);
    return -1;
  }
  canon_put_obj(&cs->r, source, &o);
  return 0;
}

/* What the loader stores for a span (YAML with the fast path on or off),
 * into cs->r: its objects, or "error: ...". */
static inline void canon_ref(lua_State *L, canon_same_t *cs, const char *name,
                             const amc_loader_span_t *sp, int json, int fast) {
  amc_loader_opts_t opts = {.default_namespace = "default"};
  char err[512] = "";
  amc_buf_reset(&cs->r);
  amc_loader_fast_yaml = fast;
  if (amc_loader_load_span(L, name, sp, json, &opts, canon_ref_collect, cs, err,
                           sizeof err) != 0)
    amc_buf_printf(&cs->r, "error: %s\n", err);
  amc_loader_fast_yaml = 1;
}

/* 0: the direct path declines the span; 1: it takes it and the loader
 * stores the same (with the fast YAML path and with libyaml); -1: they
 * differ (cs->d and cs->r hold what each stored). */
static inline int canon_same(lua_State *L, canon_same_t *cs, const char *name,
                             const amc_loader_span_t *sp, int json) {
  amc_canon_obj_t o;
  amc_buf_reset(&cs->d);
  int rc = json ? amc_canon_json(cs->direct, sp->text, sp->len, "default", &o)
                : amc_canon_yaml(cs->direct, sp->text, sp->len, "default", &o);
  if (rc != AMC_CANON_OK)
    return rc == AMC_CANON_DECLINED ? 0 : -1;
  /* the source the fs source gives it (loader.h) */
  char source[600];
  if (!json)
    snprintf(source, sizeof source, "%s:%zu", name, sp->line + o.line + 1);
  else if (sp->index == 0)
    snprintf(source, sizeof source, "%s:1", name);
  else
    snprintf(source, sizeof source, "%s:1[%ld]", name, sp->index);
  if (strlen(o.json) != o.len)
    return -1; /* NUL-terminated, and no NUL inside */
  canon_put_obj(&cs->d, source, &o);
  for (int fast = 1; fast >= (json ? 1 : 0); fast--) {
    int top = lua_gettop(L);
    canon_ref(L, cs, name, sp, json, fast);
    if (lua_gettop(L) != top || cs->d.len != cs->r.len ||
        memcmp(cs->d.data, cs->r.data, cs->d.len) != 0)
      return -1;
  }
  return 1;
}

/* {"apiVersion": "v1", "kind": "Wrapped", "metadata": {"name": "w"},
 * "spec": <the text>} */
static inline void canon_wrap_json(amc_buf_t *b, const char *v, size_t n) {
  amc_buf_reset(b);
  amc_buf_puts(b, "{\"apiVersion\": \"v1\", \"kind\": \"Wrapped\", "
                  "\"metadata\": {\"name\": \"w\"}, \"spec\": ");
  amc_buf_append(b, v, n);
  amc_buf_puts(b, "}");
}

/* The same in YAML: the text's lines indented under "spec:". */
static inline void canon_wrap_yaml(amc_buf_t *b, const char *v, size_t n) {
  amc_buf_reset(b);
  amc_buf_puts(b, "apiVersion: v1\nkind: Wrapped\nmetadata:\n  name: w\n"
                  "spec:\n");
  const char *p = v, *end = v + n;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl + 1 : end;
    amc_buf_puts(b, "  ");
    amc_buf_append(b, p, (size_t)(e - p));
    p = e;
  }
}

#endif
