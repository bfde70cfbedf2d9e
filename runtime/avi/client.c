/* avi/client.c - session, token bucket, retries. See client.h.
 *
 * One "pump" timer drives everything: it moves calls whose backoff is over
 * into the ready queue, starts a login when the session is missing, and
 * sends ready calls while tokens and in-flight slots allow; then it re-arms
 * itself for the next token or the next backoff deadline. */
#define _GNU_SOURCE /* memmem */
#include "avi/client.h"

#include "json.h"
#include "util/buf.h"
#include "util/log.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct call {
  amc_avi_client_t *c;
  char *method, *path, *tenant, *body;
  size_t body_len;
  int retries;  /* transient resends so far */
  int relogins; /* 401/419 resends so far */
  unsigned gen; /* session generation it was sent with */
  uint64_t due; /* backoff deadline (loop ms) */
  amc_http_req_t *req;
  amc_avi_done_fn done;
  void *data;
  struct call *next;
} call_t;

enum { S_NONE, S_LOGGING_IN, S_READY };

struct amc_avi_client {
  amc_http_t *http;
  uv_loop_t *loop;
  uv_timer_t pump;
  char *base, *user, *pass, *version, *ca_file;
  int insecure;
  double rate;
  int burst, max_inflight, max_retries;
  long timeout_ms, backoff_base, backoff_max;
  /* session */
  int state;
  unsigned gen;
  char *csrf, *sessionid;
  char *found_version;
  int login_tries;
  uint64_t login_due;
  amc_http_req_t *login_req;
  /* queues */
  call_t *ready, *ready_tail; /* FIFO */
  call_t *delayed;            /* unordered */
  call_t *inflight;           /* unordered */
  size_t n_inflight;
  double tokens;
  uint64_t last_refill;
  int reachable;
  lua_State *L;
  amc_avi_observe_fn observe;
  void *observe_data;
  amc_http_req_t *logout_req;
  void (*logout_done)(void *);
  void *logout_data;
};

static void pump(amc_avi_client_t *c);

static char *xstrdup(const char *s) {
  return s ? strdup(s) : NULL;
}

static void call_free(call_t *k) {
  free(k->method);
  free(k->path);
  free(k->tenant);
  free(k->body);
  free(k);
}

static void list_remove(call_t **head, call_t *k) {
  for (call_t **pp = head; *pp; pp = &(*pp)->next) {
    if (*pp == k) {
      *pp = k->next;
      k->next = NULL;
      return;
    }
  }
}

static void ready_push_front(amc_avi_client_t *c, call_t *k) {
  k->next = c->ready;
  c->ready = k;
  if (!c->ready_tail)
    c->ready_tail = k;
}

static void ready_push_back(amc_avi_client_t *c, call_t *k) {
  k->next = NULL;
  if (c->ready_tail)
    c->ready_tail->next = k;
  else
    c->ready = k;
  c->ready_tail = k;
}

static call_t *ready_pop(amc_avi_client_t *c) {
  call_t *k = c->ready;
  if (k) {
    c->ready = k->next;
    if (!c->ready)
      c->ready_tail = NULL;
    k->next = NULL;
  }
  return k;
}

static void pump_cb(uv_timer_t *t) {
  pump(t->data);
}

static void schedule(amc_avi_client_t *c, uint64_t delay) {
  uv_timer_start(&c->pump, pump_cb, delay, 0);
}

int amc_avi_classify(long status, const char *msg) {
  if (!msg)
    msg = "";
  if (status == 0 || status == 408 || status == 409 || status == 412 ||
      status == 419 || status == 429)
    return 1;
  if (status >= 500)
    return strstr(msg, "Import error") == NULL;
  if (status == 400 || status == 403 || status == 404) {
    static const char *const transient[] = {
        "object not found",      "Cannot delete, object is referred by",
        "No available free IPs", "disallowed during upgrade",
        "does not exist!",       NULL};
    for (int i = 0; transient[i]; i++) {
      if (strstr(msg, transient[i]))
        return 1;
    }
  }
  return 0;
}

/* The controller's message: the "error" string of a JSON body, else the
 * body text; at most 300 bytes, one line. */
