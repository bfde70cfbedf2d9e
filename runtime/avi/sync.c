/* avi/sync.c - start (login + cache fill), per-key apply, gc. See sync.h. */
#include "avi/sync.h"

#include "avi/client.h"
#include "avi/plan.h"
#include "json.h"
#include "util/buf.h"
#include "util/log.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

typedef struct job job_t;
typedef struct amc_avi_sync amc_avi_sync_t;

/* One type being read at start (embedded in the sync context, so freeing
 * the context while reads are in flight leaks nothing). */
typedef struct {
  amc_avi_sync_t *s;
  const char *type;
} fill_t;

#define MAX_TYPES 16

struct amc_avi_sync {
  uv_loop_t *loop;
  amc_avi_client_t *client; /* NULL: dry run without a controller */
  lua_State *L;
  amc_avi_cache_t cache;
  char *cluster, *tenant;
  amc_avi_owner_t own;
  int dry_run;
  FILE *out;
  int synced;
  job_t *jobs; /* in flight, for free */
  /* start */
  int filling; /* type reads outstanding */
  int fill_failed;
  amc_buf_t fill_err;
  int fill_transient;
  amc_avi_sync_cb start_cb;
  void *start_data;
  unsigned fill_gets;
  fill_t fills[MAX_TYPES];
  int refreshing;       /* a re-read into `next` is running */
  amc_avi_cache_t next; /* the re-read, swapped in when complete */
  amc_avi_sync_observe_fn observe;
  void *observe_data;
};

struct job {
  amc_avi_sync_t *s;
  char *key;
  amc_avi_plan_t plan;
  size_t i;
  int tries;     /* re-reads for the current step */
  amc_buf_t err; /* first error */
  int transient;
  int deferred; /* a delete was refused because of referrers */
  int cleanup;  /* a create/update failed for good: only the deletes of
                   leftovers still run */
  int cleaned;  /* deletes that succeeded in that phase */
  unsigned calls[4];
  amc_avi_sync_cb cb;
  void *data;
  job_t *next;
};

static const char *method_name(amc_avi_op_t op) {
  return op == AMC_AVI_POST ? "POST" : op == AMC_AVI_PUT ? "PUT" : "DELETE";
}

/* ---- observer ------------------------------------------------------------ */

static void client_observe(const char *method, const char *path, long status,
                           void *data) {
  amc_avi_sync_t *s = data;
  if (!s->observe)
    return;
  char type[64] = "login";
  if (strncmp(path, "/api/", 5) == 0) {
    size_t n = strcspn(path + 5, "/?#");
    if (n >= sizeof type)
      n = sizeof type - 1;
    memcpy(type, path + 5, n);
    type[n] = '\0';
  }
  s->observe(method, type, status, s->observe_data);
}

/* ---- lifecycle ----------------------------------------------------------- */

amc_avi_sync_t *amc_avi_sync_new(uv_loop_t *loop, amc_http_t *http,
                                 const amc_avi_sync_opts_t *o) {
  if (!loop || !o || !o->cluster || !*o->cluster)
    return NULL;
  if (o->controller && (!http || !o->username || !o->password))
    return NULL;
  if (!o->controller && !o->dry_run)
    return NULL;
  amc_avi_sync_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->loop = loop;
  s->L = luaL_newstate();
  if (!s->L) {
    free(s);
    return NULL;
  }
  luaL_checkstack(s->L, AMC_JSON_MAX_DEPTH + 32, NULL);
  amc_avi_cache_init(&s->cache);
  amc_avi_cache_init(&s->next);
  s->cluster = strdup(o->cluster);
  s->tenant = strdup(o->tenant && *o->tenant ? o->tenant : "admin");
  s->own.cluster = s->cluster;
  s->own.tenant = s->tenant;
  s->dry_run = o->dry_run;
  s->out = o->dry_run_out ? o->dry_run_out : stdout;
  if (o->controller) {
    amc_avi_client_opts_t co = {.base_url = o->controller,
                                .username = o->username,
                                .password = o->password,
                                .version = o->version,
                                .ca_file = o->ca_file,
                                .insecure = o->insecure,
                                .rate = o->rate,
                                .burst = o->burst,
                                .timeout_ms = o->timeout_ms,
                                .max_retries = o->max_retries,
                                .backoff_base_ms = o->backoff_base_ms,
                                .backoff_max_ms = o->backoff_max_ms};
    s->client = amc_avi_client_new(http, loop, &co);
    if (!s->client) {
      amc_avi_sync_free(s);
      return NULL;
    }
    amc_avi_client_set_observer(s->client, client_observe, s);
  }
  return s;
}

