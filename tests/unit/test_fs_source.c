/* test_fs_source.c - the fs:// source on a real temporary directory with
 * real inotify events. The parser here is a stand-in (one object per line:
 * "kind ns name value"); the controller plugs in the YAML/JSON loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fs_source.h"
#include "util/buf.h"

static uv_loop_t loop;
static char root[256];
static amc_buf_t events; /* "+kind/ns/name=json;" and "-kind/ns/name;" */
static int synced, errors, batches, restarts;
static char last_error[512];

static int parse(void *pd, const char *path, amc_fs_emit_fn emit, void *ctx,
                 char *err, size_t errlen) {
  (void)pd;
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open", path);
    return -1;
  }
  char line[256];
  int lineno = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char kind[64], ns[64], name[64], value[64];
    if (line[0] == '\n')
      continue;
    if (sscanf(line, "%63s %63s %63s %63s", kind, ns, name, value) != 4) {
      snprintf(err, errlen, "%s:%d:1: expected 'kind ns name value'", path,
               lineno);
      fclose(f);
      return -1;
    }
    char json[128];
    snprintf(json, sizeof json, "{\"v\":\"%s\"}", value);
    emit(ctx, kind, strcmp(ns, "-") == 0 ? "" : ns, name, json, strlen(json));
  }
  fclose(f);
  return 0;
}

static void on_upsert(void *d, const char *kind, const char *ns,
                      const char *name, const char *json, size_t len) {
  (void)d;
  amc_buf_printf(&events, "+%s/%s/%s=%.*s;", kind, ns, name, (int)len, json);
}

static void on_remove(void *d, const char *kind, const char *ns,
                      const char *name) {
  (void)d;
  amc_buf_printf(&events, "-%s/%s/%s;", kind, ns, name);
}

static void on_synced(void *d) {
  (void)d;
  synced++;
}

static void on_error(void *d, const char *path, const char *msg) {
  (void)d;
  (void)path;
  errors++;
  snprintf(last_error, sizeof last_error, "%s", msg);
}

static void on_batch(void *d) {
  (void)d;
  batches++;
}

static void on_restart(void *d) {
  (void)d;
  restarts++;
}

