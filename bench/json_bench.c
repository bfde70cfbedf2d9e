/* json_bench.c - runtime/json.c on real objects: canonical decode and
 * encode, the way a route change uses them.
 *
 *   json_bench ITERS SET...
 *     SET: NAME=k8s:PATH[:KIND]  Kubernetes objects the loader reads from
 *                                PATH (a file or directory), only KIND's
 *          NAME=avi:FILE[:TYPE]  AVI objects of `amc translate` output
 *                                (every element of every array, or TYPE's)
 *
 * Each set's objects are encoded once to canonical text, then, ITERS
 * rounds over the set each:
 *   decode      amc_json_decode_canonical   (memo results, store reads)
 *   push        amc_json_push_canonical in one protected call (the rules'
 *               reads of stored objects)
 *   encode      amc_json_encode             (the fs source, the memo)
 *   encode_tape amc_json_encode_tape with a fresh memo per round (the
 *               output objects of a translation, collect_objects)
 * Prints nanoseconds per object for each. Each round runs in a function of its
 * own (bench_<op>), so that under callgrind the instructions per object are
 * the function's inclusive cost / (ITERS x objects): bench/json_bench.sh
 * does that. Every re-encoding is checked against the first one (same
 * bytes), so the bench doubles as a smoke test of a change. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "loader.h"
#include "util/buf.h"

typedef struct {
  char **text;
  size_t *len;
  size_t n, cap, bytes;
  const char *kind; /* k8s: only this kind (NULL: all) */
} set_t;

static void die(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "json_bench: ");
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, "\n");
  exit(1);
}

/* Encodes the table on top (left there) into the set. */
static void add_top(lua_State *L, set_t *s) {
  amc_buf_t b = AMC_BUF_INIT;
  char err[256];
  if (amc_json_encode(L, -1, &b, err, sizeof err) < 0)
    die("encode: %s%s", err, "");
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    s->text = realloc(s->text, s->cap * sizeof *s->text);
    s->len = realloc(s->len, s->cap * sizeof *s->len);
    if (!s->text || !s->len)
      die("out of memory%s%s", "", "");
  }
  s->len[s->n] = b.len;
  s->bytes += b.len;
  s->text[s->n++] = amc_buf_steal(&b);
}

static int on_obj(lua_State *L, const char *source, void *data, char *err,
                  size_t errlen) {
  (void)source, (void)err, (void)errlen;
  set_t *s = data;
  if (s->kind) {
    lua_getfield(L, -1, "kind");
    int want = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), s->kind) == 0;
    lua_pop(L, 1);
    if (!want)
      return 0;
  }
  add_top(L, s);
  return 0;
}

static void load_avi(lua_State *L, const char *file, const char *type,
                     set_t *s) {
  amc_buf_t b = AMC_BUF_INIT;
  char err[256];
  if (amc_buf_read_file(&b, file) < 0)
    die("cannot read %s%s", file, "");
  if (amc_json_decode(L, b.data, b.len, err, sizeof err) < 0)
    die("%s: %s", file, err);
  amc_buf_free(&b);
  int t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -1) == LUA_TTABLE && lua_type(L, -2) == LUA_TSTRING &&
        (!type || strcmp(lua_tostring(L, -2), type) == 0)) {
      lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_type(L, -1) == LUA_TTABLE)
          add_top(L, s);
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* The rules VM's allocator in miniature (rules_engine.c's gen_alloc): small
 * blocks from free lists per 16-byte class, carved from 64 KiB chunks;
 * the rest from malloc. With plain realloc, glibc's bookkeeping was a
 * fifth of the decoder's instructions here, which the rules VM (where
 * decoding mostly runs) does not pay. */
#define B_STEP 16
#define B_MAX  256
typedef struct bfree {
  struct bfree *next;
} bfree_t;
static bfree_t *b_free[B_MAX / B_STEP];
static char *b_pos;
static size_t b_left;

static void *bench_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (!ptr)
    osize = 0;
  if (nsize == 0) {
    if (ptr && osize <= B_MAX) {
      bfree_t *f = ptr;
      f->next = b_free[(osize - 1) / B_STEP];
      b_free[(osize - 1) / B_STEP] = f;
    } else {
      free(ptr);
    }
    return NULL;
  }
  if (ptr && osize <= B_MAX && nsize <= B_MAX &&
      (osize - 1) / B_STEP == (nsize - 1) / B_STEP)
    return ptr;
  void *p;
  if (nsize <= B_MAX) {
    size_t c = (nsize - 1) / B_STEP, sz = (c + 1) * B_STEP;
    if (b_free[c]) {
      p = b_free[c];
      b_free[c] = b_free[c]->next;
    } else {
      if (b_left < sz) {
        b_pos = malloc(64 * 1024);
        if (!b_pos)
          return NULL;
        b_left = 64 * 1024;
      }
      p = b_pos;
      b_pos += sz;
      b_left -= sz;
    }
  } else if (ptr && osize > B_MAX) {
    return realloc(ptr, nsize);
  } else if (!(p = malloc(nsize))) {
    return NULL;
  }
  if (ptr) {
    memcpy(p, ptr, osize < nsize ? osize : nsize);
    bench_alloc(NULL, ptr, osize, 0);
  }
  return p;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now(void);

static __attribute__((noinline)) void bench_decode(lua_State *L, set_t *s) {
  char err[256];
  for (size_t i = 0; i < s->n; i++) {
    if (amc_json_decode_canonical(L, s->text[i], s->len[i], err, sizeof err) <
        0)
      die("decode: %s%s", err, "");
    lua_pop(L, 1);
  }
}

