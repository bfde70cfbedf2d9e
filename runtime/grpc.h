/* grpc.h - one bidirectional gRPC call over HTTP/2 (nghttp2) on the libuv
 * loop, plaintext (h2c, prior knowledge) or TLS (OpenSSL, ALPN "h2").
 *
 * amc needs exactly one long-lived streaming call per config source (MCP or
 * ADS), so an amc_grpc_call_t is one TCP connection carrying one call. The
 * call ends exactly once, reported by `on_end(status, message)`; afterwards
 * nothing else is delivered. Reconnecting is the caller's job (the MCP sinks
 * do it with backoff and jitter, see mcp/mcp_common.h): make a new call.
 *
 * Wire behaviour:
 *   - request headers: POST, :path, te: trailers, content-type
 *     application/grpc, user-agent, and `authorization: Bearer <token>` when
 *     a token file is configured (read at every start, so rotated tokens are
 *     picked up; never logged);
 *   - messages are reassembled across DATA frames (5-byte prefix); compressed
 *     messages and messages over `max_message` end the call (INTERNAL,
 *     RESOURCE_EXHAUSTED);
 *   - the status comes from the trailers, or from a Trailers-Only response,
 *     with grpc-message percent-decoded; a response without grpc-status maps
 *     its HTTP :status (401 -> UNAUTHENTICATED, 403 -> PERMISSION_DENIED,
 *     404 -> UNIMPLEMENTED, 429/502/503/504 -> UNAVAILABLE, else UNKNOWN);
 *   - RST_STREAM without trailers: REFUSED_STREAM -> UNAVAILABLE, CANCEL ->
 *     CANCELLED, ENHANCE_YOUR_CALM -> RESOURCE_EXHAUSTED,
 *     INADEQUATE_SECURITY -> PERMISSION_DENIED, others -> INTERNAL;
 *   - GOAWAY ends the call at once with UNAVAILABLE (the server is draining
 *     the connection; a watcher reconnects and gets the full state again, so
 *     leaving early loses nothing and avoids waiting for the grace period);
 *   - connect, TLS, EOF and keepalive failures -> UNAVAILABLE;
 *   - windows: 16 MiB per stream, 32 MiB per connection (pushes of several
 *     MB flow without stalls); server push disabled;
 *   - keepalive: a PING every `keepalive_ms` (default 30 s; istiod enforces
 *     >= 15 s between client pings) that must be answered within
 *     `keepalive_timeout_ms` (default 10 s). */
#ifndef AMC_GRPC_H
#define AMC_GRPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"

enum {
  AMC_GRPC_OK = 0,
  AMC_GRPC_CANCELLED = 1,
  AMC_GRPC_UNKNOWN = 2,
  AMC_GRPC_INVALID_ARGUMENT = 3,
  AMC_GRPC_DEADLINE_EXCEEDED = 4,
  AMC_GRPC_NOT_FOUND = 5,
  AMC_GRPC_ALREADY_EXISTS = 6,
  AMC_GRPC_PERMISSION_DENIED = 7,
  AMC_GRPC_RESOURCE_EXHAUSTED = 8,
  AMC_GRPC_FAILED_PRECONDITION = 9,
  AMC_GRPC_ABORTED = 10,
  AMC_GRPC_OUT_OF_RANGE = 11,
  AMC_GRPC_UNIMPLEMENTED = 12,
  AMC_GRPC_INTERNAL = 13,
  AMC_GRPC_UNAVAILABLE = 14,
  AMC_GRPC_DATA_LOSS = 15,
  AMC_GRPC_UNAUTHENTICATED = 16,
};

typedef struct {
  /* "http://host:port" or "grpc://host:port" (h2c), "https://host:port" or
   * "grpcs://host:port" (TLS). IPv6 literals in brackets. Required. */
  const char *url;
  const char *ca_file;      /* TLS roots; NULL = the system's default store */
  const char *server_name;  /* name verified and sent as SNI; NULL = URL host */
  int insecure_skip_verify; /* explicit opt-out (the caller logs it) */
  const char *token_file;   /* bearer token file; NULL = no authorization */
  uint64_t keepalive_ms;    /* 0 = 30000 */
  uint64_t keepalive_timeout_ms; /* 0 = 10000 */
  uint64_t connect_timeout_ms;   /* 0 = 10000 (TCP + TLS + response headers) */
  size_t max_message;            /* 0 = 64 MiB */
} amc_grpc_options_t;

typedef struct {
  /* The server accepted the call (response headers with :status 200). */
  void (*on_open)(void *ud);
  /* One complete message; `data` is valid only during the callback. */
  void (*on_message)(void *ud, const uint8_t *data, size_t len);
  /* The end, exactly once. `message` is never NULL (may be ""). */
  void (*on_end)(void *ud, int status, const char *message);
} amc_grpc_callbacks_t;

typedef struct amc_grpc_call_s amc_grpc_call_t;

/* Starts connecting and opens the call `path` ("/pkg.Service/Method").
 * Copies the options. Returns NULL on a bad URL or an unreadable token/CA
 * file, with the reason in `err`. Failures after this point arrive through
 * on_end (never from inside this function). */
amc_grpc_call_t *amc_grpc_call_start(uv_loop_t *loop,
                                     const amc_grpc_options_t *opts,
                                     const char *path,
                                     const amc_grpc_callbacks_t *cb, void *ud,
                                     char *err, size_t errlen);

/* Queues one message (the 5-byte prefix is added here). Messages sent before
 * the connection is up are queued. Returns 0, or -1 if the call has ended. */
int amc_grpc_call_send(amc_grpc_call_t *c, const uint8_t *msg, size_t len);

/* Ends the call from our side (RST_STREAM CANCEL) if still running, without
 * calling on_end, and frees it once libuv has closed its handles. Safe inside
 * any callback of this call. */
void amc_grpc_call_free(amc_grpc_call_t *c);

/* Decodes a grpc-message value: %XX escapes are decoded, raw bytes pass
 * through; if an escape is malformed the raw value is kept. Appends to out. */
void amc_grpc_percent_decode(const char *s, size_t len, amc_buf_t *out);

/* Message reassembly, exposed for tests and the fuzzer. Appends `len` bytes
 * to `acc` and calls `fn` for every complete message. Returns 0, or a gRPC
 * status code (INTERNAL for a compressed message, RESOURCE_EXHAUSTED for one
 * over `max`) with `err` filled. `fn` returning non-zero stops with that
 * value. */
typedef int (*amc_grpc_msg_fn)(void *ud, const uint8_t *data, size_t len);
int amc_grpc_deframe(amc_buf_t *acc, const uint8_t *data, size_t len,
                     size_t max, amc_grpc_msg_fn fn, void *ud, char *err,
                     size_t errlen);

const char *amc_grpc_status_name(int status);

#endif
