/* proto_registry.h - which protobuf-c descriptor decodes an Any.
 *
 * Every message amc may find inside a google.protobuf.Any (Istio specs, the
 * MCP Resource wrapper, the well-known types) is listed here by its full
 * name. Type URLs are "<prefix>/<full name>"; everything up to the last '/'
 * is ignored, as in protobuf's own Any resolution. */
#ifndef AMC_PROTO_REGISTRY_H
#define AMC_PROTO_REGISTRY_H

#include <protobuf-c/protobuf-c.h>

/* Returns the descriptor for a full name ("istio.networking.v1alpha3.Gateway")
 * or a type URL ("type.googleapis.com/istio.networking.v1alpha3.Gateway"),
 * or NULL when amc does not know the type. */
const ProtobufCMessageDescriptor *amc_proto_find(const char *name_or_url);

#endif