static void write_file(const char *rel, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", root, rel);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* An editor's atomic save: write a temporary file, rename it over. */
static void atomic_write(const char *rel, const char *text) {
  char tmp[512], dst[512];
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", root, rel);
  snprintf(dst, sizeof dst, "%s/%s", root, rel);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(rename(tmp, dst), 0);
}

static void path_of(char *out, size_t n, const char *rel) {
  snprintf(out, n, "%s/%s", root, rel);
}

static void on_stop(uv_timer_t *t) {
  uv_stop(t->loop);
}

/* Runs the loop until `events` holds something (or a batch ended) or the
 * deadline passes. */
static void run_until_batch(int want_batches, uint64_t max_ms) {
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uint64_t start = uv_hrtime();
  while (batches < want_batches && (uv_hrtime() - start) / 1000000 < max_ms) {
    uv_timer_start(&t, on_stop, 5, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* Runs the loop for about `ms` milliseconds. */
static void run_for(uint64_t ms) {
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, on_stop, ms, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* Runs the loop until an event arrived (at most 2 s). */
static void wait_events(void) {
  for (int i = 0; i < 200 && events.len == 0; i++)
    run_for(10);
}

/* Runs the loop until the source watches `n` directories (at most 2 s). */
static void wait_watches(amc_fs_source_t *s, size_t n) {
  for (int i = 0; i < 200 && amc_fs_source_watches(s) < n; i++)
    run_for(10);
}

static const char *take_events(void) {
  static char copy[4096];
  snprintf(copy, sizeof copy, "%s", events.data ? events.data : "");
  amc_buf_reset(&events);
  return copy;
}

static amc_fs_source_t *start_quiet(unsigned debounce_ms) {
  amc_fs_source_opts_t o = {
      .root = root,
      .debounce_ms = debounce_ms,
      .parse = parse,
      .sink = {on_upsert, on_remove, on_synced, on_error, on_batch, on_restart},
  };
  char err[256];
  amc_fs_source_t *s = amc_fs_source_start(&loop, &o, err, sizeof err);
  assert_non_null(s);
  batches = 0; /* the initial scan is a batch too */
  return s;
}

static amc_fs_source_t *start(void) {
  return start_quiet(10);
}

static int setup(void **state) {
  (void)state;
  uv_loop_init(&loop);
  snprintf(root, sizeof root, "/tmp/amc-fs-test-XXXXXX");
  assert_non_null(mkdtemp(root));
  synced = errors = batches = restarts = 0;
  amc_buf_reset(&events);
  return 0;
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL); /* only after a failed test; leaks are then moot */
}

static int teardown(void **state) {
  (void)state;
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_walk(&loop, close_walk, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  assert_int_equal(system(cmd), 0);
  amc_buf_free(&events);
  return 0;
}

static void test_initial_scan_and_filters(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns a 1\nService ns b 1\n");
  write_file("notes.txt", "Service ns ignored 1\n");
  write_file(".hidden.yaml", "Service ns ignored 1\n");
  mkdir(strcat(strcpy((char[300]){0}, root), "/sub"), 0755);
  write_file("sub/c.json", "Gateway - gw 1\n");
  amc_fs_source_t *s = start();
  assert_int_equal(synced, 1);
  assert_int_equal(amc_fs_source_count(s), 3);
  assert_int_equal(amc_fs_source_watches(s), 2);
  const char *ev = take_events();
  assert_non_null(strstr(ev, "+Service/ns/a={\"v\":\"1\"};"));
  assert_non_null(strstr(ev, "+Service/ns/b={\"v\":\"1\"};"));
  assert_non_null(strstr(ev, "+Gateway//gw={\"v\":\"1\"};"));
  assert_null(strstr(ev, "ignored"));
  amc_fs_source_close(s);
}

static void test_modify_delete_and_unchanged(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns a 1\nService ns b 1\n");
  amc_fs_source_t *s = start();
  take_events();
  /* change one object, drop another */
  write_file("a.yaml", "Service ns a 2\n");
  run_until_batch(1, 2000);
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"2\"};"
                                     "-Service/ns/b;");
  /* rewrite with the same content: no events */
  write_file("a.yaml", "Service ns a 2\n");
  run_until_batch(2, 2000);
  assert_string_equal(take_events(), "");
  /* delete the file */
  char p[512];
  path_of(p, sizeof p, "a.yaml");
  unlink(p);
  run_until_batch(3, 2000);
  assert_string_equal(take_events(), "-Service/ns/a;");
  assert_int_equal(amc_fs_source_count(s), 0);
  amc_fs_source_close(s);
}

static void test_atomic_save_and_rename(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns a 1\n");
  amc_fs_source_t *s = start();
  take_events();
  atomic_write("a.yaml", "Service ns a 2\n");
  run_until_batch(1, 2000);
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"2\"};");
  /* moving an object's file: same objects, nothing to tell */
  char from[512], to[512];
  path_of(from, sizeof from, "a.yaml");
  path_of(to, sizeof to, "b.yaml");
  assert_int_equal(rename(from, to), 0);
  run_until_batch(2, 2000);
  assert_string_equal(take_events(), "");
  assert_int_equal(amc_fs_source_count(s), 1);
  /* renamed to an ignored name: gone */
  path_of(from, sizeof from, "b.yaml.bak");
  assert_int_equal(rename(to, from), 0);
  run_until_batch(3, 2000);
  assert_string_equal(take_events(), "-Service/ns/a;");
  amc_fs_source_close(s);
}

static void test_object_moves_between_files(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns x 1\n");
  write_file("b.yaml", "Service ns y 1\n");
  amc_fs_source_t *s = start();
  take_events();
  /* x moves from a to b in one batch: one upsert (no delete) */
  write_file("b.yaml", "Service ns y 1\nService ns x 1\n");
  write_file("a.yaml", "");
  run_until_batch(1, 2000);
  assert_string_equal(take_events(), "");
  assert_int_equal(amc_fs_source_count(s), 2);
  /* now b owns x: deleting a changes nothing, deleting b removes x */
  char p[512];
  path_of(p, sizeof p, "a.yaml");
  unlink(p);
  run_until_batch(2, 2000);
  assert_string_equal(take_events(), "");
  path_of(p, sizeof p, "b.yaml");
  unlink(p);
  run_until_batch(3, 2000);
  const char *ev = take_events();
  assert_non_null(strstr(ev, "-Service/ns/x;"));
  assert_non_null(strstr(ev, "-Service/ns/y;"));
  amc_fs_source_close(s);
}

static void test_duplicate_definition(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns x 1\n");
  write_file("b.yaml", "Service ns x 2\n");
  amc_fs_source_t *s = start();
  assert_int_equal(errors, 1);
  assert_non_null(strstr(last_error, "defined by another file"));
  assert_int_equal(amc_fs_source_count(s), 1);
  amc_fs_source_close(s);
}

static void test_parse_error_keeps_objects(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns a 1\nService ns b 1\n");
  amc_fs_source_t *s = start();
  take_events();
  write_file("a.yaml", "Service ns a 1\nbroken\n");
  run_until_batch(1, 2000);
  assert_int_equal(errors, 1);
  assert_non_null(strstr(last_error, "a.yaml:2:1: expected"));
  assert_string_equal(take_events(), ""); /* b is kept */
  assert_int_equal(amc_fs_source_count(s), 2);
  /* fixing the file resumes normal work */
  write_file("a.yaml", "Service ns a 3\n");
  run_until_batch(2, 2000);
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"3\"};"
                                     "-Service/ns/b;");
  amc_fs_source_close(s);
}

static void test_new_and_removed_subdirectories(void **state) {
  (void)state;
  amc_fs_source_t *s = start();
  char p[512];
  path_of(p, sizeof p, "d1");
  assert_int_equal(mkdir(p, 0755), 0);
  wait_watches(s, 2);
  assert_int_equal(amc_fs_source_watches(s), 2);
  write_file("d1/x.yaml", "Pod ns p 1\n");
  for (int i = 0; i < 200 && amc_fs_source_count(s) < 1; i++)
    run_for(10);
  assert_string_equal(take_events(), "+Pod/ns/p={\"v\":\"1\"};");
  /* a whole tree moved in at once */
  char tmp[300], cmd[2000];
  snprintf(tmp, sizeof tmp, "%s.incoming", root);
  snprintf(cmd, sizeof cmd,
           "mkdir -p %s/a/b && echo 'Pod ns q 1' > %s/a/b/q.yaml && mv %s/a "
           "%s/d2",
           tmp, tmp, tmp, root);
  assert_int_equal(system(cmd), 0);
  rmdir(tmp);
  for (int i = 0; i < 200 && amc_fs_source_count(s) < 2; i++)
    run_for(10);
  assert_string_equal(take_events(), "+Pod/ns/q={\"v\":\"1\"};");
  assert_int_equal(amc_fs_source_watches(s), 4);
  /* remove a directory tree */
  snprintf(cmd, sizeof cmd, "rm -rf %s/d1 %s/d2", root, root);
  assert_int_equal(system(cmd), 0);
  for (int i = 0; i < 200 && amc_fs_source_count(s) > 0; i++)
    run_for(10);
  for (int i = 0; i < 200 && amc_fs_source_watches(s) > 1; i++)
    run_for(10);
  const char *ev = take_events();
  assert_non_null(strstr(ev, "-Pod/ns/p;"));
  assert_non_null(strstr(ev, "-Pod/ns/q;"));
  assert_int_equal(amc_fs_source_watches(s), 1);
  amc_fs_source_close(s);
}

/* Changes only hidden names report: a mounted ConfigMap's update (the
 * visible names are symlinks through "..data", which is swapped by a
 * rename); a directory under a data file's name; a create and a delete. */
static void test_named_events_and_configmap_swap(void **state) {
  (void)state;
  char cmd[2000];
  snprintf(cmd, sizeof cmd,
           "cd %s && mkdir ..v1 && echo 'Service ns a 1' > ..v1/a.yaml && "
           "ln -s ..v1 ..data && ln -s ..data/a.yaml a.yaml",
           root);
  assert_int_equal(system(cmd), 0);
  amc_fs_source_t *s = start();
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"1\"};");
  /* the kubelet's swap: new version dir, new link, renamed over ..data */
  snprintf(cmd, sizeof cmd,
           "cd %s && mkdir ..v2 && echo 'Service ns a 2' > ..v2/a.yaml && "
           "ln -s ..v2 ..data_tmp && mv -T ..data_tmp ..data && rm -r ..v1",
           root);
  assert_int_equal(system(cmd), 0);
  wait_events();
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"2\"};");
  /* a directory named like a data file: watched and read */
  char p[512];
  path_of(p, sizeof p, "d.yaml");
  assert_int_equal(mkdir(p, 0755), 0);
  wait_watches(s, 2);
  assert_int_equal(amc_fs_source_watches(s), 2);
  write_file("d.yaml/x.yaml", "Pod ns p 1\n");
  wait_events();
  assert_string_equal(take_events(), "+Pod/ns/p={\"v\":\"1\"};");
  /* a visible file created, then deleted */
  write_file("b.yaml", "Service ns b 1\n");
  wait_events();
  assert_string_equal(take_events(), "+Service/ns/b={\"v\":\"1\"};");
  path_of(p, sizeof p, "b.yaml");
  unlink(p);
  wait_events();
  assert_string_equal(take_events(), "-Service/ns/b;");
  assert_int_equal(amc_fs_source_count(s), 2);
  amc_fs_source_close(s);
}

