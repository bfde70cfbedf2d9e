/* http.c - libcurl multi driven by libuv. See http.h.
 *
 * Shape (after curl's multi-uv example, with its pitfalls avoided):
 *   - one uv_timer_t for CURLMOPT_TIMERFUNCTION; a 0 ms request ("call
 *     me as soon as possible", e.g. a request just added) runs from a
 *     uv_idle_t on the next loop iteration instead: never from inside
 *     curl's own callback, never spinning inside one timer phase (a 0 ms
 *     uv_timer restarted from its callback would, on libuv < 1.45), and
 *     without the 1 ms a rounded-up timer costs every change;
 *   - a request added outside curl (and while no stream is open) is
 *     driven right away, so on a kept-alive connection it is written
 *     before amc_http_start() returns; what finished meanwhile is
 *     delivered on the next iteration (no callback runs inside start);
 *   - one heap context with a uv_poll_t per socket curl reports; it is
 *     detached from curl on CURL_POLL_REMOVE or when curl closes the socket
 *     (CURLOPT_CLOSESOCKETFUNCTION stops polling *before* close(), so a
 *     reused fd number never meets a stale poll handle) and freed only in
 *     its close callback;
 *   - finished transfers are collected after every socket_action and their
 *     callbacks run with no curl call on the stack. */
#include "http.h"

#include "util/buf.h"
#include "util/log.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd; /* CURL_SOCKET_BAD once detached */
  amc_http_t *http;
  struct sock_ctx *next;
} sock_ctx_t;

struct amc_http {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  uv_idle_t soon;    /* a 0 ms curl timeout: drive on the next iteration */
  sock_ctx_t *socks; /* live (attached) socket contexts */
  amc_http_req_t *reqs;
  size_t n_reqs;
  int pending_closes; /* uv handles whose close callback has not run */
  int closing;
  int in_curl;      /* inside curl_multi_socket_action */
  int soon_drive;   /* curl asked to be run as soon as possible */
  int soon_collect; /* driven from start: deliver what finished */
  size_t n_streams; /* requests with on_chunk (user code inside curl) */
  void (*closed)(void *);
  void *closed_data;
};

struct amc_http_req {
  amc_http_t *http;
  CURL *easy;
  struct curl_slist *hdrs;
  struct curl_slist *connect_to; /* tls_server_name only */
  char *method, *url, *body;
  amc_buf_t resp_headers, resp_body;
  amc_http_done_fn done;
  amc_http_chunk_fn on_chunk;
  void *data;
  int cancelled;
  int in_done; /* its done callback is running */
  char errbuf[CURL_ERROR_SIZE];
  uint64_t start_ms;
  amc_http_req_t *prev, *next;
};

static void maybe_finish_close(amc_http_t *h) {
  if (h->closing && h->pending_closes == 0) {
    void (*cb)(void *) = h->closed;
    void *d = h->closed_data;
    free(h);
    if (cb)
      cb(d);
  }
}

static void sock_closed_cb(uv_handle_t *handle) {
  sock_ctx_t *c = handle->data;
  amc_http_t *h = c->http;
  free(c);
  h->pending_closes--;
  maybe_finish_close(h);
}

/* Stops polling and closes the uv handle; the context leaves the list. */
static void sock_detach(amc_http_t *h, sock_ctx_t *c) {
  for (sock_ctx_t **pp = &h->socks; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  }
  c->fd = CURL_SOCKET_BAD;
  uv_poll_stop(&c->poll);
  h->pending_closes++;
  uv_close((uv_handle_t *)&c->poll, sock_closed_cb);
}

static void check_done(amc_http_t *h);

/* Runs curl, then frees requests cancelled from inside it (on_chunk), then
 * delivers finished transfers. */
static void drive(amc_http_t *h, curl_socket_t fd, int flags) {
  int running = 0;
  h->in_curl++;
  curl_multi_socket_action(h->multi, fd, flags, &running);
  h->in_curl--;
  check_done(h);
}

static void poll_cb(uv_poll_t *p, int status, int events) {
  sock_ctx_t *c = p->data;
  amc_http_t *h = c->http;
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  drive(h, c->fd, flags);
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp,
                     void *socketp) {
  (void)e;
  amc_http_t *h = userp;
  sock_ctx_t *c = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (c) {
      curl_multi_assign(h->multi, s, NULL);
      if (c->fd != CURL_SOCKET_BAD)
        sock_detach(h, c);
    }
    return 0;
  }
  if (!c || c->fd == CURL_SOCKET_BAD) {
    c = calloc(1, sizeof *c);
    if (!c)
      return -1;
    if (uv_poll_init_socket(h->loop, &c->poll, s) != 0) {
      free(c);
      return -1;
    }
    c->poll.data = c;
    c->fd = s;
    c->http = h;
    c->next = h->socks;
    h->socks = c;
    curl_multi_assign(h->multi, s, c);
  }
  int ev = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
    ev |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
    ev |= UV_WRITABLE;
  uv_poll_start(&c->poll, ev, poll_cb);
  return 0;
}

