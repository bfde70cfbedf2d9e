/* http.h - HTTP(S) requests on the libuv loop (libcurl multi interface).
 *
 * This module is the one owner of a CURLM on a uv loop: it drives libcurl
 * from a uv timer and one uv_poll_t per socket, and nothing else in amc
 * calls curl_multi_*. Everything runs on the loop thread.
 *
 *   amc_http_t *h = amc_http_new(loop);
 *   amc_http_opts_t o = {.method = "GET", .url = "https://x/api/pool",
 *                        .timeout_ms = 30000};
 *   amc_http_req_t *r = amc_http_start(h, &o, on_done, ctx);
 *   ...
 *   amc_http_close(h, on_closed, ctx);   // then let the loop run
 *
 * Requests
 *   amc_http_start() copies everything in the options (method, URL, headers,
 *   body, TLS file names and PEM blobs): the caller may free them on return.
 *   Exactly one of these happens to every started request:
 *     - its `done` callback runs once (success, HTTP error status or
 *       transport error), after which the request is freed by this module;
 *     - the caller cancels it with amc_http_cancel() (no callback then);
 *     - amc_http_close() aborts it (no callback either).
 *   Callbacks are called from libuv callbacks, never from inside libcurl, so
 *   they may start, cancel, or close freely (re-entrancy is not possible).
 *   The request pointer is valid until then; do not use it afterwards.
 *
 * Responses
 *   `status` is the HTTP status (0 when no response arrived). `error` is NULL
 *   on a completed exchange (whatever the status) or a transport error
 *   message (connection refused, timeout, TLS verification failed...), with
 *   `timed_out` set for timeouts. The header block and body are owned by the
 *   request and valid only during the callback.
 *
 * Streaming (for long-lived watches): when `on_chunk` is set, the body is
 *   not accumulated; each chunk is passed to on_chunk as it arrives (status
 *   and headers are available then through amc_http_req_status/_headers).
 *   on_chunk returns 0 to continue or non-zero to stop (the request then ends
 *   with an error "aborted by callback"). on_chunk may call amc_http_cancel on
 *   its own request (the cancel takes effect when libcurl returns).
 *
 * TLS: peer and host verification are ON unless `insecure` is set. `ca_file`
 *   or `ca_pem` replace the system CA bundle; `cert_file`/`key_file` or
 *   `cert_pem`/`key_pem` present a client certificate. `tls_server_name`
 *   (a host name: letters, digits, '.', '-', '_') is the name the server
 *   certificate must be valid for, for servers reached by an address their
 *   certificate does not name (kubeconfig's tls-server-name). The connection
 *   still goes to the URL's host and port, and the Host header stays the
 *   URL's authority unless `headers` set one. A malformed name makes
 *   amc_http_start return NULL. Debug logs show the URL as given.
 *
 * Secrets: this module logs (at debug) method, URL, status and duration;
 *   never headers or bodies. Never put credentials in URLs. */
#ifndef AMC_HTTP_H
#define AMC_HTTP_H

#include <stddef.h>
#include <uv.h>

typedef struct amc_http amc_http_t;
typedef struct amc_http_req amc_http_req_t;

typedef struct {
  long status;         /* HTTP status; 0 if no response */
  const char *error;   /* NULL, or a transport error message */
  int timed_out;       /* the per-request timeout fired */
  const char *headers; /* raw header lines of the final response */
  size_t headers_len;
  const char *body; /* NUL-terminated; "" in streaming mode */
  size_t body_len;
  double total_ms; /* wall time of the exchange */
} amc_http_response_t;

typedef void (*amc_http_done_fn)(amc_http_req_t *req,
                                 const amc_http_response_t *resp, void *data);
typedef int (*amc_http_chunk_fn)(amc_http_req_t *req, const char *p, size_t n,
                                 void *data);

typedef struct {
  const char *method;         /* "GET" (default), "POST", "PUT", ... */
  const char *url;            /* required */
  const char *const *headers; /* NULL-terminated "Name: value" lines */
  const char *body;           /* may be NULL */
  size_t body_len;
  long timeout_ms;                  /* whole exchange; 0 = no limit (streams) */
  long connect_timeout_ms;          /* 0 = 10 s */
  const char *ca_file;              /* PEM CA bundle file */
  const char *ca_pem;               /* or PEM CA bundle in memory */
  int insecure;                     /* skip peer/host verification (explicit) */
  const char *cert_file, *key_file; /* client certificate (PEM files) */
  const char *cert_pem, *key_pem;   /* or in memory */
  const char *tls_server_name;      /* verify the certificate against (and
                                       send as SNI) this name, not the URL's
                                       host; https only; see TLS above */
  amc_http_chunk_fn on_chunk;       /* streaming mode when set */
} amc_http_opts_t;

/* Creates the client on `loop`. Returns NULL on failure. */
/* Is `name` usable as `tls_server_name` (a host name: 1-253 letters,
 * digits, '.', '-', '_')? Also for callers that check configuration
 * before making requests (kubeconfig). */
int amc_http_server_name_ok(const char *name);

amc_http_t *amc_http_new(uv_loop_t *loop);

/* Starts a request. Returns NULL when the options are invalid (no URL) or
 * libcurl refuses them; the callback is then never called. */
amc_http_req_t *amc_http_start(amc_http_t *h, const amc_http_opts_t *opts,
                               amc_http_done_fn done, void *data);

/* Stops a request; its callback will not be called. */
void amc_http_cancel(amc_http_req_t *req);

/* Status and raw headers of the response in progress (streaming mode). */
long amc_http_req_status(amc_http_req_t *req);
const char *amc_http_req_headers(amc_http_req_t *req, size_t *len);

/* Number of requests in flight. */
size_t amc_http_active(const amc_http_t *h);

/* Aborts every request (no callbacks), releases libcurl, closes the uv
 * handles and frees `h`; `closed` (may be NULL) runs once all handles are
 * closed, on a later loop iteration. */
void amc_http_close(amc_http_t *h, void (*closed)(void *data), void *data);

/* Finds header `name` (case-insensitive) in a raw header block, starting
 * after `from` (NULL = from the start). Returns a pointer to its value (not
 * NUL-terminated, trimmed; length in *vlen), or NULL. Use the returned
 * pointer as `from` to find the next occurrence (e.g. Set-Cookie). */
const char *amc_http_header_find(const char *headers, size_t len,
                                 const char *name, const char *from,
                                 size_t *vlen);

#endif
