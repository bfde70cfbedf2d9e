/* loader.c - Kubernetes objects from YAML/JSON files into Lua tables.
 *
 * YAML is read with libyaml's event API and turned straight into Lua values
 * (no libyaml document tree). The whole parse of one buffer runs under
 * lua_pcall; the libyaml parser and the current event live in the context
 * struct so that the caller releases them whatever happened inside. */
#define _GNU_SOURCE /* memmem */
#include "loader.h"
#include "canon.h"
#include "yaml_fast.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "json.h"
#include "util/buf.h"

typedef struct {
  const char *name;
  const amc_loader_opts_t *opts;
  amc_loader_fn fn;
  void *data;
  int value_only; /* amc_loader_parse_yaml_value */
  /* YAML state */
  yaml_parser_t parser;
  int parser_live;
  yaml_event_t ev;
  int ev_live;
  int depth;
  long nodes;       /* in the current document, aliases expanded */
  int anchors;      /* stack index: anchor name -> value */
  int anchor_sizes; /* stack index: anchor name -> node count */
  int array_mt;     /* stack index */
  int doc;          /* 1-based document number */
  size_t doc_line;
  size_t line_base; /* a span's first line in its file (0-based) */
  /* result */
  int failed;
  char *err;
  size_t errlen;
} ctx_t;

static int fail(ctx_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(ctx_t *c, const char *fmt, ...) {
  if (c->failed)
    return -1;
  c->failed = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, c->errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* "name:L:C: " prefix for a libyaml mark (0-based). */
#define MARK_FMT        "%s:%zu:%zu: "
#define MARK_ARGS(c, m) (c)->name, (c)->line_base + (m).line + 1, (m).column + 1

/* ------------------------------------------------------------------------ */
/* Object checks, shared by YAML and JSON                                    */

static const char *const cluster_scoped[] = {
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "IngressClass",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "APIService",
    NULL,
};

int amc_loader_cluster_scoped(const char *kind) {
  for (int i = 0; cluster_scoped[i]; i++) {
    if (strcmp(kind, cluster_scoped[i]) == 0)
      return 1;
  }
  return 0;
}

static int is_array(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx))
    return 0;
  luaL_getmetatable(L, AMC_JSON_ARRAY_MT);
  int r = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return r;
}

static const char *value_kind(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TTABLE:
    return is_array(L, idx) ? "a sequence" : "a mapping";
  case LUA_TSTRING:
    return "a string";
  case LUA_TNUMBER:
    return "a number";
  case LUA_TBOOLEAN:
    return "a boolean";
  case LUA_TLIGHTUSERDATA:
    return "null";
  default:
    return "a value";
  }
}

/* Checks the object on top of the stack; applies the default namespace.
 * `where` is the error prefix ("file:L:C: document N" or similar). */
static int check_object(lua_State *L, ctx_t *c, const char *where) {
  int obj = lua_gettop(L);
  if (lua_type(L, obj) != LUA_TTABLE || is_array(L, obj))
    return fail(c, "%s: expected a Kubernetes object (a mapping), found %s",
                where, value_kind(L, obj));
  static const char *const required[] = {"apiVersion", "kind"};
  for (int i = 0; i < 2; i++) {
    int t = lua_getfield(L, obj, required[i]);
    size_t n = 0;
    if (t == LUA_TSTRING)
      lua_tolstring(L, -1, &n);
    lua_pop(L, 1);
    if (t == LUA_TNIL)
      return fail(c, "%s: object has no %s", where, required[i]);
    if (t != LUA_TSTRING || n == 0)
      return fail(c, "%s: %s must be a non-empty string", where, required[i]);
  }
  lua_getfield(L, obj, "kind");
  const char *kind = lua_tostring(L, -1);
  int t = lua_getfield(L, obj, "metadata");
  if (t == LUA_TNIL)
    return fail(c, "%s: %s has no metadata", where, kind);
  if (t != LUA_TTABLE || is_array(L, -1))
    return fail(c, "%s: %s: metadata must be a mapping", where, kind);
  int md = lua_gettop(L);
  t = lua_getfield(L, md, "name");
  size_t n = 0;
  if (t == LUA_TSTRING)
    lua_tolstring(L, -1, &n);
  if (t == LUA_TNIL)
    return fail(c, "%s: %s has no metadata.name", where, kind);
  if (t != LUA_TSTRING || n == 0)
    return fail(c, "%s: %s: metadata.name must be a non-empty string", where,
                kind);
  lua_pop(L, 1);
  t = lua_getfield(L, md, "namespace");
  if (t != LUA_TNIL && t != LUA_TSTRING)
    return fail(c, "%s: %s: metadata.namespace must be a string", where, kind);
  int no_ns = t == LUA_TNIL || lua_rawlen(L, -1) == 0; /* "" as kubectl */
  lua_pop(L, 1);
  if (no_ns && c->opts && c->opts->default_namespace) {
    if (!amc_loader_cluster_scoped(kind)) {
      lua_pushstring(L, c->opts->default_namespace);
      lua_setfield(L, md, "namespace");
    }
  }
  lua_settop(L, obj);
  return 0;
}