void amc_avi_sync_set_observer(amc_avi_sync_t *s, amc_avi_sync_observe_fn fn,
                               void *data) {
  s->observe = fn;
  s->observe_data = data;
}

void amc_avi_sync_logout(amc_avi_sync_t *s, void (*done)(void *data),
                         void *data) {
  if (s->client)
    amc_avi_client_logout(s->client, done, data);
  else if (done)
    done(data);
}

int amc_avi_sync_synced(const amc_avi_sync_t *s) {
  return s->synced;
}

int amc_avi_sync_reading(const amc_avi_sync_t *s) {
  return s->filling > 0;
}

int amc_avi_sync_reachable(const amc_avi_sync_t *s) {
  return s->client ? amc_avi_client_reachable(s->client) : 1;
}

size_t amc_avi_sync_cached(const amc_avi_sync_t *s) {
  return amc_avi_cache_count(&s->cache);
}

static void job_free(job_t *j) {
  amc_avi_plan_free(&j->plan);
  amc_buf_free(&j->err);
  free(j->key);
  free(j);
}

void amc_avi_sync_free(amc_avi_sync_t *s) {
  if (!s)
    return;
  amc_avi_client_free(s->client); /* drops calls: no callbacks */
  while (s->jobs) {
    job_t *j = s->jobs;
    s->jobs = j->next;
    job_free(j);
  }
  amc_avi_cache_clear(&s->cache);
  amc_avi_cache_clear(&s->next);
  amc_buf_free(&s->fill_err);
  if (s->L)
    lua_close(s->L);
  free(s->cluster);
  free(s->tenant);
  free(s);
}

/* ---- start: fill the cache -------------------------------------------------
 */

/* Our own writes keep the cache current, and the re-read in progress too
 * (whether its read of that type came before or after the write). */
static int store_put(amc_avi_sync_t *s, const char *type, const char *tenant) {
  if (s->refreshing)
    amc_avi_cache_put(&s->next, s->L, &s->own, type, tenant);
  return amc_avi_cache_put(&s->cache, s->L, &s->own, type, tenant);
}

static void store_del(amc_avi_sync_t *s, const char *type, const char *tenant,
                      const char *name) {
  if (s->refreshing)
    amc_avi_cache_del(&s->next, type, tenant, name);
  amc_avi_cache_del(&s->cache, type, tenant, name);
}

static void fill_done(amc_avi_sync_t *s) {
  if (--s->filling > 0)
    return;
  amc_avi_sync_result_t r = {0};
  r.calls[AMC_AVI_GET] = s->fill_gets;
  int refresh = s->refreshing;
  s->refreshing = 0;
  /* The pages decoded while reading are garbage now: give their memory
   * back before the process settles (the caller trims malloc after). */
  lua_gc(s->L, LUA_GCCOLLECT);
  if (s->fill_failed) {
    /* A failed start leaves nothing; a failed re-read keeps the old. */
    amc_avi_cache_clear(refresh ? &s->next : &s->cache);
    r.transient = s->fill_transient;
    r.error = s->fill_err.data;
    amc_log(AMC_ERROR, "avi.sync_start_failed", AMC_S("error", r.error),
            AMC_B("refresh", refresh));
  } else {
    if (refresh) {
      amc_avi_cache_clear(&s->cache);
      s->cache = s->next;
      amc_avi_cache_init(&s->next);
    }
    s->synced = 1;
    r.ok = 1;
    amc_log(AMC_INFO, "avi.cache_synced",
            AMC_I("objects", amc_avi_cache_count(&s->cache)),
            AMC_I("gets", s->fill_gets));
  }
  if (s->start_cb)
    s->start_cb(&r, s->start_data);
}

