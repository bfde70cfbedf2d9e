/* fuzz_kube.c - libFuzzer target: a Kubernetes watch stream as the API
 * server (or anything pretending to be one) may send it.
 *
 * Byte 0 picks the chunk size (1..256) the stream is fed in; the rest is
 * the stream. Every line goes through amc_watch_event_parse and, when it
 * is an event, through amc_kube_object_meta and a walk of the object's
 * members and elements (kjson.h: no over-read, ASan watches). And kjson
 * agrees with the JSON codec: any line json.h decodes (and that is not
 * nested deeper than json.h allows), kjson takes as one value; every string
 * kjson unescapes equals json.h's for the same text; kjson_quote of it
 * decodes back to it. A difference aborts. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kube/kjson.h"
#include "kube/watchparse.h"

static lua_State *L;

static void must(int ok) {
  if (!ok)
    abort();
}

/* A string span: kjson's unescaping equals json.h's, and quoting it again
 * gives the same string back. */
static void check_string(amc_kjson_t v) {
  char *s = amc_kjson_strdup(v);
  char err[256];
  int top = lua_gettop(L);
  int decoded = amc_json_decode(L, v.p, v.n, err, sizeof err) == 0;
  if (s && decoded) {
    size_t n;
    const char *d = lua_tolstring(L, -1, &n);
    must(d && n == strlen(s) && memcmp(d, s, n) == 0);
    must(amc_kjson_streq(v, s));
    amc_buf_t q = AMC_BUF_INIT;
    amc_kjson_quote(&q, s);
    lua_settop(L, top);
    must(amc_json_decode(L, q.data, q.len, err, sizeof err) == 0);
    d = lua_tolstring(L, -1, &n);
    must(d && n == strlen(s) && memcmp(d, s, n) == 0);
    amc_buf_free(&q);
  }
  lua_settop(L, top);
  free(s);
}

/* Visits every member and element (bounded: a hostile stream may be big). */
static void walk(amc_kjson_t v, int depth, long *budget) {
  if (depth > AMC_KJSON_MAX_DEPTH || --*budget < 0)
    return;
  char t = amc_kjson_type(v);
  size_t pos = 0;
  amc_kjson_t k, e;
  long long i;
  if (t == 'o') {
    while (amc_kjson_object_next(v, &pos, &k, &e) == 1) {
      check_string(k);
      walk(e, depth + 1, budget);
    }
  } else if (t == 'a') {
    while (amc_kjson_array_next(v, &pos, &e) == 1)
      walk(e, depth + 1, budget);
  } else if (t == 's') {
    check_string(v);
  } else if (t == 'n') {
    amc_kjson_int(v, &i);
  }
}

/* How deep the brackets of `s` nest (strings skipped roughly: enough to
 * tell whether json.h's depth limit applies). */
static int nesting(const char *s, size_t n) {
  int d = 0, max = 0, in_str = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = 0;
    } else if (c == '"') {
      in_str = 1;
    } else if (c == '[' || c == '{') {
      if (++d > max)
        max = d;
    } else if (c == ']' || c == '}') {
      d--;
    }
  }
  return max;
}

static int on_line(const char *line, size_t n, void *data) {
  (void)data;
  char err[256];
  int top = lua_gettop(L);
  amc_kjson_t whole;
  if (amc_json_decode(L, line, n, err, sizeof err) == 0 &&
      nesting(line, n) <= AMC_JSON_MAX_DEPTH)
    must(amc_kjson_parse(line, n, &whole) == 0);
  lua_settop(L, top);
  amc_watch_event_t ev;
  if (amc_watch_event_parse(line, n, &ev, err, sizeof err) != 0)
    return 0;
  char *ns = NULL, *name = NULL, *rv = NULL;
  amc_kube_object_meta(ev.object, &ns, &name, &rv);
  free(ns);
  free(name);
  free(rv);
  amc_kjson_t md;
  amc_kjson_path(ev.object, "metadata.labels", &md);
  long budget = 20000;
  walk(ev.object, 0, &budget);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) {
    L = luaL_newstate();
    luaL_openlibs(L);
  }
  if (size < 1)
    return 0;
  size_t chunk = (size_t)data[0] + 1;
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  amc_watch_lines_t w;
  amc_watch_lines_init(&w);
  w.max_line = 1 << 20;
  for (size_t at = 0; at < n; at += chunk) {
    size_t k = n - at < chunk ? n - at : chunk;
    if (amc_watch_lines_feed(&w, p + at, k, on_line, NULL) != 0)
      break;
  }
  amc_watch_lines_free(&w);
  lua_settop(L, 0);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