/* An event that names a file costs a stat of that file, not a listing of
 * its directory; a hidden temporary file costs nothing at all. */
static void test_named_events_stat_only_the_named_entry(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns a 1\n");
  write_file("b.yaml", "Service ns b 1\n");
  amc_fs_source_t *s = start();
  take_events();
  uint64_t listed = amc_fs_source_listings(s);
  assert_int_equal(listed, 1);
  /* an editor's atomic save */
  atomic_write("a.yaml", "Service ns a 2\n");
  run_until_batch(1, 2000);
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"2\"};");
  /* a plain write, a new file, a delete */
  write_file("b.yaml", "Service ns b 2\n");
  run_until_batch(2, 2000);
  assert_string_equal(take_events(), "+Service/ns/b={\"v\":\"2\"};");
  write_file("c.yaml", "Service ns c 1\n");
  run_until_batch(3, 2000);
  assert_string_equal(take_events(), "+Service/ns/c={\"v\":\"1\"};");
  char p[512], q[512];
  path_of(p, sizeof p, "c.yaml");
  unlink(p);
  run_until_batch(4, 2000);
  assert_string_equal(take_events(), "-Service/ns/c;");
  /* renamed out of the tree and back in */
  path_of(p, sizeof p, "b.yaml");
  snprintf(q, sizeof q, "%s.outside.yaml", root);
  assert_int_equal(rename(p, q), 0);
  run_until_batch(5, 2000);
  assert_string_equal(take_events(), "-Service/ns/b;");
  assert_int_equal(rename(q, p), 0);
  run_until_batch(6, 2000);
  assert_string_equal(take_events(), "+Service/ns/b={\"v\":\"2\"};");
  /* a hidden file alone: no batch, no listing */
  write_file(".scratch.tmp", "Service ns h 1\n");
  run_for(50);
  assert_int_equal(batches, 6);
  assert_string_equal(take_events(), "");
  assert_int_equal(amc_fs_source_listings(s), listed);
  assert_int_equal(amc_fs_source_count(s), 2);
  /* the periodic full rescan still lists everything */
  amc_fs_source_rescan(s);
  assert_int_equal(amc_fs_source_listings(s), listed + 1);
  assert_string_equal(take_events(), "");
  amc_fs_source_close(s);
}

/* An entry that changes type under the same name, and a directory renamed
 * over another one: the new directory is watched (not the old inode). */