/* curl is about to close `s`: stop polling it first (see top comment). */
static int closesocket_cb(void *clientp, curl_socket_t s) {
  amc_http_t *h = clientp;
  for (sock_ctx_t *c = h->socks; c; c = c->next) {
    if (c->fd == s) {
      sock_detach(h, c);
      break;
    }
  }
  return close(s);
}

static void timer_cb(uv_timer_t *t) {
  amc_http_t *h = t->data;
  drive(h, CURL_SOCKET_TIMEOUT, 0);
}

static void soon_cb(uv_idle_t *i) {
  amc_http_t *h = i->data;
  int run = h->soon_drive;
  h->soon_drive = h->soon_collect = 0;
  uv_idle_stop(&h->soon);
  if (run)
    drive(h, CURL_SOCKET_TIMEOUT, 0);
  else
    check_done(h);
}

static int timer_fn(CURLM *m, long timeout_ms, void *userp) {
  (void)m;
  amc_http_t *h = userp;
  if (h->closing)
    return 0;
  if (timeout_ms == 0) {
    uv_timer_stop(&h->timer);
    h->soon_drive = 1;
    uv_idle_start(&h->soon, soon_cb);
    return 0;
  }
  h->soon_drive = 0;
  if (!h->soon_collect)
    uv_idle_stop(&h->soon);
  if (timeout_ms < 0)
    uv_timer_stop(&h->timer);
  else
    uv_timer_start(&h->timer, timer_cb, (uint64_t)timeout_ms, 0);
  return 0;
}

amc_http_t *amc_http_new(uv_loop_t *loop) {
  static int global_done;
  if (!global_done) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      return NULL;
    global_done = 1;
  }
  amc_http_t *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->loop = loop;
  h->multi = curl_multi_init();
  if (!h->multi) {
    free(h);
    return NULL;
  }
  uv_timer_init(loop, &h->timer);
  h->timer.data = h;
  uv_idle_init(loop, &h->soon);
  h->soon.data = h;
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  return h;
}

static size_t header_cb(char *p, size_t size, size_t n, void *userp) {
  amc_http_req_t *r = userp;
  size_t len = size * n;
  /* A new status line (after 100 Continue or a proxy CONNECT) starts a new
   * header block: keep only the final response's headers. */
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
    amc_buf_reset(&r->resp_headers);
  amc_buf_append(&r->resp_headers, p, len);
  return len;
}

static size_t write_cb(char *p, size_t size, size_t n, void *userp) {
  amc_http_req_t *r = userp;
  size_t len = size * n;
  if (r->cancelled)
    return 0;
  if (r->on_chunk) {
    if (r->on_chunk(r, p, len, r->data) != 0 || r->cancelled)
      return 0;
    return len;
  }
  amc_buf_append(&r->resp_body, p, len);
  return len;
}

static void req_free(amc_http_req_t *r) {
  amc_http_t *h = r->http;
  if (r->prev)
    r->prev->next = r->next;
  else
    h->reqs = r->next;
  if (r->next)
    r->next->prev = r->prev;
  h->n_reqs--;
  if (r->on_chunk)
    h->n_streams--;
  if (r->easy) {
    curl_multi_remove_handle(h->multi, r->easy);
    curl_easy_cleanup(r->easy);
  }
  curl_slist_free_all(r->hdrs);
  curl_slist_free_all(r->connect_to);
  free(r->method);
  free(r->url);
  free(r->body);
  amc_buf_free(&r->resp_headers);
  amc_buf_free(&r->resp_body);
  free(r);
}

