/* cmd_sync.c - `amc sync`: sync desired AVI objects to a controller once.
 *
 * The desired objects come from translating PATH... with the rules (as
 * `amc translate` does, private keys included), or from `--desired FILE`
 * (the JSON `amc translate` prints: {"<type>": [objects...], ...,
 * "diagnostics": [...]}); they are
 * grouped into keys by their "gateway" marker ("ns/name" -> key
 * "Gateway/ns/name"). Each key is synced (runtime/avi/sync.h), then, with
 * --gc, owned objects of keys not in the input are deleted. Exit 0 when
 * everything converged, 1 when a key failed, 2 on usage/input errors. */
#include "avi/sync.h"
#include "cli/cli.h"
#include "cli/translate_run.h"
#include "http.h"
#include "json.h"
#include "translation.h"
#include "util/buf.h"
#include "util/log.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: amc sync [options] PATH...\n"
    "       amc sync [options] --desired FILE\n"
    "\n"
    "Syncs desired AVI objects to an AVI controller once, then exits\n"
    "(0 = converged, 1 = some key failed, 2 = usage or input error).\n"
    "\n"
    "  --avi URL            controller (https://host[:port]); env "
    "CTRL_IPADDRESS\n"
    "  --username U         env CTRL_USERNAME\n"
    "  --password-file F    file holding the password; env CTRL_PASSWORD\n"
    "  --ca FILE            CA bundle to verify the controller's certificate\n"
    "  --insecure           do not verify the controller's certificate\n"
    "  --version V          X-Avi-Version; env CTRL_VERSION (default: the\n"
    "                       controller's)\n"
    "  --tenant T           default tenant (admin)\n"
    "  --cluster NAME       cluster name (object names, ownership marks);\n"
    "                       env CLUSTER_NAME (default: default)\n"
    "  --rules DIR          rule files (default: ./rules if it exists)\n"
    "  --settings FILE      translation settings (see amc translate)\n"
    "  --desired FILE       desired objects (amc translate output) instead\n"
    "                       of translating PATHs\n"
    "  --gc                 also delete owned objects no input key wants\n"
    "  --dry-run            print the planned calls instead of sending them\n"
    "  --rate N             client rate limit, calls/s (20)\n"
    "  --burst N            client burst (5)\n"
    "  --timeout MS         per-request timeout (30000)\n"
    "  --retries N          resends of a transient failure (6)\n"
    "  --backoff MS         first backoff (200)\n"
    "  --log-level L        debug|info|warn|error (warn)\n";

typedef struct {
  amc_translation_t **keys;
  size_t n;
} keyset_t;

static amc_translation_t *keyset_get(keyset_t *ks, const char *key) {
  for (size_t i = 0; i < ks->n; i++) {
    if (strcmp(ks->keys[i]->key, key) == 0)
      return ks->keys[i];
  }
  amc_translation_t *t = calloc(1, sizeof *t);
  t->key = strdup(key);
  ks->keys = realloc(ks->keys, (ks->n + 1) * sizeof *ks->keys);
  ks->keys[ks->n++] = t;
  return t;
}

/* The "gateway" marker of the object at the top, or NULL. */
static const char *gateway_marker(lua_State *L) {
  const char *out = NULL;
  lua_getfield(L, -1, "markers");
  if (lua_istable(L, -1)) {
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1) && !out; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "key");
        int is_gw = lua_type(L, -1) == LUA_TSTRING &&
                    strcmp(lua_tostring(L, -1), "gateway") == 0;
        lua_pop(L, 1);
        if (is_gw) {
          lua_getfield(L, -1, "values");
          if (lua_istable(L, -1)) {
            lua_rawgeti(L, -1, 1);
            if (lua_type(L, -1) == LUA_TSTRING)
              out = lua_tostring(L, -1); /* anchored in the object */
            lua_pop(L, 1);
          }
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return out;
}

/* Parses a desired-objects document (amc translate's format) held in `b`;
 * `path` names it in errors. */
