/* grpc.c - one bidirectional gRPC call over nghttp2 on libuv (see grpc.h).
 *
 * Data path: uv_read -> (SSL_read through a memory BIO) ->
 * nghttp2_session_mem_recv -> callbacks; and nghttp2_session_mem_send ->
 * (SSL_write, drain the memory BIO) -> uv_write. Every entry point ends with
 * flush() so frames nghttp2 queued (WINDOW_UPDATE, PING ACK, SETTINGS ACK,
 * our DATA) leave promptly. */
#include "grpc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_WINDOW (16 * 1024 * 1024)
#define CONN_WINDOW   (32 * 1024 * 1024)
#define READ_CHUNK    65536

struct amc_grpc_call_s {
  uv_loop_t *loop;
  amc_grpc_callbacks_t cb;
  void *ud;
  char *host, *port, *authority, *path, *server_name, *auth;
  int tls, insecure;
  uint64_t keepalive_ms, keepalive_timeout_ms, connect_timeout_ms;
  size_t max_message;

  uv_getaddrinfo_t gai;
  uv_connect_t connect_req;
  uv_tcp_t tcp;
  uv_timer_t ka_timer; /* periodic keepalive PING */
  uv_timer_t to_timer; /* connect timeout, then PING-ack timeout */
  int refs;            /* open handles + pending requests */

  SSL_CTX *ssl_ctx;
  SSL *ssl;
  BIO *rbio, *wbio;
  int handshake_done;

  nghttp2_session *h2;
  int32_t stream_id;
  amc_buf_t sendq;
  size_t sendq_off;
  amc_buf_t acc;
  int http_status, grpc_status;
  amc_buf_t grpc_msg;
  int opened, ended, freed, settings_seen, gai_pending;
  char rbuf[READ_CHUNK];
};

const char *amc_grpc_status_name(int s) {
  static const char *const names[] = {"OK",
                                      "CANCELLED",
                                      "UNKNOWN",
                                      "INVALID_ARGUMENT",
                                      "DEADLINE_EXCEEDED",
                                      "NOT_FOUND",
                                      "ALREADY_EXISTS",
                                      "PERMISSION_DENIED",
                                      "RESOURCE_EXHAUSTED",
                                      "FAILED_PRECONDITION",
                                      "ABORTED",
                                      "OUT_OF_RANGE",
                                      "UNIMPLEMENTED",
                                      "INTERNAL",
                                      "UNAVAILABLE",
                                      "DATA_LOSS",
                                      "UNAUTHENTICATED"};
  if (s >= 0 && s <= 16)
    return names[s];
  return "UNKNOWN";
}

/* ---- helpers without I/O (tested directly) ---- */

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

void amc_grpc_percent_decode(const char *s, size_t len, amc_buf_t *out) {
  size_t start = out->len;
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '%') {
      amc_buf_putc(out, s[i]);
      continue;
    }
    int hi = i + 2 < len ? hexval((unsigned char)s[i + 1]) : -1;
    int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
    if (hi < 0 || lo < 0) { /* malformed: keep the raw value */
      out->len = start;
      if (out->data)
        out->data[start] = '\0';
      amc_buf_append(out, s, len);
      return;
    }
    amc_buf_putc(out, (char)(hi * 16 + lo));
    i += 2;
  }
  if (!out->data)
    amc_buf_append(out, "", 0);
}

int amc_grpc_deframe(amc_buf_t *acc, const uint8_t *data, size_t len,
                     size_t max, amc_grpc_msg_fn fn, void *ud, char *err,
                     size_t errlen) {
  amc_buf_append(acc, data, len);
  size_t off = 0;
  int rc = 0;
  while (acc->len - off >= 5) {
    const uint8_t *p = (const uint8_t *)acc->data + off;
    uint32_t n = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 8 | p[4];
    if (p[0] != 0) {
      snprintf(err, errlen,
               "compressed message (flag %u) but no "
               "compression was negotiated",
               p[0]);
      rc = AMC_GRPC_INTERNAL;
      break;
    }
    if (n > max) {
      snprintf(err, errlen, "message of %u bytes exceeds the %zu-byte limit", n,
               max);
      rc = AMC_GRPC_RESOURCE_EXHAUSTED;
      break;
    }
    if (acc->len - off - 5 < n)
      break;
    rc = fn(ud, p + 5, n);
    off += 5 + (size_t)n;
    if (rc)
      break;
  }
  if (rc) {
    amc_buf_reset(acc);
    return rc;
  }
  if (off) {
    memmove(acc->data, acc->data + off, acc->len - off);
    acc->len -= off;
    acc->data[acc->len] = '\0';
  }
  return 0;
}

