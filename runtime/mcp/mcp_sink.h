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