static void fill_page(const amc_avi_resp_t *r, void *data);
static void fill_one(const amc_avi_resp_t *r, void *data);

/* The list reads ask only for what the cache needs (fields=); an owned
 * object without our checksum is then read whole, by uuid, for the
 * field-by-field compare (plan.h). Such objects are rare: amc's own
 * writes always carry the checksum. */
#define FILL_FIELDS "name,uuid,type,tenant_ref,created_by,markers"

static void fill_get_whole(fill_t *f, const char *uuid) {
  amc_avi_sync_t *s = f->s;
  amc_buf_t p = AMC_BUF_INIT;
  amc_buf_printf(&p, "/api/%s/%s?include_name=true", f->type, uuid);
  s->fill_gets++;
  s->filling++;
  if (amc_avi_client_call(s->client, "GET", p.data, "*", NULL, 0, fill_one,
                          f) != 0) {
    s->fill_failed = 1;
    amc_buf_printf(&s->fill_err, "reading %s: bad request path", f->type);
    fill_done(s);
  }
  amc_buf_free(&p);
}

static void fill_one(const amc_avi_resp_t *r, void *data) {
  fill_t *f = data;
  amc_avi_sync_t *s = f->s;
  lua_State *L = s->L;
  char err[200];
  if (!r->ok && r->status != 404) {
    if (!s->fill_failed) {
      amc_buf_printf(&s->fill_err, "reading a %s: %s", f->type, r->error);
      s->fill_transient = r->transient;
    }
    s->fill_failed = 1;
    fill_done(s);
    return;
  }
  /* 404: deleted since the list read; the next sync of its key plans
   * from the partial entry (a write, which then finds out). */
  int top = lua_gettop(L);
  if (r->ok && amc_json_decode(L, r->body, r->body_len, err, sizeof err) == 0 &&
      lua_istable(L, -1))
    amc_avi_cache_put(s->refreshing ? &s->next : &s->cache, L, &s->own, f->type,
                      s->tenant);
  lua_settop(L, top);
  fill_done(s);
}

static void fill_get(fill_t *f, const char *path) {
  f->s->fill_gets++;
  if (amc_avi_client_call(f->s->client, "GET", path, "*", NULL, 0, fill_page,
                          f) != 0) {
    amc_avi_sync_t *s = f->s;
    s->fill_failed = 1;
    amc_buf_printf(&s->fill_err, "reading %s: bad request path", f->type);
    fill_done(s);
  }
}

static void fill_page(const amc_avi_resp_t *r, void *data) {
  fill_t *f = data;
  amc_avi_sync_t *s = f->s;
  lua_State *L = s->L;
  char err[200];
  if (!r->ok) {
    if (!s->fill_failed) {
      amc_buf_printf(&s->fill_err, "reading %s objects: %s", f->type, r->error);
      s->fill_transient = r->transient;
    }
    s->fill_failed = 1;
    fill_done(s);
    return;
  }
  int top = lua_gettop(L);
  if (amc_json_decode(L, r->body, r->body_len, err, sizeof err) != 0 ||
      !lua_istable(L, -1)) {
    if (!s->fill_failed)
      amc_buf_printf(&s->fill_err, "reading %s objects: bad answer: %s",
                     f->type, err);
    s->fill_failed = 1;
    s->fill_transient = 1;
    lua_settop(L, top);
    fill_done(s);
    return;
  }
  int page = lua_gettop(L);
  lua_getfield(L, page, "results");
  if (lua_istable(L, -1)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      amc_avi_entry_t *e = NULL;
      if (lua_istable(L, -1) &&
          amc_avi_cache_put_entry(s->refreshing ? &s->next : &s->cache, L,
                                  &s->own, f->type, s->tenant, &e) == 1 &&
          !e->cksum[0] && e->uuid_form && !s->fill_failed) {
        char ub[AMC_AVI_UUID_BUF];
        fill_get_whole(f, amc_avi_entry_uuid(e, ub));
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, page, "next");
  if (lua_type(L, -1) == LUA_TSTRING && !s->fill_failed) {
    char *next = strdup(lua_tostring(L, -1));
    lua_settop(L, top);
    fill_get(f, next);
    free(next);
    return;
  }
  lua_settop(L, top);
  fill_done(s);
}

static void url_escape(amc_buf_t *b, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~')
      amc_buf_putc(b, (char)c);
    else
      amc_buf_printf(b, "%%%02X", c);
  }
}