static void test_named_entry_changes_type_and_dir_replaced(void **state) {
  (void)state;
  char p[512], cmd[2000];
  path_of(p, sizeof p, "x.yaml");
  write_file("x.yaml", "Service ns x 1\n");
  amc_fs_source_t *s = start();
  take_events();
  /* a file replaced by a directory of the same name */
  unlink(p);
  assert_int_equal(mkdir(p, 0755), 0);
  wait_watches(s, 2);
  assert_int_equal(amc_fs_source_watches(s), 2);
  assert_string_equal(take_events(), "-Service/ns/x;");
  write_file("x.yaml/in.yaml", "Pod ns p 1\n");
  wait_events();
  assert_string_equal(take_events(), "+Pod/ns/p={\"v\":\"1\"};");
  /* another directory renamed over it (replacing the empty one needs it
   * empty: remove the file first) */
  path_of(p, sizeof p, "x.yaml/in.yaml");
  unlink(p);
  wait_events();
  assert_string_equal(take_events(), "-Pod/ns/p;");
  snprintf(cmd, sizeof cmd,
           "mkdir %s/.new && echo 'Pod ns q 1' > %s/.new/q.yaml && "
           "mv -T %s/.new %s/x.yaml",
           root, root, root, root);
  assert_int_equal(system(cmd), 0);
  wait_events();
  assert_string_equal(take_events(), "+Pod/ns/q={\"v\":\"1\"};");
  /* a write inside the new directory is seen through its own watch */
  write_file("x.yaml/q.yaml", "Pod ns q 2\n");
  wait_events();
  assert_string_equal(take_events(), "+Pod/ns/q={\"v\":\"2\"};");
  assert_int_equal(amc_fs_source_watches(s), 2);
  /* and the directory replaced by a file again */
  snprintf(cmd, sizeof cmd,
           "rm -r %s/x.yaml && echo 'Service ns x 3' > %s/x.yaml", root, root);
  assert_int_equal(system(cmd), 0);
  for (int i = 0; i < 200 && !(events.data && strstr(events.data, "+Service"));
       i++)
    run_for(10);
  for (int i = 0; i < 200 && amc_fs_source_watches(s) != 1; i++)
    run_for(10);
  const char *ev = take_events();
  assert_non_null(strstr(ev, "-Pod/ns/q;"));
  assert_non_null(strstr(ev, "+Service/ns/x={\"v\":\"3\"};"));
  assert_int_equal(amc_fs_source_watches(s), 1);
  amc_fs_source_close(s);
}

/* The real parser: YAML through the loader, stripped canonical JSON. */
static void test_loader_parser(void **state) {
  (void)state;
  write_file("gw.yaml",
             "apiVersion: networking.istio.io/v1beta1\n"
             "kind: Gateway\n"
             "metadata:\n"
             "  name: gw\n"
             "  managedFields: [{manager: kubectl}]\n"
             "  annotations:\n"
             "    kubectl.kubernetes.io/last-applied-configuration: '{}'\n"
             "    keep: 'yes'\n"
             "spec:\n"
             "  servers: [{port: {number: 80}}]\n"
             "status: {x: 1}\n"
             "---\n"
             "apiVersion: v1\n"
             "kind: Namespace\n"
             "metadata: {name: shop}\n");
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  amc_fs_loader_t fl = {L, "default"};
  amc_fs_source_opts_t o = {
      .root = root,
      .parse = amc_fs_parse_loader,
      .parse_data = &fl,
      .sink = {on_upsert, on_remove, on_synced, on_error, on_batch},
  };
  char err[256];
  amc_fs_source_t *s = amc_fs_source_start(&loop, &o, err, sizeof err);
  assert_non_null(s);
  batches = 0;
  assert_string_equal(
      take_events(),
      "+Gateway/default/gw={\"apiVersion\":\"networking.istio.io/v1beta1\","
      "\"kind\":\"Gateway\",\"metadata\":{\"annotations\":{\"keep\":\"yes\"},"
      "\"name\":\"gw\",\"namespace\":\"default\"},\"spec\":{\"servers\":"
      "[{\"port\":{\"number\":80}}]}};"
      "+Namespace//shop={\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
      "\"metadata\":{\"name\":\"shop\"}};");
  /* a syntax error names file:line:col and keeps the objects */
  write_file("gw.yaml", "kind: Gateway\nmetadata: {name: [}\n");
  run_until_batch(1, 2000);
  assert_int_equal(errors, 1);
  char want[512];
  snprintf(want, sizeof want, "%s/gw.yaml:2:", root);
  assert_non_null(strstr(last_error, want));
  assert_string_equal(take_events(), "");
  assert_int_equal(amc_fs_source_count(s), 2);
  amc_fs_source_close(s);
  run_for(5);
  lua_close(L);
}

/* The loader parser reads a changed file span by span: an item whose text
 * did not change keeps the objects it gave (not decoded again: the changed
 * default namespace shows which were); a JSON error anywhere changes
 * nothing and names the whole file's position. */
