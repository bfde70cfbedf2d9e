/* admin_http.h - the admin HTTP endpoints: /healthz, /readyz, /metrics.
 *
 * Served by libmicrohttpd driven from the libuv loop: the daemon runs in
 * external-epoll mode (MHD_USE_EPOLL without an internal thread); its one
 * epoll descriptor is watched with a uv_poll_t and MHD_run() is called when it
 * is readable and when MHD's timeout (a uv_timer_t) expires. Every handler
 * therefore runs on the loop thread and reads controller state directly: no
 * locks, no snapshots.
 *
 *   GET /healthz  200 "ok" while the loop is turning.
 *   GET /readyz   200 when ready_fn says ready, else 503; the body is the JSON
 *                 detail ready_fn writes (sources synced, rules generation
 *                 and last reload error, AVI reachable).
 *   GET /metrics  200, Prometheus text format 0.0.4 (metrics.h).
 *   anything else 404; methods other than GET/HEAD 405.
 *
 * Binds `addr` (an IPv4 or IPv6 literal; tests use 127.0.0.1) on `port` (0 =
 * ephemeral; amc_admin_port() tells which). */
#ifndef AMC_ADMIN_HTTP_H
#define AMC_ADMIN_HTTP_H

#include <uv.h>

#include "metrics.h"
#include "util/buf.h"

typedef struct amc_admin amc_admin_t;

/* Writes the readiness detail (a JSON object) to `detail`; returns 1 when
 * ready, 0 when not. */
typedef int (*amc_admin_ready_fn)(void *data, amc_buf_t *detail);

/* Starts serving. `metrics` is borrowed (must outlive the server). Returns
 * NULL with a message in `err` when the address is invalid or cannot be
 * bound. */
amc_admin_t *amc_admin_start(uv_loop_t *loop, const char *addr, int port,
                             amc_metrics_t *metrics, amc_admin_ready_fn ready,
                             void *data, char *err, size_t errlen);
/* The bound port. */
int amc_admin_port(const amc_admin_t *a);
/* Stops the daemon (open connections are closed) and frees the server once
 * its handles are closed. */
void amc_admin_close(amc_admin_t *a);

#endif