void amc_avi_sync_start(amc_avi_sync_t *s, amc_avi_sync_cb cb, void *data) {
  if (s->filling > 0) {
    amc_avi_sync_result_t r = {.transient = 1,
                               .error = "a read of the controller is already "
                                        "in progress"};
    if (cb)
      cb(&r, data);
    return;
  }
  s->start_cb = cb;
  s->start_data = data;
  s->fill_failed = 0;
  s->fill_gets = 0;
  amc_buf_reset(&s->fill_err);
  if (s->synced && s->client) {
    s->refreshing = 1; /* keys keep syncing against the current cache */
    amc_avi_cache_clear(&s->next);
  } else {
    s->synced = 0;
    amc_avi_cache_clear(&s->cache);
  }
  if (!s->client) {
    s->synced = 1;
    amc_avi_sync_result_t r = {.ok = 1};
    if (cb)
      cb(&r, data);
    return;
  }
  s->filling = 1; /* guard: the callbacks cannot finish before the loop */
  for (int i = 0; amc_avi_owned_types[i] && i < MAX_TYPES; i++) {
    const char *type = amc_avi_owned_types[i];
    amc_buf_t p = AMC_BUF_INIT;
    amc_buf_printf(
        &p, "/api/%s?include_name=true&page_size=100&fields=" FILL_FIELDS "&",
        type);
    if (amc_avi_has_created_by(type)) {
      amc_buf_puts(&p, "created_by=amc-");
      url_escape(&p, s->cluster);
    } else {
      amc_buf_puts(&p, "name.contains=amc--");
      url_escape(&p, s->cluster);
      amc_buf_puts(&p, "--");
    }
    fill_t *f = &s->fills[i];
    f->s = s;
    f->type = type;
    s->filling++;
    fill_get(f, p.data);
    amc_buf_free(&p);
  }
  fill_done(s);
}

/* ---- apply -----------------------------------------------------------------
 */

static void job_finish(job_t *j) {
  amc_avi_sync_t *s = j->s;
  for (job_t **pp = &s->jobs; *pp; pp = &(*pp)->next) {
    if (*pp == j) {
      *pp = j->next;
      break;
    }
  }
  amc_avi_sync_result_t r = {0};
  memcpy(r.calls, j->calls, sizeof r.calls);
  r.planned = (unsigned)j->plan.n;
  if (j->err.len) {
    r.error = j->err.data;
    r.transient = j->transient;
  } else {
    r.ok = 1;
  }
  amc_log(r.ok ? AMC_DEBUG : AMC_WARN, "avi.sync_done",
          AMC_S("key", j->key ? j->key : "(gc)"), AMC_B("ok", r.ok),
          AMC_I("post", r.calls[1]), AMC_I("put", r.calls[2]),
          AMC_I("delete", r.calls[3]), AMC_S("error", r.error ? r.error : ""));
  if (j->cb)
    j->cb(&r, j->data);
  job_free(j);
}

static void run_step(job_t *j);

/* A step failed. The key stops, except that after a permanent failure of a
 * create or update the deletes of the key's leftovers still run: retrying
 * would not help, and an unwanted object (an old child VS holding a pool,
 * say) may be exactly what blocks the write. If a delete succeeds the key's
 * error becomes transient (the next attempt may get further). */
static void job_fail(job_t *j, const amc_avi_step_t *st, const char *method,
                     const char *why, int transient) {
  if (!j->err.len) {
    amc_buf_printf(&j->err, "%s %s %s: %s", method, st->type, st->name, why);
    j->transient = transient;
  }
  if (!transient && !j->cleanup && st->op != AMC_AVI_DELETE) {
    for (size_t k = j->i + 1; k < j->plan.n; k++) {
      if (j->plan.steps[k].op == AMC_AVI_DELETE) {
        j->cleanup = 1;
        j->i = k;
        j->tries = 0;
        run_step(j);
        return;
      }
    }
  }
  if (j->cleanup && j->cleaned > 0)
    j->transient = 1;
  job_finish(j);
}