static void test_loader_spans(void **state) {
  (void)state;
#define SVC(n, v)                                                              \
  "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"" n    \
  "\"},\"spec\":{\"v\":" v "}}"
  write_file("l.json", "{\"kind\":\"List\",\"items\":[\n" SVC(
                           "a", "1") ",\n" SVC("b", "1") "\n]}\n");
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  amc_fs_loader_t fl = {L, "one"};
  amc_fs_source_opts_t o = {
      .root = root,
      .debounce_ms = 10,
      .parse = amc_fs_parse_loader,
      .parse_data = &fl,
      .sink = {on_upsert, on_remove, on_synced, on_error, on_batch},
  };
  char err[256];
  amc_fs_source_t *s = amc_fs_source_start(&loop, &o, err, sizeof err);
  assert_non_null(s);
  batches = 0;
  const char *ev = take_events();
  assert_non_null(strstr(ev, "+Service/one/a="));
  assert_non_null(strstr(ev, "+Service/one/b="));
  /* b changes; a does not: a is not decoded again (it would move to
   * namespace "two") */
  fl.default_namespace = "two";
  atomic_write("l.json", "{\"kind\":\"List\",\"items\":[\n" SVC(
                             "a", "1") ",\n" SVC("b", "2") "\n]}\n");
  run_until_batch(1, 2000);
  assert_string_equal(take_events(),
                      "+Service/two/b={\"apiVersion\":\"v1\",\"kind\":"
                      "\"Service\",\"metadata\":{\"name\":\"b\",\"namespace\":"
                      "\"two\"},\"spec\":{\"v\":2}};-Service/one/b;");
  assert_int_equal(amc_fs_source_count(s), 2);
  /* a JSON error in the second item: nothing changes (not even the first
   * item's new value), and the message is the whole file's */
  atomic_write("l.json", "{\"kind\":\"List\",\"items\":[\n" SVC(
                             "a", "3") ",\n" SVC("b", "tru") "\n]}\n");
  run_until_batch(2, 2000);
  assert_int_equal(errors, 1);
  assert_non_null(strstr(last_error, "l.json: line 3"));
  assert_string_equal(take_events(), "");
  assert_int_equal(amc_fs_source_count(s), 2);
  /* fixed: both items are read again */
  atomic_write("l.json", "{\"kind\":\"List\",\"items\":[\n" SVC(
                             "a", "3") ",\n" SVC("b", "2") "\n]}\n");
  run_until_batch(3, 2000);
  ev = take_events();
  assert_non_null(strstr(ev, "+Service/two/a="));
  assert_null(strstr(ev, "/b"));
  /* a repeated key in the second item, both items changed: nothing
   * changes either (the direct path leaves the item to the loader; its
   * error comes before any object changes) */
  atomic_write("l.json", "{\"kind\":\"List\",\"items\":[\n" SVC(
                             "a", "5") ",\n" SVC("b", "5,\"v\":6") "\n]}\n");
  run_until_batch(4, 2000);
  assert_int_equal(errors, 2);
  assert_non_null(strstr(last_error, "duplicate key"));
  assert_string_equal(take_events(), "");
  /* a broken List around good items: the whole file's error, no change */
  atomic_write("l.json", "{\"kind\":\"List\",\"x\":(,\"items\":[\n" SVC(
                             "a", "3") ",\n" SVC("b", "4") "\n]}\n");
  run_until_batch(5, 2000);
  assert_int_equal(errors, 3);
  assert_non_null(strstr(last_error, "l.json: line 1"));
  assert_string_equal(take_events(), "");
  /* YAML documents: the same; an error names the file's line */
  write_file("y.yaml", "kind: Pod\napiVersion: v1\nmetadata: {name: p}\n"
                       "---\nkind: Pod\napiVersion: v1\nmetadata: {name: q}\n");
  run_until_batch(6, 2000);
  take_events();
  fl.default_namespace = "three";
  atomic_write("y.yaml", "kind: Pod\napiVersion: v1\nmetadata: {name: p}\n"
                         "---\nkind: Pod\napiVersion: v1\nmetadata: {name: q}\n"
                         "spec: {x: 1}\n");
  run_until_batch(7, 2000);
  ev = take_events();
  assert_non_null(strstr(ev, "+Pod/three/q="));
  assert_null(strstr(ev, "Pod/three/p"));
  atomic_write("y.yaml", "kind: Pod\napiVersion: v1\nmetadata: {name: p}\n"
                         "---\nkind: Pod\napiVersion: v1\nmetadata: [\n");
  run_until_batch(8, 2000);
  assert_int_equal(errors, 4);
  char want[512];
  snprintf(want, sizeof want, "%s/y.yaml:8:", root);
  assert_non_null(strstr(last_error, want));
  amc_fs_source_close(s);
  run_for(5);
  lua_close(L);
#undef SVC
}

/* The direct path (canon.h) on or off, the same files give the same
 * objects and the same errors: bookinfo's manifests, texts the direct
 * path declines (anchors, a List, a NaN, a repeated key, a syntax error),
 * JSON Lists and arrays, then saves of some of them. */
static amc_buf_t errs;
static void on_error_all(void *d, const char *path, const char *msg) {
  (void)d;
  amc_buf_printf(&errs, "%s: %s;", path, msg);
}