static int status_from_http(int http) {
  switch (http) {
  case 400:
    return AMC_GRPC_INTERNAL;
  case 401:
    return AMC_GRPC_UNAUTHENTICATED;
  case 403:
    return AMC_GRPC_PERMISSION_DENIED;
  case 404:
    return AMC_GRPC_UNIMPLEMENTED;
  case 429:
  case 502:
  case 503:
  case 504:
    return AMC_GRPC_UNAVAILABLE;
  default:
    return AMC_GRPC_UNKNOWN;
  }
}

static int status_from_rst(uint32_t code) {
  switch (code) {
  case NGHTTP2_REFUSED_STREAM:
    return AMC_GRPC_UNAVAILABLE;
  case NGHTTP2_CANCEL:
    return AMC_GRPC_CANCELLED;
  case NGHTTP2_ENHANCE_YOUR_CALM:
    return AMC_GRPC_RESOURCE_EXHAUSTED;
  case NGHTTP2_INADEQUATE_SECURITY:
    return AMC_GRPC_PERMISSION_DENIED;
  default:
    return AMC_GRPC_INTERNAL;
  }
}

/* ---- lifetime ---- */

static void unref(amc_grpc_call_t *c) {
  if (--c->refs > 0 || !c->freed)
    return;
  if (c->h2)
    nghttp2_session_del(c->h2);
  if (c->ssl)
    SSL_free(c->ssl); /* frees the BIOs */
  if (c->ssl_ctx)
    SSL_CTX_free(c->ssl_ctx);
  if (c->auth) {
    OPENSSL_cleanse(c->auth, strlen(c->auth));
    free(c->auth);
  }
  free(c->host);
  free(c->port);
  free(c->authority);
  free(c->path);
  free(c->server_name);
  amc_buf_free(&c->sendq);
  amc_buf_free(&c->acc);
  amc_buf_free(&c->grpc_msg);
  free(c);
}

static void on_handle_closed(uv_handle_t *h) {
  unref(h->data);
}

static void end_call(amc_grpc_call_t *c, int status, const char *msg) {
  if (c->ended)
    return;
  c->ended = 1;
  uv_timer_stop(&c->ka_timer);
  uv_timer_stop(&c->to_timer);
  if (!c->freed)
    uv_read_stop((uv_stream_t *)&c->tcp);
  if (c->cb.on_end && !c->freed)
    c->cb.on_end(c->ud, status, msg ? msg : "");
}

static void end_callf(amc_grpc_call_t *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void end_callf(amc_grpc_call_t *c, int status, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  end_call(c, status, msg);
}

static void flush(amc_grpc_call_t *c);

void amc_grpc_call_free(amc_grpc_call_t *c) {
  if (!c || c->freed)
    return;
  if (c->h2 && c->stream_id > 0 && !c->ended)
    nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, c->stream_id,
                              NGHTTP2_CANCEL);
  c->ended = 1; /* no on_end from here on, not even for our own RST */
  flush(c);
  c->freed = 1;
  if (c->gai_pending)
    uv_cancel((uv_req_t *)&c->gai);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  uv_close((uv_handle_t *)&c->ka_timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->to_timer, on_handle_closed);
}

/* ---- network out ---- */

typedef struct {
  uv_write_t req;
  amc_grpc_call_t *call;
  char data[];
} write_req_t;

static void on_written(uv_write_t *req, int status) {
  write_req_t *w = (write_req_t *)req;
  amc_grpc_call_t *c = w->call;
  free(w);
  if (status < 0 && status != UV_ECANCELED)
    end_callf(c, AMC_GRPC_UNAVAILABLE, "write to %s: %s", c->authority,
              uv_strerror(status));
  unref(c);
}