static int load_desired(const char *path, amc_buf_t *b, keyset_t *ks, char *err,
                        size_t errlen) {
  lua_State *L = luaL_newstate();
  luaL_checkstack(L, AMC_JSON_MAX_DEPTH + 16, NULL);
  char jerr[200];
  int ret = -1;
  if (amc_json_decode(L, b->data ? b->data : "", b->len, jerr, sizeof jerr) !=
      0) {
    snprintf(err, errlen, "%s: %s", path, jerr);
    goto out;
  }
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "%s: expected a JSON object of AVI types", path);
    goto out;
  }
  int top = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, top) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      snprintf(err, errlen, "%s: keys must be AVI type names", path);
      goto out;
    }
    const char *type = lua_tostring(L, -2);
    if (strcmp(type, "diagnostics") == 0) {
      lua_pop(L, 1);
      continue;
    }
    if (!lua_istable(L, -1)) {
      snprintf(err, errlen, "%s: %s: expected an array of objects", path, type);
      goto out;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      lua_getfield(L, -1, "name");
      if (!lua_istable(L, -2) || lua_type(L, -1) != LUA_TSTRING) {
        snprintf(err, errlen, "%s: %s[%lld]: object without a name", path, type,
                 (long long)(i - 1));
        goto out;
      }
      char *name = strdup(lua_tostring(L, -1));
      lua_pop(L, 1);
      const char *gw = gateway_marker(L);
      if (!gw) {
        snprintf(err, errlen,
                 "%s: %s %s: no \"gateway\" marker, cannot tell its key", path,
                 type, name);
        free(name);
        goto out;
      }
      amc_buf_t key = AMC_BUF_INIT;
      amc_buf_printf(&key, "Gateway/%s", gw);
      amc_translation_t *t = keyset_get(ks, key.data);
      amc_buf_free(&key);
      amc_buf_t j = AMC_BUF_INIT;
      if (amc_json_encode(L, -1, &j, jerr, sizeof jerr) != 0) {
        snprintf(err, errlen, "%s: %s %s: %s", path, type, name, jerr);
        free(name);
        amc_buf_free(&j);
        goto out;
      }
      t->objects = realloc(t->objects, (t->n_objects + 1) * sizeof *t->objects);
      amc_avi_object_t *o = &t->objects[t->n_objects++];
      memset(o, 0, sizeof *o);
      o->type = strdup(type);
      o->name = name;
      o->json_len = j.len;
      o->json = amc_buf_steal(&j);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  ret = 0;
out:
  lua_close(L);
  return ret;
}

typedef struct {
  uv_loop_t *loop;
  amc_http_t *http;
  amc_avi_sync_t *sync;
  keyset_t ks;
  size_t next, running, failed;
  int gc;
  int stage; /* 0 keys, 1 gc, 2 done */
  unsigned calls[4];
  int exit_code;
} run_t;

static void pump_keys(run_t *r);

static void add_calls(run_t *r, const amc_avi_sync_result_t *res) {
  for (int i = 0; i < 4; i++)
    r->calls[i] += res->calls[i];
}

static void logged_out(void *data) {
  run_t *r = data;
  amc_http_close(r->http, NULL, NULL);
  r->http = NULL;
}

static void finish_run(run_t *r) {
  r->stage = 2;
  fprintf(stderr,
          "amc sync: %zu key(s), %zu failed; calls: GET %u, POST %u, PUT %u, "
          "DELETE %u\n",
          r->ks.n, r->failed, r->calls[0], r->calls[1], r->calls[2],
          r->calls[3]);
  if (r->failed && r->exit_code == 0)
    r->exit_code = AMC_EXIT_FAIL;
  amc_avi_sync_logout(r->sync, logged_out, r);
}

static void gc_done(const amc_avi_sync_result_t *res, void *data) {
  run_t *r = data;
  add_calls(r, res);
  if (!res->ok) {
    fprintf(stderr, "amc sync: gc: %s [%s]\n", res->error,
            res->transient ? "transient" : "permanent");
    r->failed++;
  }
  finish_run(r);
}

static void key_done(const amc_avi_sync_result_t *res, void *data) {
  run_t *r = data;
  add_calls(r, res);
  r->running--;
  if (!res->ok) {
    r->failed++;
    fprintf(stderr, "amc sync: %s [%s]\n", res->error,
            res->transient ? "transient" : "permanent");
  }
  pump_keys(r);
}

