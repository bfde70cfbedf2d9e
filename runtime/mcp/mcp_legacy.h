/* mcp_legacy.h - the legacy MCP protocol (Galley, Istio 1.1-1.5), sink side
 * of /istio.mcp.v1alpha1.ResourceSource/EstablishResourceStream.
 *
 * On every new stream: one RequestResources{sink_node, collection} per
 * collection in amc_pb_kinds (gateways, virtualservices, destinationrules,
 * serviceentries under istio/networking/v1alpha3/). Kubernetes collections
 * (k8s/core/v1/services, namespaces) are not requested: Services, Endpoints
 * and Secrets come from the Kubernetes source, and asking a server for a
 * collection it does not serve kills the whole stream.
 * Each Resources is decoded completely before anything is delivered:
 *   - incremental=false: full state -> on_replace (removed_resources
 *     ignored, as the protocol says);
 *   - incremental=true: on_upsert per resource, on_delete per removed name;
 *   - then ACK = RequestResources{sink_node, collection, response_nonce};
 *   - any resource that fails -> NACK (the same + error_detail{code 3
 *     INVALID_ARGUMENT, message naming the resource}) and nothing applied;
 *   - a collection we did not ask for -> NACK code 12 UNIMPLEMENTED.
 * SimpleLB 0 is read as ROUND_ROBIN (Galley predates istio/api 1.14). */
#ifndef AMC_MCP_LEGACY_H
#define AMC_MCP_LEGACY_H

#include <stddef.h>
#include <stdint.h>

#include "mcp/mcp_sink.h"

#define AMC_MCP_LEGACY_PATH                                                    \
  "/istio.mcp.v1alpha1.ResourceSource/EstablishResourceStream"

void amc_mcp_legacy_on_start(amc_mcp_sink_t *s);
void amc_mcp_legacy_on_message(amc_mcp_sink_t *s, const uint8_t *data,
                               size_t len);
void amc_mcp_legacy_free(amc_mcp_sink_t *s);

#endif