static void net_write(amc_grpc_call_t *c, const void *data, size_t len) {
  if (!len || c->freed)
    return;
  write_req_t *w = malloc(sizeof *w + len);
  if (!w)
    abort();
  memcpy(w->data, data, len);
  w->call = c;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (rc < 0) {
    free(w);
    end_callf(c, AMC_GRPC_UNAVAILABLE, "write to %s: %s", c->authority,
              uv_strerror(rc));
    return;
  }
  c->refs++;
}

static void drain_tls(amc_grpc_call_t *c) {
  char buf[16384];
  int n;
  while ((n = BIO_read(c->wbio, buf, sizeof buf)) > 0)
    net_write(c, buf, (size_t)n);
}

static void flush(amc_grpc_call_t *c) {
  if (!c->h2 || c->freed)
    return;
  amc_buf_t out = AMC_BUF_INIT;
  for (;;) {
    const uint8_t *d;
    ssize_t n = nghttp2_session_mem_send(c->h2, &d);
    if (n < 0) {
      amc_buf_free(&out);
      end_callf(c, AMC_GRPC_INTERNAL, "HTTP/2: %s", nghttp2_strerror((int)n));
      return;
    }
    if (n == 0)
      break;
    amc_buf_append(&out, d, (size_t)n);
  }
  if (out.len) {
    if (c->tls) {
      int w = SSL_write(c->ssl, out.data, (int)out.len);
      if (w <= 0)
        end_callf(c, AMC_GRPC_UNAVAILABLE, "TLS write to %s failed",
                  c->authority);
      drain_tls(c);
    } else {
      net_write(c, out.data, out.len);
    }
  }
  amc_buf_free(&out);
}

/* ---- HTTP/2 callbacks ---- */

static int deliver(void *ud, const uint8_t *data, size_t len) {
  amc_grpc_call_t *c = ud;
  if (c->ended || c->freed)
    return 0;
  if (c->cb.on_message)
    c->cb.on_message(c->ud, data, len);
  return 0;
}

static void finish(amc_grpc_call_t *c) {
  if (c->grpc_status >= 0) {
    end_call(c, c->grpc_status, c->grpc_msg.data ? c->grpc_msg.data : "");
  } else if (c->http_status != 200) {
    end_callf(c, status_from_http(c->http_status),
              "HTTP status %d without grpc-status", c->http_status);
  } else {
    end_call(c, AMC_GRPC_INTERNAL, "server ended the stream without trailers");
  }
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *ud) {
  amc_grpc_call_t *c = ud;
  if (frame->hd.stream_id != c->stream_id)
    return 0;
  if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
    c->http_status = 0;
    for (size_t i = 0; i < valuelen && i < 3; i++)
      c->http_status = c->http_status * 10 + (value[i] - '0');
  } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
    int v = 0;
    for (size_t i = 0; i < valuelen && i < 4; i++)
      v = isdigit(value[i]) ? v * 10 + (value[i] - '0') : -1000;
    c->grpc_status = (v >= 0 && valuelen > 0) ? v : AMC_GRPC_UNKNOWN;
  } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
    amc_buf_reset(&c->grpc_msg);
    amc_grpc_percent_decode((const char *)value, valuelen, &c->grpc_msg);
  }
  return 0;
}

