/* avi/client.h - the AVI controller's REST API: session, rate limit,
 * retries, error classification.
 *
 * One client talks to one controller as one user. Callers hand it calls
 * (method, path under the controller, tenant, JSON body); it queues them,
 * sends them through runtime/http (libcurl on the loop) and calls back once
 * per call with the final answer. What it does on the way:
 *
 * Session: `POST /login` with {"username","password"} before the first call
 *   and again whenever the session is gone. The cookies (csrftoken,
 *   sessionid, avi-sessionid) are kept in memory only and sent on every
 *   call with `X-CSRFToken`, `Referer: <base URL>`, `X-Avi-Version`
 *   (configured, else the version the login answer reports) and
 *   `X-Avi-Tenant`. Cookies re-sent by the controller replace the old ones.
 *   Only one login is in flight; calls wait for it.
 *
 * Rate limit: a token bucket (`rate` calls/s, `burst` capacity; defaults 20
 *   and 5, below the controller's ~32/s per client) and at most
 *   `max_inflight` calls on the wire. Logins take a token too.
 *
 * Retries (per call; see docs/avi.md for the table):
 *   401 / 419 on an API call   log in again and resend (at most 3 times);
 *                              a CSRF rejection is a 401 too
 *   401 on /login              permanent: bad credentials; every waiting call
 *                              fails with "login failed: ..."
 *   429, 500, 502, 503, 504,   resend after an exponential backoff with
 *   transport errors,          jitter (base * 2^n, capped, times [0.5, 1));
 *   timeouts                   after `max_retries` the call fails (transient)
 *   500 "Import error"         permanent at once (bad certificate data)
 *   anything else              returned to the caller (404, 409, 412, ...:
 *                              the caller knows what they mean)
 *
 * Errors: a failed call reports `error` = "HTTP <code>: <controller's
 *   message>" (the "error" member of a JSON body, else the body text,
 *   truncated to 300 bytes) or the transport error, and `transient`
 *   according to amc_avi_classify().
 *
 * Secrets: the password, cookies and CSRF token are never logged, never put
 *   in error messages or metrics. Debug logs carry method, path, tenant,
 *   status and duration only (never bodies).
 *
 * Memory: the client copies everything it is given. The response's body
 *   and error are valid during the callback only. amc_avi_client_free
 *   drops every queued call without calling back. */
#ifndef AMC_AVI_CLIENT_H
#define AMC_AVI_CLIENT_H

#include <stddef.h>

#include "http.h"

typedef struct amc_avi_client amc_avi_client_t;

typedef struct {
  const char *base_url; /* "https://10.0.0.1" (no path); required */
  const char *username; /* required */
  const char *password; /* required */
  const char *version;  /* X-Avi-Version; NULL: from the login answer */
  const char *ca_file;  /* CA bundle for the controller's certificate */
  int insecure;         /* skip TLS verification (explicit opt-in) */
  double rate;          /* calls per second; 0: 20 */
  int burst;            /* bucket size; 0: 5 */
  int max_inflight;     /* 0: 4 (connections to the controller) */
  long timeout_ms;      /* per HTTP request; 0: 30000 */
  int max_retries;      /* transient resends per call; 0: 6, <0: none */
  long backoff_base_ms; /* 0: 200 */
  long backoff_max_ms;  /* 0: 5000 */
} amc_avi_client_opts_t;

typedef struct {
  long status;         /* final HTTP status; 0 = no answer (transport) */
  int ok;              /* 2xx */
  int transient;       /* when !ok: worth retrying later */
  const char *error;   /* when !ok: "HTTP 409: <message>" or transport */
  const char *message; /* when !ok: the controller's message alone */
  const char *body;    /* response body (NUL-terminated) */
  size_t body_len;
} amc_avi_resp_t;

typedef void (*amc_avi_done_fn)(const amc_avi_resp_t *r, void *data);

/* Observer of every HTTP exchange (also retries and logins), for metrics:
 * method, path (no query), HTTP status (0 = transport error). */
typedef void (*amc_avi_observe_fn)(const char *method, const char *path,
                                   long status, void *data);

/* Creates a client on `http` (borrowed: it must outlive the client).
 * Returns NULL when options are missing or invalid. */
amc_avi_client_t *amc_avi_client_new(amc_http_t *http, uv_loop_t *loop,
                                     const amc_avi_client_opts_t *opts);
void amc_avi_client_set_observer(amc_avi_client_t *c, amc_avi_observe_fn fn,
                                 void *data);

/* Queues a call. `path` starts with "/api/" (an absolute URL from a `next`
 * link is accepted too); `tenant` NULL = no X-Avi-Tenant header ("*" reads
 * every tenant); `body` may be NULL. Returns 0, or -1 (bad arguments: the
 * callback is not called). */
int amc_avi_client_call(amc_avi_client_t *c, const char *method,
                        const char *path, const char *tenant, const char *body,
                        size_t body_len, amc_avi_done_fn done, void *data);

/* 1 after a successful exchange, 0 after a transport error or failed login
 * (for readiness). */
int amc_avi_client_reachable(const amc_avi_client_t *c);
/* The X-Avi-Version in use ("" before the first login when discovered). */
const char *amc_avi_client_version(const amc_avi_client_t *c);
/* Calls queued or on the wire. */
size_t amc_avi_client_pending(const amc_avi_client_t *c);

/* Transient or permanent, from the status and the controller's message:
 * transient = 0 (transport), 408, 409, 412, 419, 429, 5xx (not "Import
 * error"), and 400/403/404 whose message says a referenced object is not
 * found, an object is still referred to, no free IPs, an upgrade is
 * running or the tenant does not exist (yet). */
int amc_avi_classify(long status, const char *message);

/* Ends the session (`POST /logout`, best effort) when one is open and no
 * call is pending; `done` runs once, also when there was nothing to do
 * (then before this returns). Returns 1 if a logout was sent. */
int amc_avi_client_logout(amc_avi_client_t *c, void (*done)(void *data),
                          void *data);

/* Drops every call (no callbacks) and frees the client. */
void amc_avi_client_free(amc_avi_client_t *c);

#endif