static void next_step(job_t *j) {
  j->i++;
  j->tries = 0;
  run_step(j);
}

/* Decodes an answer body and stores the object in the cache. Returns what
 * amc_avi_cache_put returns, or -1. */
static int cache_answer(amc_avi_sync_t *s, const amc_avi_step_t *st,
                        const char *body, size_t len) {
  lua_State *L = s->L;
  int top = lua_gettop(L);
  char err[128];
  int rc = -1;
  if (amc_json_decode(L, body, len, err, sizeof err) == 0 && lua_istable(L, -1))
    rc = store_put(s, st->type, st->tenant);
  lua_settop(L, top);
  return rc;
}

static void call(job_t *j, const char *method, const char *path,
                 const char *tenant, const char *body, size_t len,
                 amc_avi_done_fn fn) {
  int m = method[0] == 'G'   ? AMC_AVI_GET
          : method[0] == 'P' ? (method[1] == 'O' ? AMC_AVI_NPOST : AMC_AVI_NPUT)
                             : AMC_AVI_NDELETE;
  j->calls[m]++;
  if (amc_avi_client_call(j->s->client, method, path, tenant, body, len, fn,
                          j) != 0)
    job_fail(j, &j->plan.steps[j->i], method, "cannot queue the call", 0);
}

static void on_lookup(const amc_avi_resp_t *r, void *data);
static void on_post(const amc_avi_resp_t *r, void *data);
static void on_put(const amc_avi_resp_t *r, void *data);
static void on_reread(const amc_avi_resp_t *r, void *data);
static void on_delete(const amc_avi_resp_t *r, void *data);

static void path_of(amc_buf_t *p, const amc_avi_step_t *st) {
  amc_buf_reset(p);
  if (st->op == AMC_AVI_POST)
    amc_buf_printf(p, "/api/%s", st->type);
  else
    amc_buf_printf(p, "/api/%s/%s", st->type, st->uuid);
}

static void run_step(job_t *j) {
  amc_avi_sync_t *s = j->s;
  amc_buf_t p = AMC_BUF_INIT;
  while (j->i < j->plan.n && s->dry_run) {
    amc_avi_step_t *st = &j->plan.steps[j->i];
    path_of(&p, st);
    if (st->body) {
      char *red = amc_avi_redacted(s->L, st->type, st->body, st->body_len);
      fprintf(s->out, "%s %s %s\n", method_name(st->op), p.data, red);
      free(red);
    } else {
      fprintf(s->out, "%s %s\n", method_name(st->op), p.data);
    }
    j->i++;
  }
  if (j->i >= j->plan.n) {
    amc_buf_free(&p);
    if (j->cleanup && j->cleaned > 0)
      j->transient = 1;
    job_finish(j);
    return;
  }
  amc_avi_step_t *st = &j->plan.steps[j->i];
  path_of(&p, st);
  switch (st->op) {
  case AMC_AVI_POST:
    call(j, "POST", p.data, st->tenant, st->body, st->body_len, on_post);
    break;
  case AMC_AVI_PUT:
    call(j, "PUT", p.data, st->tenant, st->body, st->body_len, on_put);
    break;
  case AMC_AVI_DELETE:
    call(j, "DELETE", p.data, st->tenant, NULL, 0, on_delete);
    break;
  }
  amc_buf_free(&p);
}

static void on_post(const amc_avi_resp_t *r, void *data) {
  job_t *j = data;
  amc_avi_step_t *st = &j->plan.steps[j->i];
  if (r->ok) {
    cache_answer(j->s, st, r->body, r->body_len);
    next_step(j);
    return;
  }
  if (r->status == 409 && j->tries < 3) {
    /* Exists already: ours from an earlier attempt whose answer was lost,
     * or someone else's. Look. */
    j->tries++;
    amc_buf_t p = AMC_BUF_INIT;
    amc_buf_printf(&p, "/api/%s?include_name=true&name=", st->type);
    url_escape(&p, st->name);
    call(j, "GET", p.data, st->tenant, NULL, 0, on_lookup);
    amc_buf_free(&p);
    return;
  }
  job_fail(j, st, "POST", r->error, r->transient);
}