static void direct_run(int direct, amc_buf_t *out) {
  static const char *const book[] = {"00-namespace.yaml", "10-workloads.yaml",
                                     "20-gateway.yaml", "30-routing.yaml",
                                     "40-external.yaml"};
  for (size_t i = 0; i < sizeof book / sizeof *book; i++) {
    char src[600];
    amc_buf_t t = AMC_BUF_INIT;
    snprintf(src, sizeof src, "%s/examples/bookinfo/%s", AMC_SOURCE_DIR,
             book[i]);
    assert_int_equal(amc_buf_read_file(&t, src), 0);
    write_file(book[i], t.data);
    amc_buf_free(&t);
  }
  write_file("anchors.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n"
                             "  name: &n s1\n  labels: {app: *n}\n");
  write_file("list.yaml",
             "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n"
             "  kind: Service\n  metadata: {name: s2, namespace: x}\n"
             "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
             "status: {podIP: 10.0.0.1, x: .nan}\n"
             "---\napiVersion: v1\nkind: Service\nmetadata: {name: s3}\n"
             "spec: {a: 1, a: 2}\n");
  write_file("bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s4}\n"
                         "---\nkind: [\n");
  write_file(
      "l.json",
      "{\"kind\":\"List\",\"items\":[{\"apiVersion\":\"v1\",\"kind\":"
      "\"Service\",\"metadata\":{\"name\":\"j1\",\"managedFields\":[]},"
      "\"spec\":{\"n\":[1.0,1e2,0.1,\"\\u00e9\"]}},{\"apiVersion\":\"v1\","
      "\"kind\":\"Namespace\",\"metadata\":{\"name\":\"j2\"}}]}\n");
  write_file("a.json", "[{\"apiVersion\":\"v1\",\"kind\":\"Service\","
                       "\"metadata\":{\"name\":\"j3\",\"namespace\":\"\"}}]\n");
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  amc_fs_loader_t fl = {L, "default"};
  amc_fs_source_opts_t o = {
      .root = root,
      .debounce_ms = 10,
      .parse = amc_fs_parse_loader,
      .parse_data = &fl,
      .sink = {on_upsert, on_remove, on_synced, on_error_all, on_batch},
  };
  amc_fs_direct = direct;
  batches = 0;
  amc_buf_reset(&errs);
  char err[256];
  amc_fs_source_t *s = amc_fs_source_start(&loop, &o, err, sizeof err);
  assert_non_null(s);
  amc_buf_printf(out, "scan: %s\nerrors: %s\n", take_events(),
                 errs.data ? errs.data : "");
  /* saves: a weight, a fixed and a broken document, a JSON item */
  amc_buf_t t = AMC_BUF_INIT;
  char src[600];
  snprintf(src, sizeof src, "%s/examples/bookinfo/30-routing.yaml",
           AMC_SOURCE_DIR);
  assert_int_equal(amc_buf_read_file(&t, src), 0);
  char *w = strstr(t.data, "weight: 90");
  assert_non_null(w);
  memcpy(w, "weight: 70", 10);
  atomic_write("30-routing.yaml", t.data);
  amc_buf_free(&t);
  atomic_write("bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: "
                           "{name: s4}\n---\nkind: Service\napiVersion: v1\n"
                           "metadata: {name: s5, namespace: y}\n");
  atomic_write("list.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
                            "status: {podIP: 10.0.0.2}\n---\n[\n");
  atomic_write("l.json",
               "{\"kind\":\"List\",\"items\":[{\"apiVersion\":\"v1\",\"kind\":"
               "\"Service\",\"metadata\":{\"name\":\"j1\"},\"spec\":{\"n\":2}},"
               "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{"
               "\"name\":\"j2\"},\"x\":1e400}]}\n");
  run_until_batch(1, 2000);
  run_for(50);
  amc_buf_printf(out, "saves: %s\nerrors: %s\n", take_events(),
                 errs.data ? errs.data : "");
  amc_fs_source_close(s);
  run_for(5);
  lua_close(L);
  amc_fs_direct = 1;
}

static void test_direct_path_same_as_loader(void **state) {
  (void)state;
  amc_buf_t with = AMC_BUF_INIT, without = AMC_BUF_INIT;
  direct_run(1, &with);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'/* '%s'/.[!.]*", root, root);
  assert_int_equal(system(cmd), 0);
  direct_run(0, &without);
  assert_string_equal(with.data, without.data);
  /* the comparison is of something */
  assert_non_null(strstr(with.data, "+VirtualService/bookinfo/bookinfo="));
  assert_non_null(strstr(with.data, "\"weight\":70"));
  assert_non_null(strstr(with.data, "+Service/y/s5="));
  assert_non_null(strstr(with.data, "duplicate key"));
  amc_buf_free(&with);
  amc_buf_free(&without);
  amc_buf_free(&errs);
}

/* Complete saves are read at once, whatever the quiet time: an atomic
 * save, a write and close, a new symlink and a new directory. (The
 * deadlines are upper bounds for "at once"; the quiet time is a minute.) */
static void test_settled_saves_are_read_at_once(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns a 1\n");
  amc_fs_source_t *s = start_quiet(60000);
  take_events();
  atomic_write("a.yaml", "Service ns a 2\n");
  run_until_batch(1, 5000);
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"2\"};");
  write_file("b.yaml", "Service ns b 1\n");
  run_until_batch(2, 5000);
  assert_string_equal(take_events(), "+Service/ns/b={\"v\":\"1\"};");
  write_file("b.yaml", "Service ns b 2\n");
  run_until_batch(3, 5000);
  assert_string_equal(take_events(), "+Service/ns/b={\"v\":\"2\"};");
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "cd %s && echo 'Service ns c 1' > .c.src && ln -s .c.src c.yaml",
           root);
  assert_int_equal(system(cmd), 0);
  run_until_batch(4, 5000);
  assert_string_equal(take_events(), "+Service/ns/c={\"v\":\"1\"};");
  snprintf(cmd, sizeof cmd,
           "mkdir %s/.d && echo 'Pod ns p 1' > %s/.d/p.yaml && mv %s/.d %s/d",
           root, root, root, root);
  assert_int_equal(system(cmd), 0);
  run_until_batch(5, 5000);
  assert_string_equal(take_events(), "+Pod/ns/p={\"v\":\"1\"};");
  assert_int_equal(amc_fs_source_count(s), 4);
  amc_fs_source_close(s);
}