static void extract_message(amc_avi_client_t *c, const char *body, size_t len,
                            amc_buf_t *out) {
  lua_State *L = c->L;
  char err[128];
  int top = lua_gettop(L);
  if (len && amc_json_decode(L, body, len, err, sizeof err) == 0 &&
      lua_istable(L, -1)) {
    lua_getfield(L, -1, "error");
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t n;
      const char *s = lua_tolstring(L, -1, &n);
      amc_buf_append(out, s, n > 300 ? 300 : n);
      lua_settop(L, top);
      return;
    }
  }
  lua_settop(L, top);
  size_t n = len > 300 ? 300 : len;
  for (size_t i = 0; i < n; i++) {
    char ch = body[i];
    amc_buf_putc(out, (ch == '\n' || ch == '\r') ? ' ' : ch);
  }
  while (out->len && out->data[out->len - 1] == ' ')
    out->data[--out->len] = '\0';
}

static void finish(amc_avi_client_t *c, call_t *k, long status,
                   const char *transport_err, const char *body, size_t len) {
  amc_avi_resp_t r = {
      .status = status, .body = body ? body : "", .body_len = body ? len : 0};
  amc_buf_t msg = AMC_BUF_INIT, err = AMC_BUF_INIT;
  r.ok = status >= 200 && status < 300 && !transport_err;
  if (!r.ok) {
    if (transport_err)
      amc_buf_puts(&msg, transport_err);
    else
      extract_message(c, body, len, &msg);
    if (!msg.data)
      amc_buf_puts(&msg, "");
    if (transport_err)
      amc_buf_printf(&err, "%s", msg.data);
    else
      amc_buf_printf(&err, "HTTP %ld: %s", status,
                     msg.len ? msg.data : "(no message)");
    r.message = msg.data;
    r.error = err.data;
    r.transient = amc_avi_classify(transport_err ? 0 : status, msg.data);
  }
  k->done(&r, k->data);
  amc_buf_free(&msg);
  amc_buf_free(&err);
  call_free(k);
}

static long backoff_ms(amc_avi_client_t *c, int n) {
  double d = (double)c->backoff_base;
  for (int i = 0; i < n && d < (double)c->backoff_max; i++)
    d *= 2;
  if (d > (double)c->backoff_max)
    d = (double)c->backoff_max;
  d *= 0.5 + 0.5 * ((double)rand() / ((double)RAND_MAX + 1.0));
  return (long)d;
}

/* Picks csrftoken / sessionid / avi-sessionid out of Set-Cookie headers. */
static void take_cookies(amc_avi_client_t *c, const char *h, size_t len) {
  const char *v = NULL;
  size_t vlen;
  while ((v = amc_http_header_find(h, len, "Set-Cookie", v, &vlen))) {
    const char *eq = memchr(v, '=', vlen);
    if (!eq)
      continue;
    size_t nlen = (size_t)(eq - v);
    const char *val = eq + 1;
    const char *semi = memchr(val, ';', vlen - nlen - 1);
    size_t vl = semi ? (size_t)(semi - val) : vlen - nlen - 1;
    char **slot = NULL;
    if (nlen == 9 && memcmp(v, "csrftoken", 9) == 0)
      slot = &c->csrf;
    else if ((nlen == 9 && memcmp(v, "sessionid", 9) == 0) ||
             (nlen == 13 && memcmp(v, "avi-sessionid", 13) == 0))
      slot = &c->sessionid;
    if (slot && vl > 0) {
      free(*slot);
      *slot = strndup(val, vl);
    }
  }
}

static void observe(amc_avi_client_t *c, const char *method, const char *path,
                    long status) {
  if (!c->observe)
    return;
  char p[256];
  size_t n = strcspn(path, "?");
  if (n >= sizeof p)
    n = sizeof p - 1;
  memcpy(p, path, n);
  p[n] = '\0';
  c->observe(method, p, status, c->observe_data);
}

static void fail_all_waiting(amc_avi_client_t *c, long status, const char *msg,
                             int transient) {
  call_t *all = NULL;
  call_t *k;
  while ((k = ready_pop(c))) {
    k->next = all;
    all = k;
  }
  while ((k = c->delayed)) {
    c->delayed = k->next;
    k->next = all;
    all = k;
  }
  while ((k = all)) {
    all = k->next;
    amc_avi_resp_t r = {.status = status,
                        .transient = transient,
                        .error = msg,
                        .message = msg,
                        .body = ""};
    k->done(&r, k->data);
    call_free(k);
  }
}

