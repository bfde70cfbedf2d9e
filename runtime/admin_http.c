/* admin_http.c - /healthz, /readyz, /metrics on libmicrohttpd, on the loop. */
#include "admin_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct amc_admin {
  uv_loop_t *loop;
  struct MHD_Daemon *mhd;
  uv_poll_t poll;
  uv_timer_t timer;
  int open_handles;
  int port;
  amc_metrics_t *metrics;
  amc_admin_ready_fn ready;
  void *data;
};

static void drive(amc_admin_t *a);

static void on_timer(uv_timer_t *t) {
  drive(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  drive(p->data);
}

/* Runs MHD once, then re-arms the timer for MHD's next timeout (connection
 * timeouts; there is none while idle). */
static void drive(amc_admin_t *a) {
  if (!a->mhd)
    return;
  MHD_run(a->mhd);
  MHD_UNSIGNED_LONG_LONG ms = 0;
  if (MHD_get_timeout(a->mhd, &ms) == MHD_YES)
    uv_timer_start(&a->timer, on_timer, ms ? ms : 1, 0);
  else
    uv_timer_stop(&a->timer);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code,
                             const char *type, amc_buf_t *body) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      body->len, body->data ? body->data : (char *)"", MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload_data,
                              size_t *upload_size, void **con_cls) {
  (void)version;
  (void)upload_data;
  amc_admin_t *a = cls;
  /* MHD calls twice per request: first with headers only. Answer on the
   * first call for bodiless GETs; drain any body otherwise. */
  if (*upload_size) {
    *upload_size = 0;
    return MHD_YES;
  }
  (void)con_cls;
  amc_buf_t body = AMC_BUF_INIT;
  enum MHD_Result ret;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    amc_buf_puts(&body, "method not allowed\n");
    ret = reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", &body);
  } else if (strcmp(url, "/healthz") == 0) {
    amc_buf_puts(&body, "ok\n");
    ret = reply(c, MHD_HTTP_OK, "text/plain", &body);
  } else if (strcmp(url, "/readyz") == 0) {
    int ok = 1;
    if (a->ready)
      ok = a->ready(a->data, &body);
    else
      amc_buf_puts(&body, "{}");
    amc_buf_putc(&body, '\n');
    ret = reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                "application/json", &body);
  } else if (strcmp(url, "/metrics") == 0) {
    amc_metrics_render(a->metrics, &body);
    ret = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                &body);
  } else {
    amc_buf_puts(&body, "not found\n");
    ret = reply(c, MHD_HTTP_NOT_FOUND, "text/plain", &body);
  }
  amc_buf_free(&body);
  return ret;
}

amc_admin_t *amc_admin_start(uv_loop_t *loop, const char *addr, int port,
                             amc_metrics_t *metrics, amc_admin_ready_fn ready,
                             void *data, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  unsigned flags = MHD_USE_EPOLL;
  if (port < 0 || port > 65535) {
    snprintf(err, errlen, "admin port %d: out of range 0..65535", port);
    return NULL;
  }
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
  } else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    flags |= MHD_USE_IPv6;
  } else {
    snprintf(err, errlen, "admin address '%s': not an IPv4 or IPv6 address",
             addr);
    return NULL;
  }
  amc_admin_t *a = calloc(1, sizeof *a);
  if (!a) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  a->loop = loop;
  a->metrics = metrics;
  a->ready = ready;
  a->data = data;
  a->mhd = MHD_start_daemon(
      flags, (uint16_t)port, NULL, NULL, handle, a, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
  if (!a->mhd) {
    snprintf(err, errlen, "admin server: cannot listen on %s:%d", addr, port);
    free(a);
    return NULL;
  }
  const union MHD_DaemonInfo *fdi =
      MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  const union MHD_DaemonInfo *lfd =
      MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_LISTEN_FD);
  struct sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  if (!fdi || !lfd ||
      getsockname(lfd->listen_fd, (struct sockaddr *)&bound, &blen) != 0) {
    snprintf(err, errlen, "admin server: cannot read its socket");
    MHD_stop_daemon(a->mhd);
    free(a);
    return NULL;
  }
  a->port = ntohs(bound.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&bound)->sin6_port
                      : ((struct sockaddr_in *)&bound)->sin_port);
  uv_poll_init(loop, &a->poll, fdi->epoll_fd);
  uv_timer_init(loop, &a->timer);
  a->poll.data = a;
  a->timer.data = a;
  a->open_handles = 2;
  uv_poll_start(&a->poll, UV_READABLE, on_poll);
  return a;
}

int amc_admin_port(const amc_admin_t *a) {
  return a->port;
}

static void on_closed(uv_handle_t *h) {
  amc_admin_t *a = h->data;
  if (--a->open_handles == 0)
    free(a);
}

void amc_admin_close(amc_admin_t *a) {
  if (!a)
    return;
  /* The poll handle must stop watching the epoll fd before MHD closes it. */
  uv_poll_stop(&a->poll);
  uv_timer_stop(&a->timer);
  MHD_stop_daemon(a->mhd);
  a->mhd = NULL;
  uv_close((uv_handle_t *)&a->poll, on_closed);
  uv_close((uv_handle_t *)&a->timer, on_closed);
}