static void pump_keys(run_t *r) {
  while (r->next < r->ks.n && r->running < 4) {
    amc_translation_t *t = r->ks.keys[r->next++];
    r->running++;
    amc_avi_sync_key(r->sync, t->key, t, key_done, r);
  }
  if (r->running == 0 && r->next >= r->ks.n && r->stage == 0) {
    if (r->gc && r->failed == 0) {
      r->stage = 1;
      const char **live = calloc(r->ks.n + 1, sizeof *live);
      for (size_t i = 0; i < r->ks.n; i++)
        live[i] = r->ks.keys[i]->key;
      amc_avi_sync_gc(r->sync, live, r->ks.n, gc_done, r);
      free(live);
    } else {
      if (r->gc)
        fprintf(stderr, "amc sync: gc skipped: a key failed\n");
      finish_run(r);
    }
  }
}

static void started(const amc_avi_sync_result_t *res, void *data) {
  run_t *r = data;
  add_calls(r, res);
  if (!res->ok) {
    fprintf(stderr, "amc sync: cannot read the controller: %s\n", res->error);
    r->exit_code = AMC_EXIT_FAIL;
    finish_run(r);
    return;
  }
  pump_keys(r);
}

/* 1 when argument `a` is option `opt` and a value follows (then *i moves to
 * it). A missing value is a usage error: exit 2 (nothing is allocated yet
 * while options are parsed). */
static int takes(const char *a, const char *opt, int *i, int argc) {
  if (strcmp(a, opt) != 0)
    return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "amc sync: %s needs a value\n", opt);
    exit(AMC_EXIT_USAGE);
  }
  (*i)++;
  return 1;
}

static char *read_password_file(const char *path) {
  amc_buf_t b = AMC_BUF_INIT;
  if (amc_buf_read_file(&b, path) < 0)
    return NULL;
  while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
    b.data[--b.len] = '\0';
  return amc_buf_steal(&b);
}

int amc_cmd_sync(int argc, char **argv) {
  amc_avi_sync_opts_t o = {0};
  const char *avi = getenv("CTRL_IPADDRESS");
  const char *desired = NULL, *pwfile = NULL, *rules = NULL,
             *settings_file = NULL;
  char *paths[argc + 1]; /* positional arguments */
  size_t n_paths = 0;
  char *password = NULL, *url = NULL;
  int gc = 0;
  amc_log_level_t level = AMC_WARN;
  o.username = getenv("CTRL_USERNAME");
  o.version = getenv("CTRL_VERSION");
  o.cluster = getenv("CLUSTER_NAME");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE(opt) takes(a, opt, &i, argc)
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage_text, stdout);
      return AMC_EXIT_OK;
    } else if (TAKE("--avi"))
      avi = v;
    else if (TAKE("--username"))
      o.username = v;
    else if (TAKE("--password-file"))
      pwfile = v;
    else if (TAKE("--ca"))
      o.ca_file = v;
    else if (strcmp(a, "--insecure") == 0)
      o.insecure = 1;
    else if (TAKE("--version"))
      o.version = v;
    else if (TAKE("--tenant"))
      o.tenant = v;
    else if (TAKE("--cluster"))
      o.cluster = v;
    else if (TAKE("--desired"))
      desired = v;
    else if (strcmp(a, "--gc") == 0)
      gc = 1;
    else if (strcmp(a, "--dry-run") == 0)
      o.dry_run = 1;
    else if (TAKE("--rate"))
      o.rate = atof(v);
    else if (TAKE("--burst"))
      o.burst = atoi(v);
    else if (TAKE("--timeout"))
      o.timeout_ms = atol(v);
    else if (TAKE("--retries"))
      o.max_retries = atoi(v) == 0 ? -1 : atoi(v);
    else if (TAKE("--backoff"))
      o.backoff_base_ms = atol(v);
    else if (TAKE("--log-level")) {
      int l = amc_log_level_parse(v);
      if (l < 0) {
        fprintf(stderr, "amc sync: unknown log level '%s'\n", v);
        return AMC_EXIT_USAGE;
      }
      level = (amc_log_level_t)l;
    } else if (TAKE("--rules"))
      rules = v;
    else if (TAKE("--settings"))
      settings_file = v;
    else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "amc sync: unknown option %s\n", a);
      fputs(usage_text, stderr);
      return AMC_EXIT_USAGE;
    } else {
      paths[n_paths++] = argv[i];
    }