static void login_done(amc_http_req_t *req, const amc_http_response_t *resp,
                       void *data) {
  (void)req;
  amc_avi_client_t *c = data;
  c->login_req = NULL;
  observe(c, "POST", "/login", resp->status);
  if (!resp->error && resp->status == 200) {
    take_cookies(c, resp->headers, resp->headers_len);
    if (!c->csrf || !c->sessionid) {
      c->state = S_NONE;
      c->reachable = 1;
      amc_log(AMC_ERROR, "avi.login_failed",
              AMC_S("error", "no session cookies in the login answer"));
      fail_all_waiting(c, 200, "login failed: no session cookies", 0);
      return;
    }
    if (!c->version) {
      char err[128];
      lua_State *L = c->L;
      if (amc_json_decode(L, resp->body, resp->body_len, err, sizeof err) ==
              0 &&
          lua_istable(L, -1)) {
        lua_getfield(L, -1, "version");
        if (lua_istable(L, -1)) {
          lua_getfield(L, -1, "Version");
          if (lua_type(L, -1) == LUA_TSTRING) {
            free(c->found_version);
            c->found_version = strdup(lua_tostring(L, -1));
          }
        }
      }
      lua_settop(L, 0);
    }
    c->state = S_READY;
    c->gen++;
    c->login_tries = 0;
    c->reachable = 1;
    amc_log(AMC_INFO, "avi.login", AMC_S("controller", c->base),
            AMC_S("version", amc_avi_client_version(c)));
    pump(c);
    return;
  }
  /* Failed. 401 on /login: bad credentials, do not hammer. */
  amc_buf_t msg = AMC_BUF_INIT;
  if (resp->error)
    amc_buf_puts(&msg, resp->error);
  else
    extract_message(c, resp->body, resp->body_len, &msg);
  c->state = S_NONE;
  c->reachable = resp->error ? 0 : 1;
  int transient = resp->error ? 1 : amc_avi_classify(resp->status, msg.data);
  if (resp->status == 401 || resp->status == 403)
    transient = 0;
  amc_buf_t full = AMC_BUF_INIT;
  if (resp->error)
    amc_buf_printf(&full, "login failed: %s", msg.data ? msg.data : "");
  else
    amc_buf_printf(&full, "login failed: HTTP %ld: %s", resp->status,
                   msg.data ? msg.data : "");
  amc_log(AMC_WARN, "avi.login_failed", AMC_I("status", resp->status),
          AMC_S("error", full.data), AMC_I("attempt", c->login_tries + 1));
  if (transient && c->login_tries < c->max_retries) {
    c->login_tries++;
    c->login_due = uv_now(c->loop) + (uint64_t)backoff_ms(c, c->login_tries);
    pump(c);
  } else {
    c->login_tries = 0;
    fail_all_waiting(c, resp->status, full.data, transient);
  }
  amc_buf_free(&msg);
  amc_buf_free(&full);
}

static void start_login(amc_avi_client_t *c) {
  amc_buf_t url = AMC_BUF_INIT, body = AMC_BUF_INIT, referer = AMC_BUF_INIT;
  amc_buf_printf(&url, "%s/login", c->base);
  /* JSON body; the password goes through the escaper, never a log. */
  lua_State *L = c->L;
  lua_createtable(L, 0, 2);
  lua_pushstring(L, c->user);
  lua_setfield(L, -2, "username");
  lua_pushstring(L, c->pass);
  lua_setfield(L, -2, "password");
  char err[128];
  amc_json_encode(L, -1, &body, err, sizeof err);
  lua_settop(L, 0);
  amc_buf_printf(&referer, "Referer: %s", c->base);
  const char *hdrs[] = {"Content-Type: application/json",
                        "Accept: application/json", referer.data, NULL};
  amc_http_opts_t o = {.method = "POST",
                       .url = url.data,
                       .headers = hdrs,
                       .body = body.data,
                       .body_len = body.len,
                       .timeout_ms = c->timeout_ms,
                       .ca_file = c->ca_file,
                       .insecure = c->insecure};
  free(c->csrf);
  free(c->sessionid);
  c->csrf = c->sessionid = NULL;
  c->state = S_LOGGING_IN;
  c->login_req = amc_http_start(c->http, &o, login_done, c);
  /* Wipe the copy of the password in the body buffer. */
  if (body.data)
    memset(body.data, 0, body.len);
  amc_buf_free(&url);
  amc_buf_free(&body);
  amc_buf_free(&referer);
  if (!c->login_req) {
    c->state = S_NONE;
    fail_all_waiting(c, 0, "login failed: cannot start the request", 0);
  }
}

static void call_done(amc_http_req_t *req, const amc_http_response_t *resp,
                      void *data);

/* Appends the NULL-terminated `parts` and a NUL to b; returns where the
 * string starts (an offset: b may move while more are added). */
