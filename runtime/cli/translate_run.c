/* translate_run.c - files -> store -> rules -> one JSON document. */
#include "cli/translate_run.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "json.h"
#include "loader.h"
#include "store.h"

const char *amc_translate_default_rules_dir(void) {
  struct stat st;
  if (stat("rules", &st) == 0 && S_ISDIR(st.st_mode))
    return "rules";
  return AMC_RULES_DIR;
}

/* CPU time of this thread: what "on one core" means when the machine is
 * shared (wall clock also counts the time other processes held the core). */
static double thread_cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct {
  amc_store_t *store;
  size_t count;
} load_ctx_t;

static int put_object(lua_State *L, const char *source, void *data, char *err,
                      size_t errlen) {
  load_ctx_t *c = data;
  lua_getfield(L, -1, "kind");
  lua_getfield(L, -2, "metadata");
  lua_getfield(L, -1, "namespace");
  lua_getfield(L, -2, "name");
  const char *kind = lua_tostring(L, -4);
  const char *ns = lua_tostring(L, -2);
  const char *name = lua_tostring(L, -1);
  const amc_store_obj_t *old = amc_store_get(c->store, kind, ns, name);
  if (old) {
    snprintf(err, errlen, "%s: duplicate %s %s%s%s (first defined at %s)",
             source, kind, ns ? ns : "", ns ? "/" : "", name,
             old->source ? old->source : "?");
    lua_pop(L, 4);
    return -1;
  }
  lua_pop(L, 4);
  char perr[512];
  if (amc_store_put_lua(c->store, L, -1, source, NULL, perr, sizeof perr) < 0) {
    snprintf(err, errlen, "%s: %s", source, perr);
    return -1;
  }
  c->count++;
  return 0;
}

typedef struct {
  const char *type; /* borrowed from the translation */
  const char *name;
  const char *json;
  size_t json_len;
} out_obj_t;

static int out_obj_cmp(const void *a, const void *b) {
  const out_obj_t *x = a, *y = b;
  int c = strcmp(x->type, y->type);
  return c ? c : strcmp(x->name, y->name);
}

typedef struct {
  const amc_diag_t *d;
  size_t order; /* gateway order, then the order the rules reported */
  int dup;
} out_diag_t;

static int opt_cmp(const char *a, const char *b) {
  return strcmp(a ? a : "", b ? b : "");
}

static int diag_cmp(const void *pa, const void *pb) {
  const amc_diag_t *a = ((const out_diag_t *)pa)->d;
  const amc_diag_t *b = ((const out_diag_t *)pb)->d;
  int c = strcmp(a->kind, b->kind);
  if (!c)
    c = opt_cmp(a->namespace_, b->namespace_);
  if (!c)
    c = strcmp(a->name, b->name);
  if (!c)
    c = strcmp(a->field, b->field);
  if (!c)
    c = strcmp(a->message, b->message);
  if (!c)
    c = (int)a->severity - (int)b->severity;
  if (!c) {
    size_t x = ((const out_diag_t *)pa)->order,
           y = ((const out_diag_t *)pb)->order;
    c = (x > y) - (x < y);
  }
  return c;
}

static int diag_order_cmp(const void *pa, const void *pb) {
  size_t x = ((const out_diag_t *)pa)->order,
         y = ((const out_diag_t *)pb)->order;
  return (x > y) - (x < y);
}

/* Diagnostics keep the order the rules reported them in (Gateways in
 * namespace/name order); one reported by several Gateways' translations
 * (a VirtualService bound to two Gateways) is kept once. Returns the new
 * count. */
static size_t dedup_diags(out_diag_t *d, size_t n) {
  if (n < 2)
    return n;
  qsort(d, n, sizeof *d, diag_cmp);
  for (size_t i = 1; i < n; i++) {
    out_diag_t a = d[i - 1], b = d[i];
    a.order = b.order = 0;
    d[i].dup = diag_cmp(&a, &b) == 0;
  }
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (!d[i].dup)
      d[w++] = d[i];
  }
  qsort(d, w, sizeof *d, diag_order_cmp);
  return w;
}

static void redact(lua_State *L, int obj) {
  static const char *const fields[] = {"key", "key_passphrase", NULL};
  for (int i = 0; fields[i]; i++) {
    if (lua_getfield(L, obj, fields[i]) != LUA_TNIL) {
      lua_pushliteral(L, "<sensitive>");
      lua_setfield(L, obj, fields[i]);
    }
    lua_pop(L, 1);
  }
}

