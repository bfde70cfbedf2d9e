/* pb_lua.h - protobuf messages -> Lua tables in the Kubernetes JSON shape.
 *
 * A generic walk over protobuf-c descriptors. The result is what the proto3
 * JSON mapping (and so a Kubernetes CRD's JSON) gives for the same message,
 * so rules never care whether an object came from Kubernetes, fs:// or MCP:
 *   - field names in lowerCamelCase (`export_to` -> `exportTo`);
 *   - proto3 defaults (0, "", false, empty lists and maps) are omitted,
 *     except members of a oneof, which appear whenever set;
 *   - enums by name (an unknown number stays an integer);
 *   - 32-bit integers as Lua integers; 64-bit integers as decimal strings;
 *     floats as numbers ("NaN", "Infinity", "-Infinity" as strings);
 *     bytes as base64;
 *   - repeated fields carry the registry metatable AMC_JSON_ARRAY_MT; maps
 *     become tables keyed by strings;
 *   - Duration as "1.5s" (seconds with the fraction's trailing zeros cut,
 *     "30s" for whole seconds), Timestamp as RFC 3339 UTC
 *     ("2024-05-01T10:00:00Z", fraction only when non-zero), wrappers as
 *     their bare value, Struct/Value/ListValue as plain JSON values
 *     (null_value -> AMC_JSON_NULL);
 *   - Any as {"@type" = url, <fields>} ({"@type", value = ...} for the
 *     well-known types). An Any of a type amc does not know becomes
 *     {"@type" = url} and is reported through `warn` (never an error).
 *
 * SimpleLB: istio/api 1.14 renumbered LoadBalancerSettings.SimpleLB; on the
 * wire 0 means ROUND_ROBIN from servers before 1.14 and UNSPECIFIED from
 * later ones. `simple_lb_legacy` selects the old meaning (names 1..3 are the
 * same in both numberings). */
#ifndef AMC_MCP_PB_LUA_H
#define AMC_MCP_PB_LUA_H

#include <lua.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "util/buf.h"

typedef struct {
  int simple_lb_legacy; /* 1: SimpleLB 0 = ROUND_ROBIN (Istio < 1.14) */
  amc_buf_t *warn;      /* optional: "<path>: <problem>\n" lines appended */
} amc_pb_lua_opts_t;

/* Pushes `msg` converted as above. Returns 0, or -1 (nothing pushed) with
 * `err` = "<path>: <problem>" (invalid UTF-8 in a string, an undecodable
 * nested Any, nesting deeper than 64). `path` names the root ("spec"). */
int amc_pb_lua_push(lua_State *L, const ProtobufCMessage *msg, const char *path,
                    const amc_pb_lua_opts_t *opts, char *err, size_t errlen);

/* Decodes the `len` bytes as `desc` and pushes the conversion. Same errors,
 * plus "<path>: cannot decode <type>". */
int amc_pb_lua_push_bytes(lua_State *L, const ProtobufCMessageDescriptor *desc,
                          const uint8_t *data, size_t len, const char *path,
                          const amc_pb_lua_opts_t *opts, char *err,
                          size_t errlen);

/* The Istio kinds amc takes over MCP, with their protobuf body type. */
typedef struct {
  const char *kind;       /* "Gateway" */
  const char *proto;      /* "istio.networking.v1alpha3.Gateway" */
  const char *collection; /* legacy MCP: "istio/networking/v1alpha3/gateways" */
} amc_pb_kind_t;

extern const amc_pb_kind_t amc_pb_kinds[];
extern const size_t amc_pb_nkinds;
const amc_pb_kind_t *amc_pb_kind_by_proto(const char *full_name_or_url);
const amc_pb_kind_t *amc_pb_kind_by_name(const char *kind);

/* Converts one serialized istio.mcp.v1alpha1.Resource into the full
 * Kubernetes-shaped object and pushes it:
 *   {apiVersion = "networking.istio.io/v1", kind = ..., metadata = {name,
 *    namespace, resourceVersion, labels, annotations, creationTimestamp},
 *    spec = {...}}
 * (apiVersion is always v1: the CRDs serve v1alpha3, v1beta1 and v1 with one
 * schema, so one key per object whatever version the server used).
 * `want_kind`, when not NULL, is the kind the collection/type URL promised;
 * a body of another type is an error. On success *kind_out is the kind, and
 * ns/name are copied out (each at most 254 bytes incl. NUL). Errors (nothing
 * pushed, `err` names the resource when known): undecodable bytes, a missing
 * or invalid name ("<ns>/<name>", DNS-1123), a missing body, a body of an
 * unknown or unexpected type, and the conversion errors above. */
int amc_pb_lua_push_mcp_resource(lua_State *L, const uint8_t *data, size_t len,
                                 const amc_pb_kind_t *want_kind,
                                 const amc_pb_lua_opts_t *opts,
                                 const amc_pb_kind_t **kind_out, char *ns,
                                 char *name, char *err, size_t errlen);

/* Creates (once) the array metatable in the registry, as json.c does. */
void amc_pb_lua_array_mt(lua_State *L);

#endif