/* Checks and hands over the object on top of the stack (popping it). */
static int emit(lua_State *L, ctx_t *c, const char *where, const char *source) {
  if (check_object(L, c, where) < 0)
    return -1;
  int top = lua_gettop(L);
  char cberr[512] = "";
  int rc = c->fn(L, source, c->data, cberr, sizeof cberr);
  lua_settop(L, top - 1);
  if (rc < 0)
    return fail(c, "%s", cberr[0] ? cberr : "loading stopped");
  return 0;
}

/* Value on top: one object, a `kind: List`, or (JSON) an array of objects.
 * Pops it. */
static int emit_document(lua_State *L, ctx_t *c, const char *where,
                         const char *source, int allow_array) {
  int v = lua_gettop(L);
  int list = 0;
  if (lua_type(L, v) == LUA_TTABLE && !is_array(L, v)) {
    lua_getfield(L, v, "kind");
    list = lua_type(L, -1) == LUA_TSTRING &&
           strcmp(lua_tostring(L, -1), "List") == 0;
    lua_pop(L, 1);
    if (list) {
      if (lua_getfield(L, v, "items") != LUA_TTABLE || !is_array(L, -1)) {
        if (lua_type(L, -1) == LUA_TNIL ||
            (lua_type(L, -1) == LUA_TTABLE && lua_rawlen(L, -1) == 0)) {
          lua_settop(L, v - 1);
          return 0; /* an empty List */
        }
        return fail(c, "%s: List: items must be a sequence", where);
      }
      lua_replace(L, v);
    }
  } else if (allow_array && lua_type(L, v) == LUA_TTABLE) {
    list = 1;
  }
  if (!list)
    return emit(L, c, where, source) < 0 ? -1 : 0;
  lua_Integer n = (lua_Integer)lua_rawlen(L, v);
  for (lua_Integer i = 1; i <= n; i++) {
    char w[600], s[600];
    snprintf(w, sizeof w, "%s: item %lld", where, (long long)i);
    snprintf(s, sizeof s, "%s[%lld]", source, (long long)i);
    lua_rawgeti(L, v, i);
    if (emit(L, c, w, s) < 0)
      return -1;
  }
  lua_settop(L, v - 1);
  return 0;
}

int amc_loader_fast_yaml = 1;

/* ------------------------------------------------------------------------ */
/* YAML events -> Lua values (plain scalars: amc_yaml_push_plain) */

static int next_event(ctx_t *c) {
  if (c->ev_live) {
    yaml_event_delete(&c->ev);
    c->ev_live = 0;
  }
  if (!yaml_parser_parse(&c->parser, &c->ev)) {
    yaml_parser_t *p = &c->parser;
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->context)
      return fail(c, MARK_FMT "%s (%s at line %zu)",
                  MARK_ARGS(c, p->problem_mark), problem, p->context,
                  c->line_base + p->context_mark.line + 1);
    return fail(c, MARK_FMT "%s", MARK_ARGS(c, p->problem_mark), problem);
  }
  c->ev_live = 1;
  return 0;
}

static int add_nodes(ctx_t *c, long n, yaml_mark_t m) {
  c->nodes += n;
  if (c->nodes > AMC_LOADER_MAX_NODES)
    return fail(c,
                MARK_FMT "document %d expands to more than %d nodes "
                         "(too many aliases?)",
                MARK_ARGS(c, m), c->doc, AMC_LOADER_MAX_NODES);
  return 0;
}

static int parse_node(lua_State *L, ctx_t *c, long *count);

static void remember_anchor(lua_State *L, ctx_t *c, const char *anchor,
                            long count) {
  if (!anchor)
    return;
  lua_pushvalue(L, -1);
  lua_setfield(L, c->anchors, anchor);
  lua_pushinteger(L, count);
  lua_setfield(L, c->anchor_sizes, anchor);
}