/* Appends the canonical JSON of the diagnostics array (built in L). */
static int diags_json(lua_State *L, out_diag_t *diags, size_t n_diags,
                      amc_buf_t *out, amc_buf_t *err) {
  lua_createtable(L, (int)n_diags, 0);
  luaL_newmetatable(L, AMC_JSON_ARRAY_MT);
  lua_setmetatable(L, -2);
  for (size_t i = 0; i < n_diags; i++) {
    const amc_diag_t *d = diags[i].d;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, d->severity == AMC_DIAG_ERROR ? "error" : "warning");
    lua_setfield(L, -2, "severity");
    lua_createtable(L, 0, 3);
    lua_pushstring(L, d->kind);
    lua_setfield(L, -2, "kind");
    if (d->namespace_) {
      lua_pushstring(L, d->namespace_);
      lua_setfield(L, -2, "namespace");
    }
    lua_pushstring(L, d->name);
    lua_setfield(L, -2, "name");
    lua_setfield(L, -2, "object");
    lua_pushstring(L, d->field);
    lua_setfield(L, -2, "field");
    lua_pushstring(L, d->message);
    lua_setfield(L, -2, "message");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  char jerr[256];
  int rc = amc_json_encode(L, -1, out, jerr, sizeof jerr);
  lua_pop(L, 1);
  if (rc < 0)
    amc_buf_printf(err, "rendering diagnostics: %s\n", jerr);
  return rc;
}

/* Appends one object's canonical JSON, with private parts redacted. */
static int object_json(lua_State *L, const out_obj_t *o, int show_secrets,
                       amc_buf_t *out, amc_buf_t *err) {
  if (show_secrets || strcmp(o->type, "sslkeyandcertificate") != 0) {
    amc_buf_append(out, o->json, o->json_len);
    return 0;
  }
  char jerr[256];
  if (amc_json_decode(L, o->json, o->json_len, jerr, sizeof jerr) < 0) {
    amc_buf_printf(err, "%s %s: %s\n", o->type, o->name, jerr);
    return -1;
  }
  redact(L, lua_gettop(L));
  int rc = amc_json_encode(L, -1, out, jerr, sizeof jerr);
  lua_pop(L, 1);
  if (rc < 0)
    amc_buf_printf(err, "%s %s: %s\n", o->type, o->name, jerr);
  return rc;
}

/* The document, assembled as canonical text (keys in bytewise order: the
 * types, and "diagnostics" where it sorts), then indented. Objects are
 * already canonical, so they are copied, not re-encoded. */
static int render(lua_State *L, out_obj_t *objs, size_t n_objs,
                  out_diag_t *diags, size_t n_diags, int show_secrets,
                  amc_buf_t *out, amc_buf_t *err) {
  amc_buf_t doc = AMC_BUF_INIT;
  int rc = -1, diags_done = 0, first = 1;
  amc_buf_putc(&doc, '{');
  for (size_t i = 0; i <= n_objs;) {
    const char *type = i < n_objs ? objs[i].type : NULL;
    if (!diags_done && (!type || strcmp("diagnostics", type) < 0)) {
      amc_buf_puts(&doc, first ? "\"diagnostics\":" : ",\"diagnostics\":");
      if (diags_json(L, diags, n_diags, &doc, err) < 0)
        goto done;
      diags_done = 1;
      first = 0;
      continue;
    }
    if (!type)
      break;
    if (!first)
      amc_buf_putc(&doc, ',');
    first = 0;
    /* Types are AVI REST names (letters); quote them as they are. */
    amc_buf_printf(&doc, "\"%s\":[", type);
    size_t j = i;
    for (; j < n_objs && strcmp(objs[j].type, type) == 0; j++) {
      if (j > i)
        amc_buf_putc(&doc, ',');
      if (object_json(L, &objs[j], show_secrets, &doc, err) < 0)
        goto done;
    }
    amc_buf_putc(&doc, ']');
    i = j;
  }
  amc_buf_putc(&doc, '}');
  if (amc_json_pretty_canonical(doc.data, doc.len, out) < 0) {
    amc_buf_puts(err, "rendering the output: unbalanced JSON\n");
    goto done;
  }
  rc = 0;
done:
  amc_buf_free(&doc);
  return rc;
}