static void check_done(amc_http_t *h) {
  CURLMsg *msg;
  int left;
  for (amc_http_req_t *r = h->reqs, *nx; r; r = nx) {
    nx = r->next;
    if (r->cancelled)
      req_free(r);
  }
  while (!h->closing && (msg = curl_multi_info_read(h->multi, &left))) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    CURL *easy = msg->easy_handle;
    CURLcode rc = msg->data.result; /* copy before the handle goes */
    amc_http_req_t *r = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(h->multi, easy);
    if (!r)
      continue;
    if (r->cancelled) {
      req_free(r);
      continue;
    }
    amc_http_response_t resp = {0};
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp.status);
    if (rc != CURLE_OK) {
      resp.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
      resp.timed_out = (rc == CURLE_OPERATION_TIMEDOUT);
    }
    resp.headers = r->resp_headers.data ? r->resp_headers.data : "";
    resp.headers_len = r->resp_headers.len;
    resp.body = r->resp_body.data ? r->resp_body.data : "";
    resp.body_len = r->resp_body.len;
    resp.total_ms = (double)(uv_now(h->loop) - r->start_ms);
    amc_log(AMC_DEBUG, "http.done", AMC_S("method", r->method),
            AMC_S("url", r->url), AMC_I("status", resp.status),
            AMC_S("error", resp.error ? resp.error : ""),
            AMC_F("ms", resp.total_ms));
    r->in_done = 1;
    r->done(r, &resp, r->data);
    if (h->closing)
      return; /* amc_http_close freed every request, r included */
    req_free(r);
  }
}

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d)
    abort();
  if (n)
    memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static void set_blob(CURL *e, CURLoption opt, const char *pem) {
  struct curl_blob blob = {(void *)pem, strlen(pem), CURL_BLOB_COPY};
  curl_easy_setopt(e, opt, &blob);
}

int amc_http_server_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 253)
    return 0;
  for (; *s; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
      return 0;
  }
  return 1;
}

/* tls_server_name: libcurl verifies the certificate against (and sends as
 * SNI) the URL's host, and has no option to name another one. So the URL's
 * host becomes the server name, CURLOPT_CONNECT_TO sends the connection to
 * the original host and port, and an explicit Host header keeps the original
 * authority in the request (as client-go does). Plain http is left alone.
 * On success *url is the URL to give libcurl (owned by the caller) and
 * r->connect_to / r->hdrs are set; returns -1 on a malformed URL or name. */