static void on_keepalive(uv_timer_t *t);

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame,
                         void *ud) {
  amc_grpc_call_t *c = ud;
  if (c->ended)
    return 0;
  switch (frame->hd.type) {
  case NGHTTP2_HEADERS:
    if (frame->hd.stream_id != c->stream_id)
      break;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
      finish(c);
    } else if (!c->opened && c->http_status == 200) {
      c->opened = 1;
      if (c->cb.on_open && !c->freed)
        c->cb.on_open(c->ud);
    }
    break;
  case NGHTTP2_DATA:
    if (frame->hd.stream_id == c->stream_id &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
      finish(c);
    break;
  case NGHTTP2_GOAWAY: {
    char dbg[128] = "";
    size_t n = frame->goaway.opaque_data_len;
    if (n >= sizeof dbg)
      n = sizeof dbg - 1;
    for (size_t i = 0; i < n; i++) {
      unsigned char ch = frame->goaway.opaque_data[i];
      dbg[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    dbg[n] = '\0';
    end_callf(c, AMC_GRPC_UNAVAILABLE, "server sent GOAWAY (%s%s%s)",
              nghttp2_http2_strerror(frame->goaway.error_code), n ? ": " : "",
              dbg);
    break;
  }
  case NGHTTP2_SETTINGS:
    /* The server's first SETTINGS ends the connect phase; from here on the
     * PING keepalive watches the connection. Response headers may come much
     * later (a C-core server sends them with its first message). */
    if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !c->settings_seen) {
      c->settings_seen = 1;
      uv_timer_stop(&c->to_timer);
      uv_timer_start(&c->ka_timer, on_keepalive, c->keepalive_ms,
                     c->keepalive_ms);
    }
    break;
  case NGHTTP2_PING:
    if (frame->hd.flags & NGHTTP2_FLAG_ACK)
      uv_timer_stop(&c->to_timer);
    break;
  default:
    break;
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *ud) {
  amc_grpc_call_t *c = ud;
  if (stream_id != c->stream_id || c->ended)
    return 0;
  char err[160];
  int rc = amc_grpc_deframe(&c->acc, data, len, c->max_message, deliver, c, err,
                            sizeof err);
  if (rc)
    end_call(c, rc, err);
  return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t code,
                           void *ud) {
  amc_grpc_call_t *c = ud;
  if (stream_id != c->stream_id || c->ended)
    return 0;
  end_callf(c, status_from_rst(code), "stream reset by server (%s)",
            nghttp2_http2_strerror(code));
  return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf,
                         size_t length, uint32_t *data_flags,
                         nghttp2_data_source *source, void *ud) {
  amc_grpc_call_t *c = ud;
  size_t avail = c->sendq.len - c->sendq_off;
  if (avail == 0)
    return NGHTTP2_ERR_DEFERRED;
  size_t n = avail < length ? avail : length;
  memcpy(buf, c->sendq.data + c->sendq_off, n);
  c->sendq_off += n;
  if (c->sendq_off == c->sendq.len) {
    amc_buf_reset(&c->sendq);
    c->sendq_off = 0;
  }
  return (ssize_t)n;
}

#define NV(n, v, f)                                                            \
  { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), (f) }

static void start_h2(amc_grpc_call_t *c) {
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  int rc = nghttp2_session_client_new(&c->h2, cbs, c);
  nghttp2_session_callbacks_del(cbs);
  if (rc) {
    end_call(c, AMC_GRPC_INTERNAL, "HTTP/2 session setup failed");
    return;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
  };
  nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2);
  nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                        CONN_WINDOW);
  nghttp2_nv hdrs[8] = {
      NV(":method", "POST", NGHTTP2_NV_FLAG_NONE),
      NV(":scheme", c->tls ? "https" : "http", NGHTTP2_NV_FLAG_NONE),
      NV(":path", c->path, NGHTTP2_NV_FLAG_NONE),
      NV(":authority", c->authority, NGHTTP2_NV_FLAG_NONE),
      NV("te", "trailers", NGHTTP2_NV_FLAG_NONE),
      NV("content-type", "application/grpc", NGHTTP2_NV_FLAG_NONE),
      NV("user-agent", "amc/" AMC_VERSION " (nghttp2)", NGHTTP2_NV_FLAG_NONE),
  };
  size_t nh = 7;
  if (c->auth) /* never indexed: the token stays out of HPACK tables */
    hdrs[nh++] =
        (nghttp2_nv)NV("authorization", c->auth, NGHTTP2_NV_FLAG_NO_INDEX);
  nghttp2_data_provider dp = {.read_callback = read_body};
  c->stream_id = nghttp2_submit_request(c->h2, NULL, hdrs, nh, &dp, c);
  if (c->stream_id < 0) {
    end_callf(c, AMC_GRPC_INTERNAL, "HTTP/2 request: %s",
              nghttp2_strerror(c->stream_id));
    return;
  }
  flush(c);
}

