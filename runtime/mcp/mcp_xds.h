/* mcp_xds.h - MCP over xDS (istiod, Istio 1.7+): an ADS client on
 * /envoy.service.discovery.v3.AggregatedDiscoveryService/
 * StreamAggregatedResources (state of the world), or Delta (below).
 *
 * On every new stream, for each kind in amc_pb_kinds, two subscriptions:
 * "networking.istio.io/v1/<Kind>" (istiod 1.24+) and
 * "networking.istio.io/v1alpha3/<Kind>" (1.7-1.23); a server answers the
 * version it does not list with an empty set. The first request carries the
 * node: id "router~<ip>~amc.<ns>~<ns>.svc.cluster.local" (router: istiod
 * pushes Gateway changes to routers, and does not filter them by sidecar
 * scope), metadata GENERATOR=api and NAMESPACE=<ns>.
 *
 * Each response is the full state of its type URL. The sink keeps the last
 * accepted set per type URL (also across reconnects) and hands over, per
 * kind, the union of its two type URLs (v1 wins on a duplicate name) with
 * on_replace. ACK = {type_url, version_info, response_nonce}; a response
 * with any bad resource is NACKed (version_info = the last accepted version,
 * error_detail code 3 naming the resource) and changes nothing.
 * on_synced(kind) follows once both type URLs of the kind answered on the
 * current stream.
 *
 * Delta (option `delta`, DeltaAggregatedResources): the same two
 * subscriptions per kind (wildcard: no names); the first response of a type
 * on a stream is its full state, later ones add/replace `resources` and drop
 * `removed_resources` ("<ns>/<name>"); ACK = {type_url, response_nonce},
 * NACK adds error_detail. istiod gains nothing from Delta for these types
 * (every push still carries every resource), so SotW is the default.
 *
 * SimpleLB: if the response's control_plane.identifier names an istiod
 * version below 1.14, 0 is read as ROUND_ROBIN; otherwise as UNSPECIFIED.
 *
 * Auth (port 15012): TLS verified against the Istio CA root (ca_file) and a
 * bearer token with audience istio-ca (token_file); port 15010 is h2c. */
#ifndef AMC_MCP_XDS_H
#define AMC_MCP_XDS_H

#include <stddef.h>
#include <stdint.h>

#include "mcp/mcp_sink.h"

#define AMC_MCP_XDS_PATH                                                       \
  "/envoy.service.discovery.v3.AggregatedDiscoveryService/"                    \
  "StreamAggregatedResources"

#define AMC_MCP_XDS_DELTA_PATH                                                 \
  "/envoy.service.discovery.v3.AggregatedDiscoveryService/"                    \
  "DeltaAggregatedResources"

void amc_mcp_xds_on_start(amc_mcp_sink_t *s);
void amc_mcp_xds_on_message(amc_mcp_sink_t *s, const uint8_t *data, size_t len);
void amc_mcp_xds_free(amc_mcp_sink_t *s);

#endif