/* After a re-read stored (or not) the controller's copy: done, PUT, or a
 * name clash. `found` = the object exists; `owned` = it is ours. */
static void continue_after_read(job_t *j, int found, int owned) {
  amc_avi_sync_t *s = j->s;
  amc_avi_step_t *st = &j->plan.steps[j->i];
  if (!found) {
    if (st->op == AMC_AVI_PUT) {
      /* Gone meanwhile: create it. */
      free(st->uuid);
      st->uuid = NULL;
      st->op = AMC_AVI_POST;
      run_step(j);
      return;
    }
    job_fail(j, st, "POST",
             "HTTP 409 but no object with that name is visible (deleted "
             "just now?)",
             1);
    return;
  }
  if (!owned) {
    amc_buf_t why = AMC_BUF_INIT;
    amc_buf_printf(&why,
                   "name clash: a %s named %s exists in tenant %s and was not "
                   "created by amc-%s; amc leaves it alone",
                   st->type, st->name, st->tenant, s->cluster);
    job_fail(j, st, method_name(st->op), why.data, 0);
    amc_buf_free(&why);
    return;
  }
  amc_avi_entry_t *e =
      amc_avi_cache_get(&s->cache, st->type, st->tenant, st->name);
  if (e && e->cksum[0] && st->cksum && strcmp(e->cksum, st->cksum) == 0) {
    next_step(j); /* already as desired */
    return;
  }
  if (!e || !e->uuid_form) {
    job_fail(j, st, method_name(st->op), "the controller's answer has no uuid",
             1);
    return;
  }
  free(st->uuid);
  char ub[AMC_AVI_UUID_BUF];
  st->uuid = strdup(amc_avi_entry_uuid(e, ub));
  st->op = AMC_AVI_PUT;
  run_step(j);
}

static void on_lookup(const amc_avi_resp_t *r, void *data) {
  job_t *j = data;
  amc_avi_sync_t *s = j->s;
  amc_avi_step_t *st = &j->plan.steps[j->i];
  if (!r->ok) {
    job_fail(j, st, "GET", r->error, r->transient);
    return;
  }
  lua_State *L = s->L;
  int top = lua_gettop(L);
  char err[128];
  int found = 0, owned = 0;
  if (amc_json_decode(L, r->body, r->body_len, err, sizeof err) == 0 &&
      lua_istable(L, -1)) {
    lua_getfield(L, -1, "results");
    if (lua_istable(L, -1)) {
      lua_rawgeti(L, -1, 1);
      if (lua_istable(L, -1)) {
        found = 1;
        owned = store_put(s, st->type, st->tenant) == 1;
      }
    }
  }
  lua_settop(L, top);
  continue_after_read(j, found, owned);
}

static void on_put(const amc_avi_resp_t *r, void *data) {
  job_t *j = data;
  amc_avi_sync_t *s = j->s;
  amc_avi_step_t *st = &j->plan.steps[j->i];
  if (r->ok) {
    cache_answer(s, st, r->body, r->body_len);
    next_step(j);
    return;
  }
  if (r->status == 404 && j->tries < 3) {
    j->tries++;
    store_del(s, st->type, st->tenant, st->name);
    continue_after_read(j, 0, 0);
    return;
  }
  if (r->status == 412 && j->tries < 3) {
    j->tries++;
    amc_buf_t p = AMC_BUF_INIT;
    amc_buf_printf(&p, "/api/%s/%s?include_name=true", st->type, st->uuid);
    call(j, "GET", p.data, st->tenant, NULL, 0, on_reread);
    amc_buf_free(&p);
    return;
  }
  job_fail(j, st, "PUT", r->error, r->transient);
}

static void on_reread(const amc_avi_resp_t *r, void *data) {
  job_t *j = data;
  amc_avi_sync_t *s = j->s;
  amc_avi_step_t *st = &j->plan.steps[j->i];
  if (r->status == 404) {
    store_del(s, st->type, st->tenant, st->name);
    continue_after_read(j, 0, 0);
    return;
  }
  if (!r->ok) {
    job_fail(j, st, "GET", r->error, r->transient);
    return;
  }
  int owned = cache_answer(s, st, r->body, r->body_len) == 1;
  continue_after_read(j, 1, owned);
}