/* ---- network in ---- */

static void feed_h2(amc_grpc_call_t *c, const char *data, size_t len) {
  ssize_t n = nghttp2_session_mem_recv(c->h2, (const uint8_t *)data, len);
  if (n < 0) {
    end_callf(c, AMC_GRPC_INTERNAL, "HTTP/2 protocol error from %s: %s",
              c->authority, nghttp2_strerror((int)n));
    return;
  }
  flush(c);
  if (!c->ended && !nghttp2_session_want_read(c->h2) &&
      !nghttp2_session_want_write(c->h2))
    end_call(c, AMC_GRPC_UNAVAILABLE, "HTTP/2 session closed");
}

static void tls_fail(amc_grpc_call_t *c, const char *what) {
  long v = SSL_get_verify_result(c->ssl);
  if (v != X509_V_OK) {
    end_callf(c, AMC_GRPC_UNAVAILABLE,
              "TLS %s with %s: certificate verify "
              "failed: %s",
              what, c->authority, X509_verify_cert_error_string(v));
  } else {
    char e[256];
    unsigned long code = ERR_get_error();
    ERR_error_string_n(code, e, sizeof e);
    end_callf(c, AMC_GRPC_UNAVAILABLE, "TLS %s with %s failed: %s", what,
              c->authority, code ? e : "connection closed");
  }
  ERR_clear_error();
}

static void on_tls_bytes(amc_grpc_call_t *c, const char *data, size_t len) {
  BIO_write(c->rbio, data, (int)len);
  if (!c->handshake_done) {
    int r = SSL_do_handshake(c->ssl);
    drain_tls(c);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        tls_fail(c, "handshake");
      return;
    }
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
    if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
      end_callf(c, AMC_GRPC_UNAVAILABLE,
                "TLS with %s: server did not select ALPN h2", c->authority);
      return;
    }
    c->handshake_done = 1;
    start_h2(c);
  }
  char buf[16384];
  while (!c->ended) {
    int n = SSL_read(c->ssl, buf, sizeof buf);
    if (n > 0) {
      feed_h2(c, buf, (size_t)n);
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_ZERO_RETURN)
      end_callf(c, AMC_GRPC_UNAVAILABLE, "TLS connection to %s closed",
                c->authority);
    else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
      tls_fail(c, "read");
    break;
  }
  drain_tls(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  amc_grpc_call_t *c = h->data;
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  amc_grpc_call_t *c = st->data;
  if (c->ended)
    return;
  if (nread < 0) {
    end_callf(c, AMC_GRPC_UNAVAILABLE, "connection to %s %s", c->authority,
              nread == UV_EOF ? "closed by the server"
                              : uv_strerror((int)nread));
    return;
  }
  if (c->tls)
    on_tls_bytes(c, buf->base, (size_t)nread);
  else
    feed_h2(c, buf->base, (size_t)nread);
}

static void on_timeout(uv_timer_t *t);

static void on_keepalive(uv_timer_t *t) {
  amc_grpc_call_t *c = t->data;
  if (c->ended || !c->h2)
    return;
  nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL);
  flush(c);
  if (!uv_is_active((uv_handle_t *)&c->to_timer))
    uv_timer_start(&c->to_timer, on_timeout, c->keepalive_timeout_ms, 0);
}

static void on_timeout(uv_timer_t *t) {
  amc_grpc_call_t *c = t->data;
  if (!c->settings_seen)
    end_callf(c, AMC_GRPC_UNAVAILABLE, "no response from %s within %llu ms",
              c->authority, (unsigned long long)c->connect_timeout_ms);
  else
    end_callf(c, AMC_GRPC_UNAVAILABLE,
              "keepalive: %s did not answer a PING within %llu ms",
              c->authority, (unsigned long long)c->keepalive_timeout_ms);
}

