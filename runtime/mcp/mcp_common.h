/* mcp_common.h - what the two MCP sinks (legacy Galley MCP, mcp_legacy.h;
 * MCP-over-xDS from istiod, mcp_xds.h) share: their options, their output
 * interface, resource conversion and reconnect backoff.
 *
 * Output interface. A sink never touches the store itself; the controller
 * (or `amc mcp-dump`) passes a small vtable:
 *   on_replace(kind, objs, n)  the complete set of `kind` (full-state push):
 *                              every object not listed has been deleted;
 *   on_upsert(kind, obj)       one object added or changed (incremental push);
 *   on_delete(kind, ns, name)  one object removed (incremental push);
 *   on_synced(kind)            the first complete state of `kind` on this
 *                              connection has been delivered (again after
 *                              every reconnect);
 *   on_event(event, detail)    "connected", "disconnected" (detail = gRPC
 *                              status and message), "nack" (detail = the
 *                              error_detail sent), "warning".
 * Objects are canonical JSON (json.h) of the Kubernetes-shaped object
 * (pb_lua.h), so a store keeping canonical JSON takes them as they are.
 * Everything handed to a callback is borrowed for the callback's duration.
 * Any callback may be NULL.
 *
 * A response that fails to decode or validate is NACKed as a whole with an
 * error naming the resource, and nothing is delivered: what is serving stays.
 * Reconnects use exponential backoff with jitter (delay drawn uniformly from
 * [d/2, d], d doubling from backoff_initial_ms up to backoff_max_ms, reset
 * once a connection delivered a valid response). */
#ifndef AMC_MCP_COMMON_H
#define AMC_MCP_COMMON_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mcp/pb_lua.h"
#include "util/buf.h"

typedef struct {
  const char *ns;
  const char *name;
  const char *json; /* canonical JSON of the whole object */
  size_t json_len;
  const char *resource_version; /* metadata.resourceVersion, or NULL */
} amc_mcp_object_t;

typedef struct {
  void (*on_replace)(void *ud, const char *kind, const amc_mcp_object_t *objs,
                     size_t n);
  void (*on_upsert)(void *ud, const char *kind, const amc_mcp_object_t *obj);
  void (*on_delete)(void *ud, const char *kind, const char *ns,
                    const char *name);
  void (*on_synced)(void *ud, const char *kind);
  void (*on_event)(void *ud, const char *event, const char *detail);
} amc_mcp_ops_t;

typedef struct {
  const char *url;     /* grpc.h URL: http(s)://host:port */
  const char *ca_file; /* TLS trust roots (istio-ca-root-cert root-cert.pem) */
  const char
      *server_name;       /* TLS name to verify, e.g. istiod.istio-system.svc */
  const char *token_file; /* bearer token (audience istio-ca) for port 15012 */
  int insecure_skip_verify;
  const char *node_id;         /* legacy: SinkNode.id (default "amc");
                                  xDS: node.id (default router~<POD_IP or
                                  127.0.0.1>~amc.<ns>~<ns>.svc.cluster.local) */
  const char *node_namespace;  /* xDS node metadata NAMESPACE (istio-system) */
  uint64_t backoff_initial_ms; /* 0 = 500 */
  uint64_t backoff_max_ms;     /* 0 = 30000 */
  uint64_t keepalive_ms;       /* 0 = grpc.h default (30 s) */
  uint64_t keepalive_timeout_ms; /* 0 = grpc.h default (10 s) */
  uint64_t connect_timeout_ms;   /* 0 = grpc.h default (10 s) */
  int simple_lb_legacy; /* SimpleLB 0 = ROUND_ROBIN; legacy MCP sets it */
  int delta;            /* xDS: DeltaAggregatedResources instead of SotW */
} amc_mcp_options_t;

/* Converter: a private Lua state turning serialized istio.mcp Resources into
 * canonical JSON. */
typedef struct {
  lua_State *L;
  amc_buf_t warn;
} amc_mcp_conv_t;

typedef struct {
  char ns[254];
  char name[254];
  char *json; /* malloc'd */
  size_t json_len;
  char *resource_version; /* malloc'd, or NULL */
  const amc_pb_kind_t *kind;
} amc_mcp_item_t;

int amc_mcp_conv_init(amc_mcp_conv_t *c);
void amc_mcp_conv_free(amc_mcp_conv_t *c);
/* Converts one serialized Resource. Returns 0 and fills `out` (release it
 * with amc_mcp_item_clear), or -1 with `err`. Unknown-Any warnings go to
 * c->warn. */
int amc_mcp_conv_resource(amc_mcp_conv_t *c, const uint8_t *data, size_t len,
                          const amc_pb_kind_t *want, int simple_lb_legacy,
                          amc_mcp_item_t *out, char *err, size_t errlen);
void amc_mcp_item_clear(amc_mcp_item_t *item);
void amc_mcp_items_free(amc_mcp_item_t *items, size_t n);
/* The borrowed view of an item handed to the ops. */
amc_mcp_object_t amc_mcp_item_object(const amc_mcp_item_t *item);
/* Sorts by namespace/name (the order objects are handed over in). */
void amc_mcp_items_sort(amc_mcp_item_t *items, size_t n);
/* After sorting: the first item whose namespace/name repeats, or NULL. A
 * response naming an object twice is invalid (NACKed). */
const amc_mcp_item_t *amc_mcp_items_dup(const amc_mcp_item_t *items, size_t n);

/* Backoff state. */
typedef struct {
  uint64_t initial, max, cur;
  uint64_t rnd;
} amc_mcp_backoff_t;

void amc_mcp_backoff_init(amc_mcp_backoff_t *b, uint64_t initial, uint64_t max);
uint64_t amc_mcp_backoff_next(amc_mcp_backoff_t *b); /* ms to wait */
void amc_mcp_backoff_reset(amc_mcp_backoff_t *b);

#endif