static int apply_server_name(amc_http_req_t *r, const char *name, char **url,
                             int have_host) {
  int rc = -1;
  char *scheme = NULL, *host = NULL, *port = NULL, *given_port = NULL;
  amc_buf_t b = AMC_BUF_INIT;
  CURLU *u = curl_url();
  *url = NULL;
  if (!u || !amc_http_server_name_ok(name) ||
      curl_url_set(u, CURLUPART_URL, r->url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
    goto done;
  if (strcmp(scheme, "https") != 0) {
    rc = 0;
    goto done;
  }
  if (curl_url_get(u, CURLUPART_PORT, &given_port, 0) != CURLUE_OK)
    given_port = NULL;
  /* An IPv6 literal must be bracketed in a connect-to entry. */
  int v6 = strchr(host, ':') && host[0] != '[';
  amc_buf_printf(&b, "%s:%s:%s%s%s:%s", name, port, v6 ? "[" : "", host,
                 v6 ? "]" : "", port);
  r->connect_to = curl_slist_append(NULL, b.data);
  if (!r->connect_to)
    goto done;
  if (!have_host) {
    amc_buf_reset(&b);
    amc_buf_printf(&b, "Host: %s%s%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "",
                   given_port ? ":" : "", given_port ? given_port : "");
    struct curl_slist *n = curl_slist_append(r->hdrs, b.data);
    if (!n)
      goto done;
    r->hdrs = n;
  }
  char *out = NULL;
  if (curl_url_set(u, CURLUPART_HOST, name, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
    goto done;
  *url = strdup(out);
  curl_free(out);
  rc = *url ? 0 : -1;
done:
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(given_port);
  curl_url_cleanup(u);
  amc_buf_free(&b);
  return rc;
}

amc_http_req_t *amc_http_start(amc_http_t *h, const amc_http_opts_t *o,
                               amc_http_done_fn done, void *data) {
  if (!h || h->closing || !o || !o->url || !done)
    return NULL;
  amc_http_req_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->http = h;
  r->done = done;
  r->data = data;
  r->on_chunk = o->on_chunk;
  r->method = strdup(o->method ? o->method : "GET");
  r->url = strdup(o->url);
  r->easy = curl_easy_init();
  if (!r->method || !r->url || !r->easy)
    goto fail;
  CURL *e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000L);
  if (o->on_chunk) {
    /* Long-lived streams: notice dead peers. */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  }

  /* Method and body. */
  if (o->body || strcmp(r->method, "POST") == 0 ||
      strcmp(r->method, "PUT") == 0 || strcmp(r->method, "PATCH") == 0) {
    r->body = dupn(o->body ? o->body : "", o->body ? o->body_len : 0);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)(o->body ? o->body_len : 0));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    if (strcmp(r->method, "POST") != 0)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  } else if (strcmp(r->method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(r->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  }

  /* Headers; "Expect:" disables 100-continue round trips. */
  r->hdrs = curl_slist_append(NULL, "Expect:");
  for (const char *const *p = o->headers; p && *p; p++) {
    struct curl_slist *n = curl_slist_append(r->hdrs, *p);
    if (!n)
      goto fail;
    r->hdrs = n;
  }
  if (o->tls_server_name) {
    int have_host = 0;
    for (const char *const *p = o->headers; p && *p; p++)
      have_host |= strncasecmp(*p, "Host:", 5) == 0;
    char *url = NULL;
    if (apply_server_name(r, o->tls_server_name, &url, have_host) != 0)
      goto fail;
    if (url) {
      /* libcurl copies the URL string. */
      curl_easy_setopt(e, CURLOPT_URL, url);
      curl_easy_setopt(e, CURLOPT_CONNECT_TO, r->connect_to);
      free(url);
    }
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);

  /* TLS: verified unless explicitly insecure. */
  if (o->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  } else {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  }
  if (o->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
  if (o->ca_pem)
    set_blob(e, CURLOPT_CAINFO_BLOB, o->ca_pem);
  if (o->cert_file)
    curl_easy_setopt(e, CURLOPT_SSLCERT, o->cert_file);
  if (o->key_file)
    curl_easy_setopt(e, CURLOPT_SSLKEY, o->key_file);
  if (o->cert_pem)
    set_blob(e, CURLOPT_SSLCERT_BLOB, o->cert_pem);
  if (o->key_pem)
    set_blob(e, CURLOPT_SSLKEY_BLOB, o->key_pem);

  r->start_ms = uv_now(h->loop);
  r->next = h->reqs;
  if (h->reqs)
    h->reqs->prev = r;
  h->reqs = r;
  h->n_reqs++;
  if (r->on_chunk)
    h->n_streams++;
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    req_free(r);
    return NULL;
  }
  /* Send now, not on the next iteration (a route change's call goes out
   * before anything else the loop has to do). Not from inside curl, and
   * not while a stream is open: its on_chunk would run inside our
   * caller. Finished transfers wait for soon_cb. */
  if (h->soon_drive && !h->in_curl && h->n_streams == 0) {
    int running = 0;
    h->soon_drive = 0;
    h->in_curl++;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    h->in_curl--;
    h->soon_collect = 1;
    uv_idle_start(&h->soon, soon_cb);
  }
  return r;

fail:
  if (r->easy)
    curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->hdrs);
  curl_slist_free_all(r->connect_to);
  free(r->method);
  free(r->url);
  free(r->body);
  free(r);
  return NULL;
}

void amc_http_cancel(amc_http_req_t *r) {
  if (!r || r->cancelled || r->in_done)
    return;
  r->cancelled = 1;
  /* Inside on_chunk curl is on the stack: the write callback then returns 0
   * and drive() frees the request once curl has returned. */
  if (r->http->in_curl)
    return;
  req_free(r);
}

long amc_http_req_status(amc_http_req_t *r) {
  long code = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
  return code;
}

const char *amc_http_req_headers(amc_http_req_t *r, size_t *len) {
  *len = r->resp_headers.len;
  return r->resp_headers.data ? r->resp_headers.data : "";
}

size_t amc_http_active(const amc_http_t *h) {
  return h->n_reqs;
}

static void timer_closed_cb(uv_handle_t *handle) {
  amc_http_t *h = handle->data;
  h->pending_closes--;
  maybe_finish_close(h);
}

void amc_http_close(amc_http_t *h, void (*closed)(void *), void *data) {
  if (!h)
    return;
  while (h->reqs) {
    h->reqs->cancelled = 1;
    req_free(h->reqs);
  }
  /* curl_multi_cleanup may still call the socket callback: run it while
   * the contexts are alive, then close what remains. */
  curl_multi_cleanup(h->multi);
  h->multi = NULL;
  h->closing = 1;
  h->closed = closed;
  h->closed_data = data;
  while (h->socks)
    sock_detach(h, h->socks);
  uv_timer_stop(&h->timer);
  uv_idle_stop(&h->soon);
  h->pending_closes += 2;
  uv_close((uv_handle_t *)&h->timer, timer_closed_cb);
  uv_close((uv_handle_t *)&h->soon, timer_closed_cb);
}

const char *amc_http_header_find(const char *headers, size_t len,
                                 const char *name, const char *from,
                                 size_t *vlen) {
  size_t nlen = strlen(name);
  const char *end = headers + len;
  const char *p = headers;
  if (from) {
    /* Skip to the line after the one containing `from`. */
    p = memchr(from, '\n', (size_t)(end - from));
    if (!p)
      return NULL;
    p++;
  }
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
      eol = end;
    if ((size_t)(eol - p) > nlen && p[nlen] == ':' &&
        strncasecmp(p, name, nlen) == 0) {
      const char *v = p + nlen + 1;
      const char *ve = eol;
      while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
      *vlen = (size_t)(ve - v);
      return v;
    }
    p = eol + 1;
  }
  return NULL;
}