static void on_connected(uv_connect_t *req, int status) {
  amc_grpc_call_t *c = req->data;
  if (status < 0) {
    if (status != UV_ECANCELED)
      end_callf(c, AMC_GRPC_UNAVAILABLE, "connect to %s: %s", c->authority,
                uv_strerror(status));
    unref(c);
    return;
  }
  unref(c);
  if (c->ended)
    return;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (c->tls) {
    SSL_set_connect_state(c->ssl);
    int r = SSL_do_handshake(c->ssl);
    (void)r;
    drain_tls(c);
  } else {
    start_h2(c);
  }
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  amc_grpc_call_t *c = req->data;
  c->gai_pending = 0;
  if (status < 0 || c->ended) {
    if (status < 0 && status != UV_ECANCELED)
      end_callf(c, AMC_GRPC_UNAVAILABLE, "resolve %s: %s", c->host,
                uv_strerror(status));
    uv_freeaddrinfo(res);
    unref(c);
    return;
  }
  c->connect_req.data = c;
  int rc = uv_tcp_connect(&c->connect_req, &c->tcp, res->ai_addr, on_connected);
  uv_freeaddrinfo(res);
  if (rc < 0)
    end_callf(c, AMC_GRPC_UNAVAILABLE, "connect to %s: %s", c->authority,
              uv_strerror(rc));
  else
    c->refs++;
  unref(c);
}

/* ---- setup ---- */

static int parse_url(amc_grpc_call_t *c, const char *url, char *err,
                     size_t errlen) {
  const char *p = strstr(url, "://");
  const char *def_port;
  if (!p) {
    snprintf(err, errlen, "URL '%s' has no scheme (http, https, grpc, grpcs)",
             url);
    return -1;
  }
  size_t sl = (size_t)(p - url);
  if ((sl == 4 && !strncmp(url, "http", 4)) ||
      (sl == 4 && !strncmp(url, "grpc", 4))) {
    c->tls = 0;
    def_port = "80";
  } else if ((sl == 5 && !strncmp(url, "https", 5)) ||
             (sl == 5 && !strncmp(url, "grpcs", 5))) {
    c->tls = 1;
    def_port = "443";
  } else {
    snprintf(err, errlen, "URL '%s': unsupported scheme", url);
    return -1;
  }
  const char *h = p + 3;
  const char *end = h + strcspn(h, "/?#");
  const char *hend, *colon = NULL;
  if (*h == '[') {
    hend = memchr(h, ']', (size_t)(end - h));
    if (!hend) {
      snprintf(err, errlen, "URL '%s': unterminated IPv6 address", url);
      return -1;
    }
    c->host = strndup(h + 1, (size_t)(hend - h - 1));
    if (hend + 1 < end && hend[1] == ':')
      colon = hend + 1;
  } else {
    colon = memchr(h, ':', (size_t)(end - h));
    hend = colon ? colon : end;
    c->host = strndup(h, (size_t)(hend - h));
  }
  c->port =
      colon ? strndup(colon + 1, (size_t)(end - colon - 1)) : strdup(def_port);
  c->authority = strndup(h, (size_t)(end - h));
  if (!c->host[0] || !c->port[0] ||
      strspn(c->port, "0123456789") != strlen(c->port)) {
    snprintf(err, errlen, "URL '%s': bad host or port", url);
    return -1;
  }
  return 0;
}

static int read_token(amc_grpc_call_t *c, const char *file, char *err,
                      size_t errlen) {
  amc_buf_t b = AMC_BUF_INIT;
  int rc = amc_buf_read_file(&b, file);
  if (rc < 0) {
    snprintf(err, errlen, "token file %s: %s", file, strerror(-rc));
    amc_buf_free(&b);
    return -1;
  }
  while (b.len && isspace((unsigned char)b.data[b.len - 1]))
    b.data[--b.len] = '\0';
  if (!b.len || strpbrk(b.data, "\r\n")) {
    snprintf(err, errlen, "token file %s: %s", file,
             b.len ? "more than one line" : "empty");
    OPENSSL_cleanse(b.data, b.len);
    amc_buf_free(&b);
    return -1;
  }
  amc_buf_t a = AMC_BUF_INIT;
  amc_buf_puts(&a, "Bearer ");
  amc_buf_append(&a, b.data, b.len);
  OPENSSL_cleanse(b.data, b.len);
  amc_buf_free(&b);
  c->auth = amc_buf_steal(&a);
  return 0;
}