static size_t put_str(amc_buf_t *b, const char *const *parts) {
  size_t at = b->len;
  for (; *parts; parts++)
    amc_buf_puts(b, *parts);
  amc_buf_putc(b, '\0');
  return at;
}

static void send_call(amc_avi_client_t *c, call_t *k) {
  /* One buffer, NUL-separated strings, no printf: this is on the path of
   * every change. */
  amc_buf_t b = AMC_BUF_INIT;
  size_t at[7];
  int n = 0;
  const char *v = amc_avi_client_version(c);
  const char *csrf = c->csrf ? c->csrf : "",
             *sid = c->sessionid ? c->sessionid : "";
  size_t url = put_str(&b, (const char *const[]){c->base, k->path, NULL});
  at[n++] = put_str(
      &b, (const char *const[]){"Content-Type: application/json", NULL});
  at[n++] =
      put_str(&b, (const char *const[]){"Accept: application/json", NULL});
  at[n++] = put_str(&b, (const char *const[]){"Cookie: csrftoken=", csrf,
                                              "; sessionid=", sid,
                                              "; avi-sessionid=", sid, NULL});
  at[n++] = put_str(&b, (const char *const[]){"X-CSRFToken: ", csrf, NULL});
  at[n++] = put_str(&b, (const char *const[]){"Referer: ", c->base, NULL});
  if (*v)
    at[n++] = put_str(&b, (const char *const[]){"X-Avi-Version: ", v, NULL});
  if (k->tenant)
    at[n++] =
        put_str(&b, (const char *const[]){"X-Avi-Tenant: ", k->tenant, NULL});
  const char *hdrs[8];
  for (int i = 0; i < n; i++)
    hdrs[i] = b.data + at[i];
  hdrs[n] = NULL;
  amc_http_opts_t o = {.method = k->method,
                       .url = b.data + url,
                       .headers = hdrs,
                       .body = k->body,
                       .body_len = k->body_len,
                       .timeout_ms = c->timeout_ms,
                       .ca_file = c->ca_file,
                       .insecure = c->insecure};
  k->gen = c->gen;
  k->req = amc_http_start(c->http, &o, call_done, k);
  /* the cookie and the CSRF token */
  memset(b.data, 0, b.len);
  amc_buf_free(&b);
  if (!k->req) {
    finish(c, k, 0, "cannot start the HTTP request", NULL, 0);
    return;
  }
  k->next = c->inflight;
  c->inflight = k;
  c->n_inflight++;
}

static void retry_later(amc_avi_client_t *c, call_t *k) {
  k->retries++;
  k->due = uv_now(c->loop) + (uint64_t)backoff_ms(c, k->retries - 1);
  k->next = c->delayed;
  c->delayed = k;
}

static void call_done(amc_http_req_t *req, const amc_http_response_t *resp,
                      void *data) {
  (void)req;
  call_t *k = data;
  amc_avi_client_t *c = k->c;
  k->req = NULL;
  list_remove(&c->inflight, k);
  c->n_inflight--;
  long st = resp->error ? 0 : resp->status;
  observe(c, k->method, k->path, st);
  amc_log(AMC_DEBUG, "avi.call", AMC_S("method", k->method),
          AMC_S("path", k->path), AMC_S("tenant", k->tenant ? k->tenant : ""),
          AMC_I("status", st), AMC_F("ms", resp->total_ms),
          AMC_I("retry", k->retries));
  if (resp->error) {
    c->reachable = 0;
    if (k->retries < c->max_retries) {
      amc_log(AMC_INFO, "avi.retry", AMC_S("method", k->method),
              AMC_S("path", k->path), AMC_S("error", resp->error));
      retry_later(c, k);
      pump(c);
      return;
    }
    finish(c, k, 0, resp->error, NULL, 0);
    pump(c);
    return;
  }
  c->reachable = 1;
  if (k->gen == c->gen)
    take_cookies(c, resp->headers, resp->headers_len);
  if ((st == 401 || st == 419) && k->relogins < 3) {
    k->relogins++;
    if (k->gen == c->gen && c->state == S_READY) {
      amc_log(AMC_INFO, "avi.session_lost", AMC_I("status", st),
              AMC_S("path", k->path));
      c->state = S_NONE;
    }
    ready_push_front(c, k);
    pump(c);
    return;
  }
  int retryable =
      st == 429 || st == 502 || st == 503 || st == 504 ||
      (st == 500 && !memmem(resp->body, resp->body_len, "Import error", 12));
  if (retryable && k->retries < c->max_retries) {
    amc_log(AMC_INFO, "avi.retry", AMC_S("method", k->method),
            AMC_S("path", k->path), AMC_I("status", st));
    retry_later(c, k);
    pump(c);
    return;
  }
  finish(c, k, st, NULL, resp->body, resp->body_len);
  pump(c);
}

