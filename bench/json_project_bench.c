/* json_project_bench.c - runtime/json_project.c on real objects, against
 * decoding them whole.
 *
 *   json_project_bench ITERS PATH [KIND]
 *
 * The objects the loader reads from PATH (a file or directory; only KIND's
 * when given) are encoded to canonical text, as the store keeps them.
 * Then, ITERS rounds over them each, nanoseconds per object of:
 *   project     amc_json_project onto a VirtualService's fields (what a
 *               rule listing projected VirtualServices reads)
 *   push_full   amc_json_push_canonical of the whole object (what it reads
 *               today)
 *   push_proj   amc_json_push_canonical of the projected text
 * Each round runs in a function of its own (bench_<op>), so that under
 * callgrind the instructions per object are the function's inclusive cost
 * / (ITERS x objects). Lua's default allocator (json_bench's pool
 * allocator would lower both pushes alike). */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "json_project.h"
#include "loader.h"
#include "util/buf.h"

static const char *const vs_paths[] = {"metadata.name",
                                       "metadata.namespace",
                                       "metadata.creationTimestamp",
                                       "spec.hosts",
                                       "spec.gateways",
                                       "spec.exportTo",
                                       "spec.tls",
                                       "spec.tcp"};

typedef struct {
  amc_buf_t *text;
  size_t n, cap, bytes;
  const char *kind;
} set_t;

static void die(const char *msg, const char *arg) {
  fprintf(stderr, "json_project_bench: %s%s\n", msg, arg);
  exit(1);
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
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    s->text = realloc(s->text, s->cap * sizeof *s->text);
    if (!s->text)
      die("out of memory", "");
  }
  amc_buf_t *b = &s->text[s->n++];
  *b = (amc_buf_t)AMC_BUF_INIT;
  char e[256];
  if (amc_json_encode(L, -1, b, e, sizeof e) < 0)
    die("encode: ", e);
  s->bytes += b->len;
  return 0;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static __attribute__((noinline)) void
bench_project(const amc_json_projection_t *p, set_t *s, amc_buf_t *out) {
  for (size_t i = 0; i < s->n; i++) {
    amc_buf_reset(&out[i]);
    if (amc_json_project(p, s->text[i].data, s->text[i].len, &out[i]) < 0)
      die("project failed", "");
  }
}

typedef struct {
  amc_buf_t *texts;
  size_t n;
} push_t;

static int push_protected(lua_State *L) {
  push_t *pu = lua_touserdata(L, 1);
  char err[256];
  for (size_t i = 0; i < pu->n; i++) {
    if (amc_json_push_canonical(L, pu->texts[i].data, pu->texts[i].len, err,
                                sizeof err) < 0)
      return luaL_error(L, "push: %s", err);
    lua_pop(L, 1);
  }
  return 0;
}

static void push_all(lua_State *L, amc_buf_t *texts, size_t n) {
  push_t pu = {texts, n};
  lua_pushcfunction(L, push_protected);
  lua_pushlightuserdata(L, &pu);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    die("", lua_tostring(L, -1));
}

static __attribute__((noinline)) void bench_push_full(lua_State *L, set_t *s) {
  push_all(L, s->text, s->n);
}

static __attribute__((noinline)) void
bench_push_proj(lua_State *L, amc_buf_t *proj, size_t n) {
  push_all(L, proj, n);
}

int main(int argc, char **argv) {
  if (argc < 3)
    die("usage: json_project_bench ITERS PATH [KIND]", "");
  long iters = atol(argv[1]);
  set_t s = {0};
  s.kind = argc > 3 ? argv[3] : NULL;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  char err[256];
  if (amc_loader_load_path(L, argv[2], NULL, on_obj, &s, err, sizeof err) < 0)
    die("", err);
  if (!s.n)
    die("no objects in ", argv[2]);
  amc_json_projection_t *p = amc_json_projection_new(
      vs_paths, sizeof vs_paths / sizeof *vs_paths, err, sizeof err);
  if (!p)
    die("", err);
  amc_buf_t *proj = calloc(s.n, sizeof *proj);
  bench_project(p, &s, proj); /* warm, and the projected bytes */
  size_t pbytes = 0;
  for (size_t i = 0; i < s.n; i++)
    pbytes += proj[i].len;
  double t0 = now();
  for (long k = 0; k < iters; k++)
    bench_project(p, &s, proj);
  double t1 = now();
  for (long k = 0; k < iters; k++)
    bench_push_full(L, &s);
  double t2 = now();
  for (long k = 0; k < iters; k++)
    bench_push_proj(L, proj, s.n);
  double t3 = now();
  double per = 1e9 / ((double)iters * (double)s.n);
  printf("%zu objects, %zu bytes each, projected %zu bytes each\n", s.n,
         s.bytes / s.n, pbytes / s.n);
  printf("project    %8.0f ns/object\n", (t1 - t0) * per);
  printf("push_full  %8.0f ns/object\n", (t2 - t1) * per);
  printf("push_proj  %8.0f ns/object\n", (t3 - t2) * per);
  for (size_t i = 0; i < s.n; i++) {
    amc_buf_free(&proj[i]);
    amc_buf_free(&s.text[i]);
  }
  free(proj);
  free(s.text);
  amc_json_projection_free(p);
  lua_close(L);
  return 0;
}