static int setup_tls(amc_grpc_call_t *c, const amc_grpc_options_t *o, char *err,
                     size_t errlen) {
  c->ssl_ctx = SSL_CTX_new(TLS_client_method());
  if (!c->ssl_ctx)
    goto fail;
  SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
  if (o->ca_file) {
    if (SSL_CTX_load_verify_locations(c->ssl_ctx, o->ca_file, NULL) != 1) {
      snprintf(err, errlen, "CA file %s: cannot load certificates", o->ca_file);
      ERR_clear_error();
      return -1;
    }
  } else {
    SSL_CTX_set_default_verify_paths(c->ssl_ctx);
  }
  SSL_CTX_set_verify(c->ssl_ctx,
                     c->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
  static const unsigned char alpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(c->ssl_ctx, alpn, sizeof alpn);
  c->ssl = SSL_new(c->ssl_ctx);
  if (!c->ssl)
    goto fail;
  const char *name = c->server_name ? c->server_name : c->host;
  unsigned char tmp[16];
  int is_ip =
      inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1;
  if (!is_ip)
    SSL_set_tlsext_host_name(c->ssl, name);
  if (!c->insecure) {
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1
              : X509_VERIFY_PARAM_set1_host(vp, name, 0) != 1)
      goto fail;
  }
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (!c->rbio || !c->wbio)
    goto fail;
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  return 0;
fail:
  snprintf(err, errlen, "TLS setup failed");
  ERR_clear_error();
  return -1;
}

amc_grpc_call_t *amc_grpc_call_start(uv_loop_t *loop,
                                     const amc_grpc_options_t *o,
                                     const char *path,
                                     const amc_grpc_callbacks_t *cb, void *ud,
                                     char *err, size_t errlen) {
  amc_grpc_call_t *c = calloc(1, sizeof *c);
  if (!c)
    abort();
  c->loop = loop;
  c->cb = *cb;
  c->ud = ud;
  c->grpc_status = -1;
  c->path = strdup(path);
  c->insecure = o->insecure_skip_verify;
  c->server_name = o->server_name ? strdup(o->server_name) : NULL;
  c->keepalive_ms = o->keepalive_ms ? o->keepalive_ms : 30000;
  c->keepalive_timeout_ms =
      o->keepalive_timeout_ms ? o->keepalive_timeout_ms : 10000;
  c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 10000;
  c->max_message = o->max_message ? o->max_message : 64u * 1024 * 1024;
  if (!o->url || parse_url(c, o->url, err, errlen) < 0)
    goto fail;
  if (o->token_file && read_token(c, o->token_file, err, errlen) < 0)
    goto fail;
  if (c->tls && setup_tls(c, o, err, errlen) < 0)
    goto fail;

  uv_tcp_init(loop, &c->tcp);
  uv_timer_init(loop, &c->ka_timer);
  uv_timer_init(loop, &c->to_timer);
  c->tcp.data = c->ka_timer.data = c->to_timer.data = c;
  c->refs = 3;
  uv_timer_start(&c->to_timer, on_timeout, c->connect_timeout_ms, 0);
  c->gai.data = c;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int rc = uv_getaddrinfo(loop, &c->gai, on_resolved, c->host, c->port, &hints);
  if (rc < 0) {
    snprintf(err, errlen, "resolve %s: %s", c->host, uv_strerror(rc));
    c->ended = 1;
    amc_grpc_call_free(c);
    return NULL;
  }
  c->refs++;
  c->gai_pending = 1;
  return c;
fail:
  c->freed = 1;
  c->refs = 1;
  unref(c);
  return NULL;
}

int amc_grpc_call_send(amc_grpc_call_t *c, const uint8_t *msg, size_t len) {
  if (c->ended || c->freed)
    return -1;
  uint8_t hdr[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                    (uint8_t)(len >> 8), (uint8_t)len};
  amc_buf_append(&c->sendq, hdr, 5);
  amc_buf_append(&c->sendq, msg, len);
  if (c->h2 && c->stream_id > 0) {
    nghttp2_session_resume_data(c->h2, c->stream_id);
    flush(c);
  }
  return 0;
}