static void pump(amc_avi_client_t *c) {
  uint64_t now = uv_now(c->loop);
  uint64_t next = UINT64_MAX;
  /* Backoffs that are over go to the front, in any order. */
  for (call_t **pp = &c->delayed; *pp;) {
    call_t *k = *pp;
    if (k->due <= now) {
      *pp = k->next;
      ready_push_front(c, k);
    } else {
      if (k->due < next)
        next = k->due;
      pp = &k->next;
    }
  }
  /* Refill the bucket. */
  c->tokens += (double)(now - c->last_refill) * c->rate / 1000.0;
  if (c->tokens > c->burst)
    c->tokens = c->burst;
  c->last_refill = now;

  if (c->ready || c->delayed) {
    if (c->state == S_NONE && !c->login_req) {
      if (c->login_due > now) {
        if (c->login_due < next)
          next = c->login_due;
      } else if (c->tokens >= 1) {
        c->tokens -= 1;
        start_login(c);
      }
    }
  }
  while (c->state == S_READY && c->ready &&
         c->n_inflight < (size_t)c->max_inflight && c->tokens >= 1) {
    c->tokens -= 1;
    send_call(c, ready_pop(c));
  }
  int want_token =
      c->ready && c->tokens < 1 &&
      (c->state == S_READY || (c->state == S_NONE && c->login_due <= now));
  if (want_token) {
    uint64_t t = now + (uint64_t)((1.0 - c->tokens) * 1000.0 / c->rate) + 1;
    if (t < next)
      next = t;
  }
  if (next != UINT64_MAX)
    schedule(c, next > now ? next - now : 0);
  else
    uv_timer_stop(&c->pump);
}

amc_avi_client_t *amc_avi_client_new(amc_http_t *http, uv_loop_t *loop,
                                     const amc_avi_client_opts_t *o) {
  if (!http || !loop || !o || !o->base_url || !o->username || !o->password)
    return NULL;
  amc_avi_client_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->http = http;
  c->loop = loop;
  c->base = strdup(o->base_url);
  size_t bl = strlen(c->base);
  while (bl > 0 && c->base[bl - 1] == '/')
    c->base[--bl] = '\0';
  c->user = strdup(o->username);
  c->pass = strdup(o->password);
  c->version = o->version && *o->version ? strdup(o->version) : NULL;
  c->ca_file = xstrdup(o->ca_file);
  c->insecure = o->insecure;
  c->rate = o->rate > 0 ? o->rate : 20;
  c->burst = o->burst > 0 ? o->burst : 5;
  c->max_inflight = o->max_inflight > 0 ? o->max_inflight : 4;
  c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
  c->max_retries = o->max_retries > 0   ? o->max_retries
                   : o->max_retries < 0 ? 0
                                        : 6;
  c->backoff_base = o->backoff_base_ms > 0 ? o->backoff_base_ms : 200;
  c->backoff_max = o->backoff_max_ms > 0 ? o->backoff_max_ms : 5000;
  c->tokens = c->burst;
  c->last_refill = uv_now(loop);
  c->L = luaL_newstate();
  if (!c->L || !c->base || !c->user || !c->pass) {
    amc_avi_client_free(c);
    return NULL;
  }
  luaL_checkstack(c->L, AMC_JSON_MAX_DEPTH + 16, NULL);
  uv_timer_init(loop, &c->pump);
  c->pump.data = c;
  return c;
}

void amc_avi_client_set_observer(amc_avi_client_t *c, amc_avi_observe_fn fn,
                                 void *data) {
  c->observe = fn;
  c->observe_data = data;
}

int amc_avi_client_call(amc_avi_client_t *c, const char *method,
                        const char *path, const char *tenant, const char *body,
                        size_t body_len, amc_avi_done_fn done, void *data) {
  if (!c || !method || !path || !done)
    return -1;
  /* `next` links are absolute: keep the path from "/api/" on. */
  if (strncmp(path, "/api/", 5) != 0) {
    const char *p = strstr(path, "/api/");
    if (!p)
      return -1;
    path = p;
  }
  call_t *k = calloc(1, sizeof *k);
  if (!k)
    return -1;
  k->c = c;
  k->method = strdup(method);
  k->path = strdup(path);
  k->tenant = xstrdup(tenant);
  if (body) {
    k->body = malloc(body_len + 1);
    memcpy(k->body, body, body_len);
    k->body[body_len] = '\0';
    k->body_len = body_len;
  }
  k->done = done;
  k->data = data;
  ready_push_back(c, k);
  pump(c);
  return 0;
}