static int push_protected(lua_State *L) {
  set_t *s = lua_touserdata(L, 1);
  char err[256];
  for (size_t i = 0; i < s->n; i++) {
    if (amc_json_push_canonical(L, s->text[i], s->len[i], err, sizeof err) < 0)
      return luaL_error(L, "push: %s", err);
    lua_pop(L, 1);
  }
  return 0;
}

static __attribute__((noinline)) void bench_push(lua_State *L, set_t *s) {
  lua_pushcfunction(L, push_protected);
  lua_pushlightuserdata(L, s);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    die("%s%s", lua_tostring(L, -1), "");
}

/* The set's objects decoded, in a table at the top. */
static void decode_all(lua_State *L, set_t *s) {
  char err[256];
  lua_createtable(L, (int)s->n, 0);
  for (size_t i = 0; i < s->n; i++) {
    if (amc_json_decode_canonical(L, s->text[i], s->len[i], err, sizeof err) <
        0)
      die("decode: %s%s", err, "");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static void check(set_t *s, size_t i, const amc_buf_t *b) {
  if (b->len != s->len[i] || memcmp(b->data, s->text[i], b->len) != 0)
    die("object %s: encoding differs%s", "", "");
}

static __attribute__((noinline)) void bench_encode(lua_State *L, set_t *s,
                                                   int objs, amc_buf_t *b) {
  char err[256];
  for (size_t i = 0; i < s->n; i++) {
    lua_rawgeti(L, objs, (lua_Integer)i + 1);
    amc_buf_reset(b);
    if (amc_json_encode(L, -1, b, err, sizeof err) < 0)
      die("encode: %s%s", err, "");
    lua_pop(L, 1);
    check(s, i, b);
  }
}

static __attribute__((noinline)) void bench_encode_tape(lua_State *L, set_t *s,
                                                        int objs, amc_buf_t *b,
                                                        amc_json_tape_t *tape) {
  char err[256];
  amc_json_memo_t *m = amc_json_memo_new();
  for (size_t i = 0; i < s->n; i++) {
    lua_rawgeti(L, objs, (lua_Integer)i + 1);
    amc_buf_reset(b);
    if (amc_json_encode_tape(L, -1, b, m, tape, err, sizeof err) < 0)
      die("encode: %s%s", err, "");
    lua_pop(L, 1);
    check(s, i, b);
  }
  amc_json_memo_free(m);
}

/* Garbage is collected between rounds, outside the timing (and outside
 * the bench_ functions callgrind counts): the collector runs at its own
 * pace in amc, and the rounds' numbers should not depend on where its
 * steps fall. */
static double round_gc(lua_State *L, double t) {
  double spent = now() - t;
  lua_gc(L, LUA_GCCOLLECT);
  return spent;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: json_bench ITERS NAME=k8s:PATH[:KIND] "
                    "NAME=avi:FILE[:TYPE] ...\n");
    return 2;
  }
  long iters = atol(argv[1]);
  lua_State *L = lua_newstate(bench_alloc, NULL);
  luaL_openlibs(L);
  printf("%-14s %6s %8s %10s %10s %10s %12s  (ns per object)\n", "set", "objs",
         "bytes", "decode", "push", "encode", "encode_tape");
  for (int a = 2; a < argc; a++) {
    char *spec = strdup(argv[a]);
    char *eq = strchr(spec, '=');
    if (!eq)
      die("bad set '%s'%s", argv[a], "");
    *eq = '\0';
    char *how = eq + 1, *path = strchr(how, ':');
    if (!path)
      die("bad set '%s'%s", argv[a], "");
    *path++ = '\0';
    char *filter = strchr(path, ':');
    if (filter)
      *filter++ = '\0';
    set_t s = {0};
    char err[512];
    if (strcmp(how, "k8s") == 0) {
      s.kind = filter;
      if (amc_loader_load_path(L, path, NULL, on_obj, &s, err, sizeof err) < 0)
        die("%s%s", err, "");
    } else if (strcmp(how, "avi") == 0) {
      load_avi(L, path, filter, &s);
    } else {
      die("bad set '%s'%s", argv[a], "");
    }
    if (!s.n)
      die("set '%s' has no objects%s", spec, "");
    double td = 0, tp = 0, te = 0, tt = 0;
    lua_gc(L, LUA_GCCOLLECT);
    lua_gc(L, LUA_GCSTOP);
    for (long k = 0; k < iters; k++) {
      double t = now();
      bench_decode(L, &s);
      td += round_gc(L, t);
    }
    for (long k = 0; k < iters; k++) {
      double t = now();
      bench_push(L, &s);
      tp += round_gc(L, t);
    }
    decode_all(L, &s);
    int objs = lua_gettop(L);
    amc_buf_t b = AMC_BUF_INIT;
    amc_json_tape_t tape = AMC_JSON_TAPE_INIT;
    for (long k = 0; k < iters; k++) {
      double t = now();
      bench_encode(L, &s, objs, &b);
      te += round_gc(L, t);
    }
    for (long k = 0; k < iters; k++) {
      double t = now();
      bench_encode_tape(L, &s, objs, &b, &tape);
      tt += round_gc(L, t);
    }
    amc_json_tape_free(&tape);
    amc_buf_free(&b);
    lua_pop(L, 1);
    lua_gc(L, LUA_GCRESTART);
    double per = 1e9 / ((double)iters * (double)s.n);
    printf("%-14s %6zu %8zu %10.0f %10.0f %10.0f %12.0f\n", spec, s.n,
           s.bytes / s.n, td * per, tp * per, te * per, tt * per);
    for (size_t i = 0; i < s.n; i++)
      free(s.text[i]);
    free(s.text);
    free(s.len);
    free(spec);
  }
  lua_close(L);
  return 0;
}