/* A file open for writing is not read before its writer closes it: half
 * written, its first line alone would drop the second object. Settled
 * names next to it are read meanwhile, and a full rescan leaves it too. */
static void test_file_being_written_is_read_at_close(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns a 1\nService ns b 1\n");
  amc_fs_source_t *s = start_quiet(60000);
  take_events();
  char p[512];
  path_of(p, sizeof p, "a.yaml");
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs("Service ns a 2\n", f);
  fflush(f);
  path_of(p, sizeof p, "new.yaml"); /* a new file, half written too */
  FILE *g = fopen(p, "w");
  assert_non_null(g);
  fputs("Service ns n 1\n", g);
  fflush(g);
  run_for(300);
  assert_int_equal(batches, 0);
  assert_string_equal(take_events(), "");
  uint64_t listed = amc_fs_source_listings(s);
  amc_fs_source_rescan(s);
  assert_int_equal(amc_fs_source_listings(s), listed + 1);
  assert_string_equal(take_events(), "");
  write_file("c.yaml", "Service ns c 1\n");
  run_until_batch(1, 5000);
  assert_string_equal(take_events(), "+Service/ns/c={\"v\":\"1\"};");
  assert_int_equal(amc_fs_source_count(s), 3);
  /* done: read at once */
  fputs("Service ns b 2\n", f);
  fclose(f);
  run_until_batch(2, 5000);
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"2\"};"
                                     "+Service/ns/b={\"v\":\"2\"};");
  fputs("Service ns m 1\n", g);
  fclose(g);
  run_until_batch(3, 5000);
  assert_string_equal(take_events(), "+Service/ns/n={\"v\":\"1\"};"
                                     "+Service/ns/m={\"v\":\"1\"};");
  assert_int_equal(amc_fs_source_count(s), 5);
  assert_int_equal(errors, 0);
  amc_fs_source_close(s);
}

/* The fallback: a writer that keeps its file open is read once the file
 * has been quiet for debounce_ms; its close then changes nothing. */
static void test_file_kept_open_is_read_after_quiet_time(void **state) {
  (void)state;
  amc_fs_source_t *s = start_quiet(50);
  char p[512];
  path_of(p, sizeof p, "a.yaml");
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs("Service ns a 1\n", f);
  fflush(f);
  run_until_batch(1, 5000);
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"1\"};");
  fputs("Service ns b 1\n", f);
  fflush(f);
  run_until_batch(2, 5000);
  assert_string_equal(take_events(), "+Service/ns/b={\"v\":\"1\"};");
  fclose(f);
  run_for(100);
  assert_int_equal(batches, 2);
  assert_string_equal(take_events(), "");
  /* a file deleted for good is gone after the quiet time */
  unlink(p);
  run_until_batch(3, 5000);
  assert_string_equal(take_events(), "-Service/ns/a;-Service/ns/b;");
  amc_fs_source_close(s);
}

/* A file replaced by deleting it and writing a new one (git checkout
 * unlinks and creates each changed file; vim renames the original to its
 * backup name and writes a new file): its objects are not deleted in
 * between. A rename to another data file is read at once. */
static void test_file_deleted_and_written_again(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns a 1\nService ns b 1\n");
  amc_fs_source_t *s = start_quiet(60000);
  take_events();
  char p[512], q[512];
  path_of(p, sizeof p, "a.yaml");
  assert_int_equal(unlink(p), 0);
  run_for(200);
  amc_fs_source_rescan(s); /* not even a full rescan reads it */
  assert_int_equal(batches, 0);
  assert_string_equal(take_events(), "");
  write_file("a.yaml", "Service ns a 2\nService ns b 1\n");
  run_until_batch(1, 5000);
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"2\"};");
  /* vim */
  path_of(q, sizeof q, "a.yaml~");
  assert_int_equal(rename(p, q), 0);
  run_for(200);
  assert_int_equal(batches, 1);
  assert_string_equal(take_events(), "");
  write_file("a.yaml", "Service ns a 3\nService ns b 1\n");
  assert_int_equal(unlink(q), 0);
  run_until_batch(2, 5000);
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"3\"};");
  /* renamed to another data file: at once, nothing to tell */
  path_of(q, sizeof q, "b.yaml");
  assert_int_equal(rename(p, q), 0);
  run_until_batch(3, 5000);
  assert_string_equal(take_events(), "");
  assert_int_equal(amc_fs_source_count(s), 2);
  assert_int_equal(errors, 0);
  amc_fs_source_close(s);
}

/* Events lost to a full inotify queue: a full rescan finds what they
 * said (and counts as a watch restart). */