static int parse_mapping(lua_State *L, ctx_t *c, long *count) {
  yaml_mark_t start = c->ev.start_mark;
  char *anchor = c->ev.data.mapping_start.anchor
                     ? strdup((const char *)c->ev.data.mapping_start.anchor)
                     : NULL;
  long total = 1;
  int rc = -1;
  lua_createtable(L, 0, 4);
  int t = lua_gettop(L);
  for (;;) {
    if (next_event(c) < 0)
      goto done;
    if (c->ev.type == YAML_MAPPING_END_EVENT)
      break;
    yaml_mark_t km = c->ev.start_mark;
    if (c->ev.type != YAML_SCALAR_EVENT) {
      fail(c, MARK_FMT "mapping keys must be scalars (strings)",
           MARK_ARGS(c, km));
      goto done;
    }
    const char *k = (const char *)c->ev.data.scalar.value;
    size_t kn = c->ev.data.scalar.length;
    if (c->ev.data.scalar.plain_implicit && kn == 2 &&
        memcmp(k, "<<", 2) == 0) {
      fail(c, MARK_FMT "YAML merge keys (<<) are not supported",
           MARK_ARGS(c, km));
      goto done;
    }
    lua_pushlstring(L, k, kn);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) != LUA_TNIL) {
      fail(c, MARK_FMT "duplicate key \"%.80s\"", MARK_ARGS(c, km),
           lua_tostring(L, -2));
      goto done;
    }
    lua_pop(L, 1);
    if (add_nodes(c, 1, km) < 0)
      goto done;
    total++;
    if (next_event(c) < 0)
      goto done;
    long n = 0;
    if (parse_node(L, c, &n) < 0)
      goto done;
    total += n;
    lua_rawset(L, t);
  }
  (void)start;
  remember_anchor(L, c, anchor, total);
  *count = total;
  rc = 0;
done:
  free(anchor);
  return rc;
}

static int parse_sequence(lua_State *L, ctx_t *c, long *count) {
  char *anchor = c->ev.data.sequence_start.anchor
                     ? strdup((const char *)c->ev.data.sequence_start.anchor)
                     : NULL;
  long total = 1;
  int rc = -1;
  lua_createtable(L, 0, 0);
  lua_pushvalue(L, c->array_mt);
  lua_setmetatable(L, -2);
  int t = lua_gettop(L);
  lua_Integer i = 1;
  for (;;) {
    if (next_event(c) < 0)
      goto done;
    if (c->ev.type == YAML_SEQUENCE_END_EVENT)
      break;
    long n = 0;
    if (parse_node(L, c, &n) < 0)
      goto done;
    total += n;
    lua_rawseti(L, t, i++);
  }
  remember_anchor(L, c, anchor, total);
  *count = total;
  rc = 0;
done:
  free(anchor);
  return rc;
}

/* The current event starts a node: pushes its value. *count receives the
 * number of nodes it stands for (aliases expanded). */
static int parse_node(lua_State *L, ctx_t *c, long *count) {
  yaml_mark_t m = c->ev.start_mark;
  if (!lua_checkstack(L, 6))
    return fail(c, MARK_FMT "Lua stack exhausted", MARK_ARGS(c, m));
  switch (c->ev.type) {
  case YAML_SCALAR_EVENT: {
    if (add_nodes(c, 1, m) < 0)
      return -1;
    const char *v = (const char *)c->ev.data.scalar.value;
    size_t n = c->ev.data.scalar.length;
    const char *tag = (const char *)c->ev.data.scalar.tag;
    int force_str = tag && strcmp(tag, YAML_STR_TAG) == 0;
    if (c->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !force_str)
      amc_yaml_push_plain(L, v, n);
    else
      lua_pushlstring(L, v, n);
    if (c->ev.data.scalar.anchor)
      remember_anchor(L, c, (const char *)c->ev.data.scalar.anchor, 1);
    *count = 1;
    return 0;
  }
  case YAML_ALIAS_EVENT: {
    const char *a = (const char *)c->ev.data.alias.anchor;
    if (lua_getfield(L, c->anchors, a) == LUA_TNIL)
      return fail(c, MARK_FMT "unknown alias *%s", MARK_ARGS(c, m), a);
    lua_getfield(L, c->anchor_sizes, a);
    long n = (long)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (add_nodes(c, n, m) < 0)
      return -1;
    *count = n;
    return 0;
  }
  case YAML_MAPPING_START_EVENT:
  case YAML_SEQUENCE_START_EVENT: {
    if (++c->depth > AMC_JSON_MAX_DEPTH)
      return fail(c, MARK_FMT "nesting deeper than %d", MARK_ARGS(c, m),
                  AMC_JSON_MAX_DEPTH);
    if (add_nodes(c, 1, m) < 0)
      return -1;
    int rc = c->ev.type == YAML_MAPPING_START_EVENT
                 ? parse_mapping(L, c, count)
                 : parse_sequence(L, c, count);
    c->depth--;
    return rc;
  }
  default:
    return fail(c, MARK_FMT "unexpected YAML event", MARK_ARGS(c, m));
  }
}

/* The document's value on top: hands it over (popping it). Its line and
 * column (0-based, in the text parsed) are where its content starts, after
 * `---` and comments. */
static int document_done(lua_State *L, ctx_t *c, size_t line, size_t column) {
  char where[600], source[600];
  snprintf(where, sizeof where, "%s:%zu:%zu: document %d", c->name,
           c->line_base + line + 1, column + 1, c->doc);
  c->doc_line = c->line_base + line + 1;
  snprintf(source, sizeof source, "%s:%zu", c->name, c->doc_line);
  return emit_document(L, c, where, source, 0);
}