static void on_delete(const amc_avi_resp_t *r, void *data) {
  job_t *j = data;
  amc_avi_sync_t *s = j->s;
  amc_avi_step_t *st = &j->plan.steps[j->i];
  if (r->ok || r->status == 404) {
    store_del(s, st->type, st->tenant, st->name);
    if (j->cleanup)
      j->cleaned++;
    next_step(j);
    return;
  }
  if ((r->status == 400 || r->status == 403) && r->message &&
      strstr(r->message, "Cannot delete, object is referred by")) {
    /* Still in use (by something outside this plan): try the rest, retry
     * the key later. */
    if (!j->err.len) {
      amc_buf_printf(&j->err, "DELETE %s %s: %s", st->type, st->name, r->error);
      j->transient = 1;
    }
    j->deferred = 1;
    next_step(j);
    return;
  }
  job_fail(j, st, "DELETE", r->error, r->transient);
}

static job_t *job_new(amc_avi_sync_t *s, const char *key, amc_avi_sync_cb cb,
                      void *data) {
  job_t *j = calloc(1, sizeof *j);
  if (!j)
    abort();
  j->s = s;
  j->key = key ? strdup(key) : NULL;
  j->cb = cb;
  j->data = data;
  j->next = s->jobs;
  s->jobs = j;
  return j;
}

static void fail_now(amc_avi_sync_t *s, const char *key, const char *why,
                     int transient, amc_avi_sync_cb cb, void *data) {
  job_t *j = job_new(s, key, cb, data);
  amc_buf_puts(&j->err, why);
  j->transient = transient;
  job_finish(j);
}

void amc_avi_sync_key(amc_avi_sync_t *s, const char *key,
                      const amc_translation_t *t, amc_avi_sync_cb cb,
                      void *data) {
  if (!s->synced) {
    fail_now(s, key,
             "the AVI cache is not synced yet (start has not succeeded)", 1, cb,
             data);
    return;
  }
  if (t && t->error) {
    fail_now(s, key, "the translation failed; AVI is left as it is", 0, cb,
             data);
    return;
  }
  job_t *j = job_new(s, key, cb, data);
  char err[300];
  int rc =
      t && t->partial
          ? amc_avi_plan_key_partial(s->L, &s->cache, &s->own, key, t->objects,
                                     t->n_objects, &j->plan, err, sizeof err)
          : amc_avi_plan_key(s->L, &s->cache, &s->own, key,
                             t ? t->objects : NULL, t ? t->n_objects : 0,
                             &j->plan, err, sizeof err);
  if (rc != 0) {
    amc_buf_puts(&j->err, err);
    j->transient = 0;
    job_finish(j);
    return;
  }
  amc_log(AMC_DEBUG, "avi.plan", AMC_S("key", key), AMC_I("steps", j->plan.n));
  run_step(j);
}

void amc_avi_sync_gc(amc_avi_sync_t *s, const char *const *live, size_t n,
                     amc_avi_sync_cb cb, void *data) {
  if (!s->synced) {
    fail_now(s, NULL, "gc refused: the AVI cache is not synced yet", 1, cb,
             data);
    return;
  }
  job_t *j = job_new(s, NULL, cb, data);
  amc_avi_plan_gc(&s->cache, live, n, &j->plan);
  amc_log(AMC_INFO, "avi.gc", AMC_I("deletes", j->plan.n));
  run_step(j);
}

/* ---- unchanged objects (memo replays) ----------------------------------- */

int amc_avi_sync_has_unchanged(const amc_avi_sync_t *s, const char *key,
                               const amc_translation_t *t) {
  if (!s->synced)
    return 0;
  for (size_t i = 0; i < t->n_objects; i++) {
    const amc_avi_object_t *o = &t->objects[i];
    if (!o->json && !amc_avi_unchanged_held(&s->cache, &s->own, key, o))
      return 0;
  }
  return 1;
}