static void test_queue_overflow_rescans_everything(void **state) {
  (void)state;
  long max = 0;
  FILE *m = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
  if (m) {
    if (fscanf(m, "%ld", &max) != 1)
      max = 0;
    fclose(m);
  }
  if (max <= 0 || max > 200000)
    skip(); /* too costly to fill here */
  amc_fs_source_t *s = start_quiet(60000);
  uint64_t listed = amc_fs_source_listings(s);
  write_file(".x", "");
  write_file(".y", "");
  char x[512], y[512];
  path_of(x, sizeof x, ".x");
  path_of(y, sizeof y, ".y");
  /* alternate names: the kernel merges only an event equal to the last */
  for (long i = 0; i < max / 2 + 16; i++) {
    assert_int_equal(utimensat(AT_FDCWD, x, NULL, 0), 0);
    assert_int_equal(utimensat(AT_FDCWD, y, NULL, 0), 0);
  }
  write_file("a.yaml", "Service ns a 1\n"); /* its events are lost */
  run_until_batch(1, 5000);
  assert_string_equal(take_events(), "+Service/ns/a={\"v\":\"1\"};");
  assert_int_equal(restarts, 1);
  assert_true(amc_fs_source_listings(s) > listed);
  /* and events are read again */
  write_file("b.yaml", "Service ns b 1\n");
  run_until_batch(2, 5000);
  assert_string_equal(take_events(), "+Service/ns/b={\"v\":\"1\"};");
  amc_fs_source_close(s);
}

/* The root renamed away (its watch follows it) and a new directory made
 * in its place: the next rescan watches the path again. */
static void test_root_replaced_is_watched_again(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns a 1\n");
  amc_fs_source_t *s = start_quiet(60000);
  take_events();
  char old[300];
  snprintf(old, sizeof old, "%s.old", root);
  assert_int_equal(rename(root, old), 0);
  for (int i = 0; i < 500 && errors == 0; i++)
    run_for(10);
  assert_int_equal(errors, 1);
  assert_non_null(strstr(last_error, "cannot list"));
  assert_int_equal(mkdir(root, 0755), 0);
  write_file("b.yaml", "Service ns b 1\n");
  amc_fs_source_rescan(s);
  assert_int_equal(restarts, 1);
  assert_string_equal(take_events(),
                      "+Service/ns/b={\"v\":\"1\"};-Service/ns/a;");
  /* the new directory's events are seen */
  int had = batches;
  write_file("c.yaml", "Service ns c 1\n");
  run_until_batch(had + 1, 5000);
  assert_string_equal(take_events(), "+Service/ns/c={\"v\":\"1\"};");
  /* and the old one's are not */
  char p[600];
  snprintf(p, sizeof p, "%s/a.yaml", old);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fclose(f);
  run_for(100);
  assert_string_equal(take_events(), "");
  amc_fs_source_close(s);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", old);
  assert_int_equal(system(cmd), 0);
}

/* An object moved by two saves read apart (the file it moves to first):
 * the second definition is ignored at first, and takes over when the old
 * file drops the object, in the same batch (not a delete). */
static void test_object_moves_in_two_saves(void **state) {
  (void)state;
  write_file("a.yaml", "Service ns x 1\n");
  write_file("b.yaml", "Service ns y 1\n");
  amc_fs_source_t *s = start_quiet(60000);
  take_events();
  write_file("b.yaml", "Service ns y 1\nService ns x 2\n");
  run_until_batch(1, 5000);
  assert_int_equal(errors, 1);
  assert_non_null(strstr(last_error, "defined by another file"));
  assert_string_equal(take_events(), "");
  write_file("a.yaml", "Service ns z 1\n");
  run_until_batch(2, 5000);
  assert_string_equal(take_events(), "+Service/ns/z={\"v\":\"1\"};"
                                     "+Service/ns/x={\"v\":\"2\"};");
  assert_int_equal(amc_fs_source_count(s), 3);
  assert_int_equal(errors, 1);
  /* b owns x now */
  write_file("b.yaml", "");
  run_until_batch(3, 5000);
  const char *ev = take_events();
  assert_non_null(strstr(ev, "-Service/ns/x;"));
  assert_non_null(strstr(ev, "-Service/ns/y;"));
  assert_int_equal(amc_fs_source_count(s), 1);
  amc_fs_source_close(s);
}

static void test_bad_root(void **state) {
  (void)state;
  amc_fs_source_opts_t o = {.root = "/nonexistent/amc", .parse = parse};
  char err[256];
  assert_null(amc_fs_source_start(&loop, &o, err, sizeof err));
  assert_string_equal(err,
                      "fs source /nonexistent/amc: No such file or directory");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_initial_scan_and_filters, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_modify_delete_and_unchanged, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_named_events_and_configmap_swap,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_atomic_save_and_rename, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_object_moves_between_files, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_duplicate_definition, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_parse_error_keeps_objects, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_new_and_removed_subdirectories,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_named_events_stat_only_the_named_entry, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_named_entry_changes_type_and_dir_replaced, setup, teardown),
      cmocka_unit_test_setup_teardown(test_loader_parser, setup, teardown),
      cmocka_unit_test_setup_teardown(test_loader_spans, setup, teardown),
      cmocka_unit_test_setup_teardown(test_direct_path_same_as_loader, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_settled_saves_are_read_at_once,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_being_written_is_read_at_close,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_file_kept_open_is_read_after_quiet_time, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_overflow_rescans_everything,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_root_replaced_is_watched_again,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_object_moves_in_two_saves, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_file_deleted_and_written_again,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_root, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