/* Runs under pcall: [ctx_t*, buffer lightuserdata, length]. */
static int yaml_protected(lua_State *L) {
  ctx_t *c = lua_touserdata(L, 1);
  const unsigned char *buf = lua_touserdata(L, 2);
  size_t len = (size_t)lua_tointeger(L, 3);
  lua_settop(L, 0);
  /* 1: array metatable, 2: result slot (value_only) */
  luaL_newmetatable(L, AMC_JSON_ARRAY_MT);
  c->array_mt = 1;
  lua_pushnil(L);
  /* One document in the subset manifests use: no libyaml (yaml_fast.h). */
  size_t fl, fc;
  if (!c->value_only && amc_loader_fast_yaml &&
      amc_yaml_fast_document(L, (const char *)buf, len, c->array_mt, &fl,
                             &fc)) {
    c->doc++;
    document_done(L, c, fl, fc);
    return 0;
  }
  if (!yaml_parser_initialize(&c->parser))
    return fail(c, "%s: cannot initialise the YAML parser", c->name), 0;
  c->parser_live = 1;
  yaml_parser_set_input_string(&c->parser, buf, len);
  if (next_event(c) < 0) /* STREAM_START */
    return 0;
  int values = 0;
  for (;;) {
    if (next_event(c) < 0)
      return 0;
    if (c->ev.type == YAML_STREAM_END_EVENT)
      break;
    if (c->ev.type != YAML_DOCUMENT_START_EVENT)
      return fail(c, MARK_FMT "unexpected YAML event",
                  MARK_ARGS(c, c->ev.start_mark)),
             0;
    c->doc++;
    yaml_mark_t dm = c->ev.start_mark;
    c->nodes = 0;
    c->depth = 0;
    lua_settop(L, 2);
    lua_newtable(L); /* 3: anchors (per document) */
    lua_newtable(L); /* 4: anchor sizes */
    c->anchors = 3;
    c->anchor_sizes = 4;
    if (next_event(c) < 0)
      return 0;
    /* Objects are located where their content starts (after `---` and
     * comments). */
    dm = c->ev.start_mark;
    long n = 0;
    if (parse_node(L, c, &n) < 0)
      return 0;
    if (next_event(c) < 0) /* DOCUMENT_END */
      return 0;
    int v = lua_gettop(L);
    if (c->value_only) {
      if (++values > 1)
        return fail(c, MARK_FMT "expected a single YAML document",
                    MARK_ARGS(c, dm)),
               0;
      lua_replace(L, 2); /* the result slot */
      continue;
    }
    if (lua_type(L, v) == LUA_TLIGHTUSERDATA) {
      lua_pop(L, 1); /* an empty document */
      continue;
    }
    if (document_done(L, c, dm.line, dm.column) < 0)
      return 0;
  }
  if (c->value_only) {
    if (values == 0)
      lua_pushlightuserdata(L, AMC_JSON_NULL);
    else
      lua_pushvalue(L, 2);
    return 1;
  }
  return 0;
}