int amc_translate_run(char *const *paths, size_t n_paths,
                      const amc_translate_run_opts_t *o, amc_buf_t *out,
                      amc_buf_t *err) {
  int rc = AMC_EXIT_USAGE;
  double t0 = now_ms();
  amc_store_t *store = amc_store_new();
  lua_State *L = luaL_newstate();
  amc_rules_engine_t *eng = NULL;
  amc_translation_t **ts = NULL;
  out_obj_t *objs = NULL;
  out_diag_t *diags = NULL;
  size_t n_ts = 0;
  if (!store || !L) {
    amc_buf_puts(err, "out of memory\n");
    goto done;
  }
  load_ctx_t lc = {store, 0};
  amc_loader_opts_t lopts = {.default_namespace = "default"};
  char lerr[1024];
  for (size_t i = 0; i < n_paths; i++) {
    if (amc_loader_load_path(L, paths[i], &lopts, put_object, &lc, lerr,
                             sizeof lerr) < 0) {
      amc_buf_printf(err, "%s\n", lerr);
      goto done;
    }
  }
  double t1 = now_ms();

  rc = AMC_EXIT_FAIL;
  eng = amc_rules_engine_new(store, o->settings, o->rules_opts);
  if (!eng) {
    amc_buf_puts(err, "out of memory\n");
    goto done;
  }
  const char *dir =
      o->rules_dir ? o->rules_dir : amc_translate_default_rules_dir();
  char rerr[4096];
  if (amc_rules_engine_load(eng, dir, rerr, sizeof rerr) < 0) {
    amc_buf_printf(err, "%s\n", rerr);
    goto done;
  }
  double t2 = now_ms(), c2 = thread_cpu_ms();

  const amc_store_obj_t *const *gws;
  size_t n_gw = amc_store_list(store, "Gateway", NULL, &gws);
  /* The list array is the store's; translations do not modify the store,
   * so it stays valid. */
  ts = calloc(n_gw ? n_gw : 1, sizeof *ts);
  size_t n_objs = 0, n_diags = 0, failed = 0;
  for (size_t i = 0; i < n_gw; i++) {
    amc_translation_t *t = amc_rules_engine_translate(
        eng, "Gateway", gws[i]->namespace_, gws[i]->name);
    if (!t) {
      amc_buf_puts(err, "out of memory\n");
      goto done;
    }
    ts[n_ts++] = t;
    if (t->error) {
      amc_buf_printf(err, "%s\n", t->error);
      failed++;
      continue;
    }
    n_objs += t->n_objects;
    n_diags += t->n_diags;
  }
  if (failed)
    goto done;
  double t3 = now_ms(), c3 = thread_cpu_ms();

  objs = calloc(n_objs ? n_objs : 1, sizeof *objs);
  diags = calloc(n_diags ? n_diags : 1, sizeof *diags);
  if (!objs || !diags)
    abort();
  size_t k = 0, m = 0;
  for (size_t i = 0; i < n_ts; i++) {
    for (size_t j = 0; j < ts[i]->n_objects; j++) {
      amc_avi_object_t *a = &ts[i]->objects[j];
      objs[k++] = (out_obj_t){a->type, a->name, a->json, a->json_len};
    }
    for (size_t j = 0; j < ts[i]->n_diags; j++) {
      diags[m].d = &ts[i]->diags[j];
      diags[m].order = m;
      m++;
    }
  }
  qsort(objs, n_objs, sizeof *objs, out_obj_cmp);
  n_diags = dedup_diags(diags, n_diags);
  for (size_t i = 1; i < n_objs; i++) {
    if (out_obj_cmp(&objs[i - 1], &objs[i]) == 0) {
      amc_buf_printf(err,
                     "two Gateways produce %s \"%s\" (AVI names must be "
                     "unique)\n",
                     objs[i].type, objs[i].name);
      goto done;
    }
  }
  if (render(L, objs, n_objs, diags, n_diags, o->show_secrets, out, err) < 0)
    goto done;
  rc = AMC_EXIT_OK;
  if (o->stats) {
    double t4 = now_ms();
    fprintf(stderr,
            "amc translate: %zu objects loaded in %.1f ms, rules loaded in "
            "%.1f ms, %zu gateways translated into %zu AVI objects in %.1f "
            "ms, output rendered in %.1f ms; translating took %.1f ms CPU\n",
            lc.count, t1 - t0, t2 - t1, n_gw, n_objs, t3 - t2, t4 - t3,
            c3 - c2);
  }
done:
  for (size_t i = 0; i < n_ts; i++)
    amc_translation_free(ts[i]);
  free(ts);
  free(objs);
  free(diags);
  amc_rules_engine_free(eng);
  if (L)
    lua_close(L);
  amc_store_free(store);
  return rc;
}