int amc_avi_client_reachable(const amc_avi_client_t *c) {
  return c->reachable;
}

const char *amc_avi_client_version(const amc_avi_client_t *c) {
  if (c->version)
    return c->version;
  return c->found_version ? c->found_version : "";
}

size_t amc_avi_client_pending(const amc_avi_client_t *c) {
  size_t n = c->n_inflight;
  for (call_t *k = c->ready; k; k = k->next)
    n++;
  for (call_t *k = c->delayed; k; k = k->next)
    n++;
  return n;
}

static void logout_cb(amc_http_req_t *req, const amc_http_response_t *resp,
                      void *data) {
  (void)req;
  amc_avi_client_t *c = data;
  c->logout_req = NULL;
  observe(c, "POST", "/logout", resp->error ? 0 : resp->status);
  amc_log(AMC_DEBUG, "avi.logout", AMC_I("status", resp->status));
  if (c->logout_done)
    c->logout_done(c->logout_data);
}

int amc_avi_client_logout(amc_avi_client_t *c, void (*done)(void *),
                          void *data) {
  if (c->state != S_READY || amc_avi_client_pending(c) > 0 || c->logout_req) {
    if (done)
      done(data);
    return 0;
  }
  amc_buf_t url = AMC_BUF_INIT, cookie = AMC_BUF_INIT, csrf = AMC_BUF_INIT,
            ref = AMC_BUF_INIT;
  amc_buf_printf(&url, "%s/logout", c->base);
  amc_buf_printf(&cookie,
                 "Cookie: csrftoken=%s; sessionid=%s; avi-sessionid=%s",
                 c->csrf, c->sessionid, c->sessionid);
  amc_buf_printf(&csrf, "X-CSRFToken: %s", c->csrf);
  amc_buf_printf(&ref, "Referer: %s", c->base);
  const char *hdrs[] = {"Content-Type: application/json", cookie.data,
                        csrf.data, ref.data, NULL};
  amc_http_opts_t o = {.method = "POST",
                       .url = url.data,
                       .headers = hdrs,
                       .timeout_ms =
                           c->timeout_ms < 5000 ? c->timeout_ms : 5000,
                       .ca_file = c->ca_file,
                       .insecure = c->insecure};
  c->logout_done = done;
  c->logout_data = data;
  c->state = S_NONE;
  c->logout_req = amc_http_start(c->http, &o, logout_cb, c);
  memset(cookie.data, 0, cookie.len);
  memset(csrf.data, 0, csrf.len);
  amc_buf_free(&url);
  amc_buf_free(&cookie);
  amc_buf_free(&csrf);
  amc_buf_free(&ref);
  free(c->csrf);
  free(c->sessionid);
  c->csrf = c->sessionid = NULL;
  if (!c->logout_req) {
    if (done)
      done(data);
    return 0;
  }
  return 1;
}

static void pump_closed(uv_handle_t *h) {
  free(h->data);
}

void amc_avi_client_free(amc_avi_client_t *c) {
  if (!c)
    return;
  call_t *k;
  while ((k = ready_pop(c)))
    call_free(k);
  while ((k = c->delayed)) {
    c->delayed = k->next;
    call_free(k);
  }
  while ((k = c->inflight)) {
    c->inflight = k->next;
    amc_http_cancel(k->req);
    call_free(k);
  }
  if (c->login_req)
    amc_http_cancel(c->login_req);
  if (c->logout_req)
    amc_http_cancel(c->logout_req);
  if (c->pass) {
    memset(c->pass, 0, strlen(c->pass));
    free(c->pass);
  }
  free(c->csrf);
  free(c->sessionid);
  free(c->base);
  free(c->user);
  free(c->version);
  free(c->found_version);
  free(c->ca_file);
  if (c->L)
    lua_close(c->L);
  if (c->pump.loop) {
    /* The timer is part of `c`: free `c` in its close callback. */
    c->pump.data = c;
    uv_close((uv_handle_t *)&c->pump, pump_closed);
  } else {
    free(c);
  }
}
