/* client.h - requests to the Kubernetes API server, on the shared HTTP module.
 *
 * Adds to runtime/http.h what every Kubernetes call needs: the server URL
 * and TLS settings from an amc_kubeconfig_t, the bearer token from a token
 * source (re-read every minute and at once after a 401: a request answered
 * 401 is retried once with the re-read token when the token comes from a
 * file), `Accept: application/json`, and a bounded error body for streaming
 * requests (so a watch answered 410 or 401 can be told apart).
 *
 * Ownership: the client borrows the amc_http_t and copies the config. A
 * call is owned by the client until its `done` callback returns or it is
 * cancelled (amc_kube_call_cancel: no callback then). Free the client only
 * after cancelling its calls. */
#ifndef AMC_KUBE_CLIENT_H
#define AMC_KUBE_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "http.h"
#include "kube/kubeconfig.h"
#include "util/buf.h"

typedef struct amc_kube_client amc_kube_client_t;
typedef struct amc_kube_call amc_kube_call_t;

typedef struct {
  long status;       /* HTTP status; 0 on a transport error */
  const char *error; /* transport error, or NULL */
  const char *body;  /* response body ("" for a successful stream) */
  size_t body_len;
} amc_kube_resp_t;

typedef void (*amc_kube_done_fn)(void *data, const amc_kube_resp_t *resp);
/* Streaming: called with each chunk of a 2xx body. Return non-zero to stop
 * (the call then ends with an error, or cancel it instead). */
typedef int (*amc_kube_chunk_fn)(void *data, const char *p, size_t n);

typedef struct {
  const char *method;       /* default GET */
  const char *path;         /* "/api/v1/services?limit=500" (required) */
  const char *content_type; /* for bodies */
  const char *body;
  size_t body_len;
  long timeout_ms;            /* 0: 30 s for plain calls, none for streams */
  amc_kube_chunk_fn on_chunk; /* streaming when set */
} amc_kube_req_t;

amc_kube_client_t *amc_kube_client_new(uv_loop_t *loop, amc_http_t *http,
                                       const amc_kubeconfig_t *cfg);
void amc_kube_client_free(amc_kube_client_t *c);

/* Starts a call. Returns NULL when the HTTP module refuses it (the callback
 * is then never called). */
amc_kube_call_t *amc_kube_call(amc_kube_client_t *c, const amc_kube_req_t *req,
                               amc_kube_done_fn done, void *data);
void amc_kube_call_cancel(amc_kube_call_t *call);

const amc_kubeconfig_t *amc_kube_client_config(const amc_kube_client_t *c);
/* Counters for metrics and tests. */
unsigned amc_kube_client_unauthorized(const amc_kube_client_t *c);
unsigned amc_kube_client_token_reads(const amc_kube_client_t *c);

/* Reads `message` and `reason` of a Status error body into `out` ("HTTP
 * <status>: <reason>: <message>", or the transport error). */
void amc_kube_resp_describe(const amc_kube_resp_t *r, char *out, size_t n);

/* Appends `s` percent-encoded for a query parameter. */
void amc_kube_urlencode(amc_buf_t *out, const char *s);

#endif