static int load_yaml(lua_State *L, ctx_t *c, const char *buf, size_t len,
                     int nresults) {
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8))
    return fail(c, "%s: Lua stack exhausted", c->name);
  lua_pushcfunction(L, yaml_protected);
  lua_pushlightuserdata(L, c);
  lua_pushlightuserdata(L, (void *)buf);
  lua_pushinteger(L, (lua_Integer)len);
  int status = lua_pcall(L, 3, nresults, 0);
  if (c->ev_live)
    yaml_event_delete(&c->ev);
  c->ev_live = 0;
  if (c->parser_live)
    yaml_parser_delete(&c->parser);
  c->parser_live = 0;
  if (status != LUA_OK) {
    if (!c->failed)
      fail(c, "%s: %s", c->name,
           status == LUA_ERRMEM ? "out of memory"
                                : (lua_isstring(L, -1) ? lua_tostring(L, -1)
                                                       : "internal error"));
    lua_settop(L, top);
    return -1;
  }
  if (c->failed) {
    lua_settop(L, top);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* JSON files                                                                */

static int json_protected(lua_State *L) {
  ctx_t *c = lua_touserdata(L, 1);
  lua_settop(L, 2); /* the decoded value */
  char where[600], source[600];
  snprintf(where, sizeof where, "%s", c->name);
  snprintf(source, sizeof source, "%s:1", c->name);
  emit_document(L, c, where, source, 1);
  return 0;
}

static int load_json(lua_State *L, ctx_t *c, const char *buf, size_t len) {
  int top = lua_gettop(L);
  char jerr[256];
  if (!lua_checkstack(L, 8))
    return fail(c, "%s: Lua stack exhausted", c->name);
  lua_pushcfunction(L, json_protected);
  lua_pushlightuserdata(L, c);
  if (amc_json_decode(L, buf, len, jerr, sizeof jerr) < 0) {
    lua_settop(L, top);
    return fail(c, "%s: %s", c->name, jerr);
  }
  int status = lua_pcall(L, 2, 0, 0);
  if (status != LUA_OK) {
    if (!c->failed)
      fail(c, "%s: %s", c->name,
           status == LUA_ERRMEM ? "out of memory" : "internal error");
  }
  lua_settop(L, top);
  return c->failed ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Files and directories                                                     */

static int has_suffix(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && strcmp(s + n - m, suf) == 0;
}

static int load_file(lua_State *L, ctx_t *c, const char *path) {
  amc_buf_t b = AMC_BUF_INIT;
  int rc;
  if (strcmp(path, "-") == 0) {
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, stdin)) > 0)
      amc_buf_append(&b, tmp, n);
    if (ferror(stdin)) {
      amc_buf_free(&b);
      return fail(c, "-: cannot read standard input: %s", strerror(errno));
    }
    c->name = "<stdin>";
  } else {
    rc = amc_buf_read_file(&b, path);
    if (rc < 0) {
      amc_buf_free(&b);
      return fail(c, "%s: %s", path, strerror(-rc));
    }
    c->name = path;
  }
  c->doc = 0;
  if (has_suffix(path, ".json"))
    rc = load_json(L, c, b.data ? b.data : "", b.len);
  else
    rc = load_yaml(L, c, b.data ? b.data : "", b.len, 0);
  amc_buf_free(&b);
  return rc;
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_dir(lua_State *L, ctx_t *c, const char *path, int depth) {
  if (depth > 32)
    return fail(c, "%s: directories nested too deeply (symlink loop?)", path);
  DIR *d = opendir(path);
  if (!d)
    return fail(c, "%s: %s", path, strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      char **nn = realloc(names, cap * sizeof *nn);
      if (!nn)
        abort();
      names = nn;
    }
    names[n] = strdup(de->d_name);
    if (!names[n])
      abort();
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof *names, name_cmp);
  int rc = 0;
  amc_buf_t p = AMC_BUF_INIT;
  for (size_t i = 0; i < n && rc == 0; i++) {
    amc_buf_reset(&p);
    amc_buf_printf(&p, "%s%s%s", path, has_suffix(path, "/") ? "" : "/",
                   names[i]);
    struct stat st;
    if (stat(p.data, &st) != 0) {
      rc = fail(c, "%s: %s", p.data, strerror(errno));
      break;
    }
    if (S_ISDIR(st.st_mode)) {
      rc = load_dir(L, c, p.data, depth + 1);
    } else if (S_ISREG(st.st_mode) &&
               (has_suffix(names[i], ".yaml") || has_suffix(names[i], ".yml") ||
                has_suffix(names[i], ".json"))) {
      rc = load_file(L, c, p.data);
    }
  }
  amc_buf_free(&p);
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}

/* A context for one public call: who gets the objects, where errors go. */
static ctx_t ctx_for(const char *name, const amc_loader_opts_t *opts,
                     amc_loader_fn fn, void *data, char *err, size_t errlen) {
  ctx_t c = {0};
  c.name = name;
  c.opts = opts;
  c.fn = fn;
  c.data = data;
  c.err = err;
  c.errlen = errlen;
  return c;
}

