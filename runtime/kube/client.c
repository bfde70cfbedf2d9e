/* client.c - Kubernetes API calls (see client.h). */
#include "kube/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kjson.h"
#include "util/log.h"

#define ERROR_BODY_MAX (64 * 1024)

struct amc_kube_client {
  uv_loop_t *loop;
  amc_http_t *http;
  amc_kubeconfig_t cfg; /* deep copy */
  amc_token_source_t *tokens;
  unsigned unauthorized;
};

struct amc_kube_call {
  amc_kube_client_t *c;
  amc_http_req_t *req;
  char *method, *path, *content_type, *body;
  size_t body_len;
  long timeout_ms;
  amc_kube_chunk_fn on_chunk;
  amc_kube_done_fn done;
  void *data;
  int retried; /* already retried after a 401 */
  amc_buf_t errbody;
};

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

amc_kube_client_t *amc_kube_client_new(uv_loop_t *loop, amc_http_t *http,
                                       const amc_kubeconfig_t *cfg) {
  amc_kube_client_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->loop = loop;
  c->http = http;
  c->cfg.server = dup_or_null(cfg->server);
  c->cfg.ca_file = dup_or_null(cfg->ca_file);
  c->cfg.ca_pem = dup_or_null(cfg->ca_pem);
  c->cfg.cert_file = dup_or_null(cfg->cert_file);
  c->cfg.cert_pem = dup_or_null(cfg->cert_pem);
  c->cfg.key_file = dup_or_null(cfg->key_file);
  c->cfg.key_pem = dup_or_null(cfg->key_pem);
  c->cfg.token = dup_or_null(cfg->token);
  c->cfg.token_file = dup_or_null(cfg->token_file);
  c->cfg.tls_server_name = dup_or_null(cfg->tls_server_name);
  c->cfg.insecure = cfg->insecure;
  c->cfg.namespace_ = dup_or_null(cfg->namespace_);
  c->cfg.context = dup_or_null(cfg->context);
  c->cfg.origin = dup_or_null(cfg->origin);
  c->tokens = amc_token_source_new(&c->cfg, 0);
  if (!c->cfg.server || !c->tokens) {
    amc_kube_client_free(c);
    return NULL;
  }
  if (c->cfg.insecure)
    amc_log(AMC_WARN, "kube.tls_insecure", AMC_S("server", c->cfg.server),
            AMC_S("context", c->cfg.context ? c->cfg.context : ""));
  return c;
}

void amc_kube_client_free(amc_kube_client_t *c) {
  if (!c)
    return;
  amc_kubeconfig_free(&c->cfg);
  amc_token_source_free(c->tokens);
  free(c);
}

const amc_kubeconfig_t *amc_kube_client_config(const amc_kube_client_t *c) {
  return &c->cfg;
}

unsigned amc_kube_client_unauthorized(const amc_kube_client_t *c) {
  return c->unauthorized;
}

unsigned amc_kube_client_token_reads(const amc_kube_client_t *c) {
  return amc_token_source_reads(c->tokens);
}

static void call_free(amc_kube_call_t *k) {
  free(k->method);
  free(k->path);
  free(k->content_type);
  free(k->body);
  amc_buf_free(&k->errbody);
  free(k);
}

static int start(amc_kube_call_t *k);

static int on_chunk(amc_http_req_t *req, const char *p, size_t n, void *data) {
  amc_kube_call_t *k = data;
  long st = amc_http_req_status(req);
  if (st < 200 || st > 299) {
    /* An error answer to a stream: keep (a bounded part of) the Status. */
    if (k->errbody.len < ERROR_BODY_MAX)
      amc_buf_append(&k->errbody, p,
                     n < ERROR_BODY_MAX - k->errbody.len
                         ? n
                         : ERROR_BODY_MAX - k->errbody.len);
    return 0;
  }
  return k->on_chunk(k->data, p, n);
}

static void on_done(amc_http_req_t *req, const amc_http_response_t *resp,
                    void *data) {
  (void)req;
  amc_kube_call_t *k = data;
  k->req = NULL;
  if (resp->status == 401) {
    k->c->unauthorized++;
    int file = amc_token_source_invalidate(k->c->tokens);
    amc_log(AMC_WARN, "kube.unauthorized", AMC_S("path", k->path),
            AMC_B("retry", file && !k->retried));
    if (file && !k->retried) {
      k->retried = 1;
      amc_buf_reset(&k->errbody);
      if (start(k) == 0)
        return;
    }
  }
  amc_kube_resp_t r = {.status = resp->status, .error = resp->error};
  if (k->on_chunk) {
    r.body = k->errbody.data ? k->errbody.data : "";
    r.body_len = k->errbody.len;
  } else {
    r.body = resp->body ? resp->body : "";
    r.body_len = resp->body_len;
  }
  k->done(k->data, &r);
  call_free(k);
}

