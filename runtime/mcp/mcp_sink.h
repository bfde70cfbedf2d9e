/* mcp_sink.h - a config source that streams Istio config over MCP.
 *
 * One sink = one gRPC stream to Galley (AMC_MCP_LEGACY, see mcp_legacy.h) or
 * istiod (AMC_MCP_XDS, see mcp_xds.h), kept alive forever: when the stream
 * ends (error, reset, GOAWAY, server restart) the sink reconnects with
 * backoff and jitter and subscribes again; the server then sends the full
 * state again, which the sink hands over with on_replace, so nothing is lost
 * and nothing is deleted that still exists. Output: mcp_common.h's ops.
 *
 * Lifetime: amc_mcp_sink_new copies the options; amc_mcp_sink_close stops
 * it, and `closed(ud)` runs once every handle is closed (then the sink is
 * freed). All on the loop thread. */
#ifndef AMC_MCP_SINK_H
#define AMC_MCP_SINK_H

#include <uv.h>

#include "grpc.h"
#include "mcp/mcp_common.h"

typedef enum { AMC_MCP_LEGACY = 0, AMC_MCP_XDS = 1 } amc_mcp_mode_t;

typedef struct amc_mcp_sink_s amc_mcp_sink_t;

/* Returns NULL (with `err`) on bad options. Starts connecting at once. */
amc_mcp_sink_t *amc_mcp_sink_start(uv_loop_t *loop, amc_mcp_mode_t mode,
                                   const amc_mcp_options_t *opts,
                                   const amc_mcp_ops_t *ops, void *ud,
                                   char *err, size_t errlen);
void amc_mcp_sink_close(amc_mcp_sink_t *s, void (*closed)(void *ud));

/* MCP_URL forms (the scheme picks protocol and transport):
 *   mcp://host:port    legacy MCP (Galley), h2c       (Galley: port 9901)
 *   mcps://host:port   legacy MCP over TLS
 *   xds://host:port    MCP over xDS (istiod), h2c     (istiod: port 15010)
 *   xdss://host:port   MCP over xDS over TLS          (istiod: port 15012)
 *   http(s)://, grpc(s)://  transport as written; protocol = `fallback`
 * Writes the transport URL (http:// or https://) to `grpc_url`. Returns 0,
 * or -1 with `err` for any other scheme. */
int amc_mcp_parse_url(const char *url, amc_mcp_mode_t fallback,
                      amc_mcp_mode_t *mode, char *grpc_url, size_t len,
                      char *err, size_t errlen);

/* The original controller's switches, for `amc run`:
 *   ISTIO_ENABLED   "true"/"1"/"yes" turns the Istio (MCP) source on
 *   MCP_URL         see amc_mcp_parse_url (required when enabled)
 *   MCP_PROTOCOL    "legacy" or "xds", for http(s):// URLs (default legacy)
 *   MCP_CA_FILE     TLS roots (default /var/run/secrets/istio/root-cert.pem
 *                   when that file exists)
 *   MCP_TOKEN_FILE  bearer token (default, for TLS xDS,
 *                   /var/run/secrets/tokens/istio-token when it exists)
 *   MCP_SERVER_NAME TLS name to verify (default: the URL's host)
 *   POD_NAMESPACE   node NAMESPACE for xDS (default istio-system)
 *   MCP_DELTA       true: xDS over DeltaAggregatedResources instead of
 *                   state of the world (an error with legacy MCP)
 * Returns 1 and fills `o`/`mode` (strings point into `env_buf`, which must
 * outlive `o`) when enabled, 0 when ISTIO_ENABLED is off, -1 with `err`
 * on a bad setting. */
typedef struct {
  char url[512];
  char ca_file[512];
  char token_file[512];
} amc_mcp_env_buf_t;
int amc_mcp_options_from_env(amc_mcp_options_t *o, amc_mcp_mode_t *mode,
                             amc_mcp_env_buf_t *env_buf, char *err,
                             size_t errlen);
/* The same for a given URL (e.g. `amc run --mcp-url`), whatever
 * ISTIO_ENABLED says; the other variables above still apply. Returns 0 or
 * -1 with `err`. */
int amc_mcp_options_from_url(amc_mcp_options_t *o, amc_mcp_mode_t *mode,
                             amc_mcp_env_buf_t *env_buf, const char *url,
                             char *err, size_t errlen);

/* ---- for mcp_legacy.c / mcp_xds.c ---- */
struct amc_mcp_sink_s {
  uv_loop_t *loop;
  amc_mcp_mode_t mode;
  amc_mcp_options_t o; /* strings owned (copied) */
  amc_mcp_ops_t ops;
  void *ud;
  amc_grpc_call_t *call;
  uv_timer_t timer;
  amc_mcp_backoff_t backoff;
  amc_mcp_conv_t conv;
  int closing, valid_seen;
  void (*closed)(void *ud);
  void *proto; /* protocol state */
};

/* Sends one serialized message on the current call. */
int amc_mcp_sink_send(amc_mcp_sink_t *s, const uint8_t *data, size_t len);
void amc_mcp_sink_event(amc_mcp_sink_t *s, const char *event,
                        const char *detail);
/* Marks the connection healthy (a valid response arrived): backoff resets. */
void amc_mcp_sink_valid(amc_mcp_sink_t *s);
/* Hands over any pending unknown-Any warnings as "warning" events. */
void amc_mcp_sink_flush_warnings(amc_mcp_sink_t *s);

#endif