#undef TAKE
  }
  amc_log_init(level, AMC_LOG_LOGFMT, stderr);
  if (!desired == !n_paths) {
    fprintf(stderr, "amc sync: give either PATH... or --desired FILE\n");
    return AMC_EXIT_USAGE;
  }
  if (!o.cluster || !*o.cluster)
    o.cluster = "default";
  if (avi && *avi) {
    if (strstr(avi, "://"))
      url = strdup(avi);
    else {
      url = malloc(strlen(avi) + 9);
      sprintf(url, "https://%s", avi);
    }
    o.controller = url;
    if (pwfile) {
      password = read_password_file(pwfile);
      if (!password) {
        fprintf(stderr, "amc sync: cannot read the password file %s\n", pwfile);
        free(url);
        return AMC_EXIT_USAGE;
      }
    } else if (getenv("CTRL_PASSWORD")) {
      password = strdup(getenv("CTRL_PASSWORD"));
    }
    o.password = password;
    if (!o.username || !o.password) {
      fprintf(stderr, "amc sync: a controller needs --username and "
                      "--password-file (or CTRL_USERNAME, CTRL_PASSWORD)\n");
      free(url);
      free(password);
      return AMC_EXIT_USAGE;
    }
    if (o.insecure)
      amc_log(AMC_WARN, "avi.tls_insecure", AMC_S("controller", url),
              AMC_S("note", "certificate verification is off (--insecure)"));
  } else if (!o.dry_run) {
    fprintf(stderr, "amc sync: no controller: give --avi URL (or "
                    "CTRL_IPADDRESS), or --dry-run\n");
    return AMC_EXIT_USAGE;
  }

  run_t r = {0};
  r.gc = gc;
  char err[1024];
  amc_buf_t doc = AMC_BUF_INIT;
  if (desired) {
    int rc = amc_buf_read_file(&doc, desired);
    if (rc < 0) {
      fprintf(stderr, "amc sync: %s: %s\n", desired, strerror(-rc));
      r.exit_code = AMC_EXIT_USAGE;
      goto done;
    }
  } else {
    amc_settings_t settings;
    amc_settings_init(&settings);
    if (settings_file &&
        amc_settings_load_file(&settings, settings_file, err, sizeof err) < 0) {
      fprintf(stderr, "amc sync: %s\n", err);
      amc_settings_free(&settings);
      r.exit_code = AMC_EXIT_USAGE;
      goto done;
    }
    amc_settings_set(&settings, "cluster", o.cluster);
    if (o.tenant)
      amc_settings_set(&settings, "tenant", o.tenant);
    amc_translate_run_opts_t to = {
        .rules_dir = rules, .settings = &settings, .show_secrets = 1};
    amc_buf_t errs = AMC_BUF_INIT;
    int rc = amc_translate_run(paths, n_paths, &to, &doc, &errs);
    amc_settings_free(&settings);
    if (rc != AMC_EXIT_OK) {
      fprintf(stderr, "amc sync: %s",
              errs.data ? errs.data : "translation failed\n");
      amc_buf_free(&errs);
      r.exit_code = rc;
      goto done;
    }
    amc_buf_free(&errs);
  }
  if (load_desired(desired ? desired : "translation", &doc, &r.ks, err,
                   sizeof err) != 0) {
    fprintf(stderr, "amc sync: %s\n", err);
    r.exit_code = AMC_EXIT_USAGE;
    goto done;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  r.loop = &loop;
  r.http = amc_http_new(&loop);
  r.sync = amc_avi_sync_new(&loop, r.http, &o);
  if (!r.http || !r.sync) {
    fprintf(stderr, "amc sync: cannot set up the AVI client\n");
    r.exit_code = AMC_EXIT_USAGE;
    if (r.http)
      amc_http_close(r.http, NULL, NULL);
  } else {
    amc_avi_sync_start(r.sync, started, &r);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  amc_avi_sync_free(r.sync);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
done:
  if (doc.data)
    memset(doc.data, 0, doc.len); /* held private keys */
  amc_buf_free(&doc);
  for (size_t i = 0; i < r.ks.n; i++)
    amc_translation_free(r.ks.keys[i]);
  free(r.ks.keys);
  if (password) {
    memset(password, 0, strlen(password));
    free(password);
  }
  free(url);
  return r.exit_code;
}