static int start(amc_kube_call_t *k) {
  amc_kube_client_t *c = k->c;
  amc_buf_t url = AMC_BUF_INIT, auth = AMC_BUF_INIT, ct = AMC_BUF_INIT;
  amc_buf_printf(&url, "%s%s", c->cfg.server, k->path);
  const char *headers[4];
  size_t nh = 0;
  headers[nh++] = "Accept: application/json";
  const char *tok = amc_token_source_get(c->tokens, uv_now(c->loop));
  if (tok) {
    amc_buf_printf(&auth, "Authorization: Bearer %s", tok);
    headers[nh++] = auth.data;
  }
  if (k->content_type) {
    amc_buf_printf(&ct, "Content-Type: %s", k->content_type);
    headers[nh++] = ct.data;
  }
  headers[nh] = NULL;
  amc_http_opts_t o = {
      .method = k->method,
      .url = url.data,
      .headers = headers,
      .body = k->body,
      .body_len = k->body_len,
      .timeout_ms = k->timeout_ms,
      .ca_file = c->cfg.ca_file,
      .ca_pem = c->cfg.ca_pem,
      .insecure = c->cfg.insecure,
      .cert_file = c->cfg.cert_file,
      .key_file = c->cfg.key_file,
      .cert_pem = c->cfg.cert_pem,
      .key_pem = c->cfg.key_pem,
      .tls_server_name = c->cfg.tls_server_name,
      .on_chunk = k->on_chunk ? on_chunk : NULL,
  };
  k->req = amc_http_start(c->http, &o, on_done, k);
  if (auth.data)
    memset(auth.data, 0, auth.len);
  amc_buf_free(&auth);
  amc_buf_free(&url);
  amc_buf_free(&ct);
  return k->req ? 0 : -1;
}

amc_kube_call_t *amc_kube_call(amc_kube_client_t *c, const amc_kube_req_t *req,
                               amc_kube_done_fn done, void *data) {
  amc_kube_call_t *k = calloc(1, sizeof *k);
  if (!k)
    return NULL;
  k->c = c;
  k->method = strdup(req->method ? req->method : "GET");
  k->path = strdup(req->path);
  k->content_type = dup_or_null(req->content_type);
  if (req->body) {
    k->body = malloc(req->body_len + 1);
    memcpy(k->body, req->body, req->body_len);
    k->body[req->body_len] = 0;
    k->body_len = req->body_len;
  }
  k->on_chunk = req->on_chunk;
  k->timeout_ms =
      req->timeout_ms ? req->timeout_ms : (req->on_chunk ? 0 : 30000);
  k->done = done;
  k->data = data;
  if (start(k) != 0) {
    call_free(k);
    return NULL;
  }
  return k;
}

void amc_kube_call_cancel(amc_kube_call_t *k) {
  if (!k)
    return;
  if (k->req)
    amc_http_cancel(k->req);
  call_free(k);
}

void amc_kube_resp_describe(const amc_kube_resp_t *r, char *out, size_t n) {
  if (r->error) {
    snprintf(out, n, "%s", r->error);
    return;
  }
  amc_kjson_t doc, v;
  char *reason = NULL, *msg = NULL;
  if (r->body && amc_kjson_parse(r->body, r->body_len, &doc) == 0) {
    if (amc_kjson_get(doc, "reason", &v) == 0)
      reason = amc_kjson_strdup(v);
    if (amc_kjson_get(doc, "message", &v) == 0)
      msg = amc_kjson_strdup(v);
  }
  snprintf(out, n, "HTTP %ld%s%s%s%s", r->status, reason ? ": " : "",
           reason ? reason : "", msg ? ": " : "", msg ? msg : "");
  free(reason);
  free(msg);
}

void amc_kube_urlencode(amc_buf_t *out, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      amc_buf_putc(out, (char)c);
    } else {
      amc_buf_putc(out, '%');
      amc_buf_putc(out, hex[c >> 4]);
      amc_buf_putc(out, hex[c & 15]);
    }
  }
}