int amc_loader_load_path(lua_State *L, const char *path,
                         const amc_loader_opts_t *opts, amc_loader_fn fn,
                         void *data, char *err, size_t errlen) {
  ctx_t c = ctx_for(NULL, opts, fn, data, err, errlen);
  if (strcmp(path, "-") == 0)
    return load_file(L, &c, path);
  struct stat st;
  if (stat(path, &st) != 0)
    return fail(&c, "%s: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode))
    return load_dir(L, &c, path, 0);
  return load_file(L, &c, path);
}

int amc_loader_load_buffer(lua_State *L, const char *name, const char *buf,
                           size_t len, int json, const amc_loader_opts_t *opts,
                           amc_loader_fn fn, void *data, char *err,
                           size_t errlen) {
  ctx_t c = ctx_for(name, opts, fn, data, err, errlen);
  return json ? load_json(L, &c, buf, len) : load_yaml(L, &c, buf, len, 0);
}

/* ------------------------------------------------------------------------ */
/* Spans                                                                     */

typedef struct {
  const char *p, *end;
  const char *buf;
} scan_t;

static void scan_ws(scan_t *s) {
  while (s->p < s->end &&
         (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

/* What the scanners stop at (a large file is split on every route change:
 * one table look-up per byte, not a chain of compares). */
enum { SC_QUOTE = 1, SC_ESCAPE = 2, SC_OPEN = 4, SC_CLOSE = 8 };
static const unsigned char scan_cls[256] = {
    ['"'] = SC_QUOTE, ['\\'] = SC_ESCAPE, ['{'] = SC_OPEN,
    ['['] = SC_OPEN,  ['}'] = SC_CLOSE,   [']'] = SC_CLOSE};

/* Skips a string (at its opening quote); -1 if unterminated. */
static int scan_string(scan_t *s) {
  const char *p = s->p + 1, *end = s->end;
  for (;;) {
    while (p < end && !(scan_cls[(unsigned char)*p] & (SC_QUOTE | SC_ESCAPE)))
      p++;
    if (p >= end)
      break;
    if (*p == '"') {
      s->p = p + 1;
      return 0;
    }
    p += 2; /* the escape and what it escapes */
  }
  s->p = end;
  return -1;
}

/* Skips the object or array at s->p (balanced brackets, strings); -1 when
 * unbalanced, or nested deeper than an item may be inside its file (in an
 * array, maybe in a List's: the file is loaded whole). A backslash
 * outside strings is just a byte (the decoder's error). A large file is
 * cut on every route change: with SSE2, a block of sixteen bytes without
 * a backslash is walked by the bit mask of its brackets outside strings
 * (one step per bracket, not per byte); other blocks byte by byte. */
static int scan_container(scan_t *s) {
  const char *p = s->p, *end = s->end;
  int depth = 0, in_str = 0;
  while (p < end) {
    const char *lim = end;
#ifdef __SSE2__
    if (end - p >= 16) {
      __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
      __m128i l = _mm_or_si128(x, _mm_set1_epi8(0x20)); /* [ { and ] } */
      unsigned q =
          (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')));
      unsigned o =
          (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(l, _mm_set1_epi8('{')));
      unsigned c =
          (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(l, _mm_set1_epi8('}')));
      if (!_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('\\')))) {
        /* bit i of `in`: inside a string after byte i (a prefix XOR of
         * the quotes, from the state the block starts in); only the
         * brackets outside strings are walked */
        unsigned in = q;
        in ^= in << 1;
        in ^= in << 2;
        in ^= in << 4;
        in ^= in << 8;
        in = (in ^ (in_str ? 0xFFFFu : 0)) & 0xFFFFu;
        for (unsigned m = (o | c) & ~in; m; m &= m - 1) {
          unsigned bit = m & (0u - m);
          if (o & bit) {
            if (++depth > AMC_JSON_MAX_DEPTH - 2)
              return -1;
          } else if (--depth == 0) {
            s->p = p + __builtin_ctz(bit) + 1;
            return 0;
          }
        }
        in_str = (int)(in >> 15);
        p += 16;
        continue;
      }
      lim = p + 16;
    }
#endif
    for (; p < lim; p++) {
      unsigned char ch = (unsigned char)*p;
      if (in_str) {
        if (ch == '\\')
          p++; /* (may step past lim: the escaped byte is taken) */
        else if (ch == '"')
          in_str = 0;
      } else if (scan_cls[ch] & SC_QUOTE) {
        in_str = 1;
      } else if (scan_cls[ch] & SC_OPEN) {
        if (++depth > AMC_JSON_MAX_DEPTH - 2)
          return -1;
      } else if ((scan_cls[ch] & SC_CLOSE) && --depth == 0) {
        s->p = (const char *)p + 1;
        return 0;
      }
    }
  }
  s->p = end;
  return -1;
}

/* Skips one value (balanced brackets, strings); -1 on what is not one. */
static int scan_value(scan_t *s) {
  scan_ws(s);
  if (s->p >= s->end)
    return -1;
  if (*s->p == '"')
    return scan_string(s);
  if (*s->p == '{' || *s->p == '[')
    return scan_container(s);
  const char *start = s->p;
  while (s->p < s->end && !strchr(",}] \t\r\n", *s->p))
    s->p++;
  return s->p > start ? 0 : -1;
}

static size_t count_lines(const char *from, const char *to) {
  size_t n = 0;
  while (from < to && (from = memchr(from, '\n', (size_t)(to - from)))) {
    n++;
    from++;
  }
  return n;
}

static void span_add(amc_loader_span_t **v, long *n, long *cap,
                     const char *text, size_t len, size_t line, long index) {
  if (*n == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    *v = realloc(*v, (size_t)*cap * sizeof **v);
    if (!*v)
      abort();
  }
  (*v)[(*n)++] = (amc_loader_span_t){text, len, line, index};
}

/* The items of the array at s->p. */
static long split_array(scan_t *s, amc_loader_span_t **out) {
  long n = 0, cap = 0;
  s->p++; /* [ */
  scan_ws(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    return 0;
  }
  const char *line_at = s->buf;
  size_t line = 0;
  for (;;) {
    scan_ws(s);
    const char *start = s->p;
    if (scan_value(s) < 0)
      goto fail;
    line += count_lines(line_at, start);
    line_at = start;
    span_add(out, &n, &cap, start, (size_t)(s->p - start), line, n + 1);
    scan_ws(s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      continue;
    }
    if (s->p < s->end && *s->p == ']') {
      s->p++;
      return n;
    }
    goto fail;
  }
fail:
  free(*out);
  *out = NULL;
  return -1;
}

static long split_json(const char *buf, size_t len, amc_loader_span_t **out) {
  scan_t s = {buf, buf + len, buf};
  long n = -1;
  /* A List's items, split while the object is scanned (once, not scanned
   * and then split); used only if the object is a List. */
  amc_loader_span_t *isp = NULL;
  long n_isp = -1;
  scan_ws(&s);
  if (s.p < s.end && *s.p == '[') {
    n = split_array(&s, out);
  } else if (s.p < s.end && *s.p == '{') {
    /* A `kind: List` object: its items; any other object: itself. */
    const char *items = NULL;
    int kinds = 0, list = 0, n_items = 0;
    s.p++;
    scan_ws(&s);
    if (s.p < s.end && *s.p == '}')
      s.p++;
    else
      for (;;) {
        scan_ws(&s);
        const char *k = s.p;
        if (s.p >= s.end || *s.p != '"' || scan_string(&s) < 0)
          goto fail;
        size_t klen = (size_t)(s.p - k);
        scan_ws(&s);
        if (s.p >= s.end || *s.p != ':')
          goto fail;
        s.p++;
        scan_ws(&s);
        const char *v = s.p;
        int is_items = klen == 7 && memcmp(k, "\"items\"", 7) == 0;
        if (is_items && n_items == 0 && v < s.end && *v == '[') {
          scan_t is = {v, s.end, buf};
          n_isp = split_array(&is, &isp);
          if (n_isp >= 0)
            s.p = is.p;
          else if (scan_value(&s) < 0) /* the List's error, if it is one */
            goto fail;
        } else if (scan_value(&s) < 0)
          goto fail;
        if (klen == 6 && memcmp(k, "\"kind\"", 6) == 0) {
          kinds++;
          list = s.p - v == 6 && memcmp(v, "\"List\"", 6) == 0;
        } else if (is_items) {
          n_items++;
          items = *v == '[' ? v : NULL;
        }
        scan_ws(&s);
        if (s.p < s.end && *s.p == ',') {
          s.p++;
          continue;
        }
        if (s.p < s.end && *s.p == '}') {
          s.p++;
          break;
        }
        goto fail;
      }
    if (kinds > 1 || n_items > 1)
      goto fail;
    if (list) {
      if (!items || n_isp < 0)
        goto fail; /* an empty or a malformed List: the loader decides */
      *out = isp;
      isp = NULL;
      n = n_isp;
    } else {
      n = 0;
      long cap = 0;
      span_add(out, &n, &cap, buf, len, 0, 0);
    }
  }
  free(isp);
  if (n < 0)
    return -1;
  scan_ws(&s);
  if (s.p != s.end) { /* trailing text: the decoder's error to give */
    free(*out);
    *out = NULL;
    return -1;
  }
  return n;
fail:
  free(isp);
  return -1;
}

/* A line starting a YAML document: "---" then a blank or the line's end. */
static int doc_marker(const char *p, const char *end) {
  return end - p >= 3 && memcmp(p, "---", 3) == 0 &&
         (end - p == 3 || p[3] == ' ' || p[3] == '\t' || p[3] == '\n' ||
          p[3] == '\r');
}

/* A line of content (not blank, not only a comment) starts at p. */
static int content_line(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  return p < end && *p != '\n' && *p != '\r' && *p != '#';
}

/* Spans' `index` is the document's number in the file, as libyaml counts
 * them: a span is a document if it starts with "---" or has content. */
/* Whether libyaml would break a line where this scanner does not: at a CR
 * alone, NEL, LS or PS (it counts lines, and starts documents, there). */
/* (memchr for the lead byte, not memmem: a saved file is cut on every
 * change, and glibc's memmem is several times slower per byte.) */
static int has_seq(const char *buf, size_t len, char lead, const char *rest,
                   size_t n) {
  for (const char *p = buf, *end = buf + len;
       (p = memchr(p, lead, (size_t)(end - p))); p++)
    if ((size_t)(end - p) > n && memcmp(p + 1, rest, n) == 0)
      return 1;
  return 0;
}

static int other_line_breaks(const char *buf, size_t len) {
  for (const char *p = buf, *end = buf + len;
       (p = memchr(p, '\r', (size_t)(end - p))); p++)
    if (p + 1 >= end || p[1] != '\n')
      return 1;
  return has_seq(buf, len, '\xc2', "\x85", 1) ||
         has_seq(buf, len, '\xe2', "\x80\xa8", 2) ||
         has_seq(buf, len, '\xe2', "\x80\xa9", 2);
}

static long split_yaml(const char *buf, size_t len, amc_loader_span_t **out) {
  if (other_line_breaks(buf, len))
    return -1; /* loaded whole: lines and documents are libyaml's */
  long n = 0, cap = 0, docs = 0;
  const char *end = buf + len, *start = buf, *p = buf;
  size_t line = 0, start_line = 0;
  int is_doc = 0; /* the current span holds a document */
  while (p < end) {
    if (*p == '%' || (end - p >= 3 && memcmp(p, "...", 3) == 0 &&
                      (end - p == 3 || p[3] == ' ' || p[3] == '\t' ||
                       p[3] == '\n' || p[3] == '\r'))) {
      /* a directive (it belongs to the next document), or a document end
       * (more documents may follow in the same span): the file whole */
      free(*out);
      *out = NULL;
      return -1;
    }
    if (doc_marker(p, end)) {
      if (p > buf)
        span_add(out, &n, &cap, start, (size_t)(p - start), start_line,
                 is_doc ? ++docs : 0);
      start = p;
      start_line = line;
      is_doc = 1;
    } else if (!is_doc && content_line(p, end)) {
      is_doc = 1;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
      break;
    p = nl + 1;
    line++;
  }
  span_add(out, &n, &cap, start, (size_t)(end - start), start_line,
           is_doc ? ++docs : 0);
  return n;
}

int amc_loader_check_split(lua_State *L, const char *buf, size_t len, int json,
                           const amc_loader_span_t *spans, long n, char *err,
                           size_t errlen) {
  if (!json || (n > 0 && spans[0].index == 0))
    return 0; /* YAML documents, or one whole value: checked when loaded */
  /* (no items: the text is all envelope, and nothing else checks it) */
  amc_buf_t env = AMC_BUF_INIT;
  const char *at = buf;
  for (long i = 0; i < n; i++) {
    amc_buf_append(&env, at, (size_t)(spans[i].text - at));
    amc_buf_putc(&env, '0');
    at = spans[i].text + spans[i].len;
  }
  amc_buf_append(&env, at, (size_t)(buf + len - at));
  /* What the C parser takes without a repeated key, the decoder takes
   * (canon.h): no Lua for the usual envelope. Anything else, and the
   * error's text, are the decoder's. Per thread, kept. */
  static _Thread_local amc_canon_t *tree;
  if (tree && amc_canon_memory(tree) > ((size_t)1 << 20)) {
    amc_canon_free(tree); /* (after a large envelope) */
    tree = NULL;
  }
  if (!tree)
    tree = amc_canon_new();
  int rc = 0;
  if (amc_canon_parse_json(tree, env.data, env.len) != 0 ||
      amc_canon_unique_keys(tree) != 0) {
    int top = lua_gettop(L);
    rc = amc_json_decode(L, env.data, env.len, err, errlen);
    lua_settop(L, top);
  }
  amc_buf_free(&env);
  return rc == 0 ? 0 : -1;
}

long amc_loader_split(const char *buf, size_t len, int json,
                      amc_loader_span_t **spans) {
  *spans = NULL;
  return json ? split_json(buf, len, spans) : split_yaml(buf, len, spans);
}

/* Runs under pcall: [ctx_t*, the decoded item, the span]. */
static int json_item_protected(lua_State *L) {
  ctx_t *c = lua_touserdata(L, 1);
  const amc_loader_span_t *sp = lua_touserdata(L, 3);
  lua_settop(L, 2);
  char where[600], source[600];
  snprintf(where, sizeof where, "%s: item %ld", c->name, sp->index);
  snprintf(source, sizeof source, "%s:1[%ld]", c->name, sp->index);
  emit(L, c, where, source);
  return 0;
}

int amc_loader_load_span(lua_State *L, const char *name,
                         const amc_loader_span_t *span, int json,
                         const amc_loader_opts_t *opts, amc_loader_fn fn,
                         void *data, char *err, size_t errlen) {
  ctx_t c = ctx_for(name, opts, fn, data, err, errlen);
  c.line_base = span->line;
  if (!json) {
    c.doc = span->index > 0 ? (int)span->index - 1 : 0; /* counted again */
    return load_yaml(L, &c, span->text, span->len, 0);
  }
  if (span->index == 0)
    return load_json(L, &c, span->text, span->len);
  int top = lua_gettop(L);
  char jerr[256];
  if (!lua_checkstack(L, 8))
    return fail(&c, "%s: Lua stack exhausted", name);
  lua_pushcfunction(L, json_item_protected);
  lua_pushlightuserdata(L, &c);
  if (amc_json_decode(L, span->text, span->len, jerr, sizeof jerr) < 0) {
    lua_settop(L, top);
    return fail(&c, "%s: item %ld: %s", name, span->index, jerr);
  }
  lua_pushlightuserdata(L, (void *)span);
  int status = lua_pcall(L, 3, 0, 0);
  if (status != LUA_OK && !c.failed)
    fail(&c, "%s: %s", name,
         status == LUA_ERRMEM ? "out of memory" : "internal error");
  lua_settop(L, top);
  return c.failed ? -1 : 0;
}

int amc_loader_parse_yaml_value(lua_State *L, const char *name, const char *buf,
                                size_t len, char *err, size_t errlen) {
  ctx_t c = {0};
  c.name = name;
  c.value_only = 1;
  c.err = err;
  c.errlen = errlen;
  return load_yaml(L, &c, buf, len, 1);
}
