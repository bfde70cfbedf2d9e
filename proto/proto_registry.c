/* proto_registry.c - the table behind amc_proto_find (see proto_registry.h). */
#include "proto_registry.h"

#include <string.h>

#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "mcp/v1alpha1/resource.pb-c.h"
#include "networking/v1alpha3/destination_rule.pb-c.h"
#include "networking/v1alpha3/gateway.pb-c.h"
#include "networking/v1alpha3/service_entry.pb-c.h"
#include "networking/v1alpha3/virtual_service.pb-c.h"

static const ProtobufCMessageDescriptor *const known[] = {
    &istio__networking__v1alpha3__gateway__descriptor,
    &istio__networking__v1alpha3__virtual_service__descriptor,
    &istio__networking__v1alpha3__destination_rule__descriptor,
    &istio__networking__v1alpha3__service_entry__descriptor,
    &istio__networking__v1alpha3__workload_entry__descriptor,
    &istio__mcp__v1alpha1__resource__descriptor,
    &google__protobuf__any__descriptor,
    &google__protobuf__struct__descriptor,
    &google__protobuf__value__descriptor,
    &google__protobuf__list_value__descriptor,
    &google__protobuf__duration__descriptor,
    &google__protobuf__timestamp__descriptor,
    &google__protobuf__bool_value__descriptor,
    &google__protobuf__string_value__descriptor,
    &google__protobuf__bytes_value__descriptor,
    &google__protobuf__int32_value__descriptor,
    &google__protobuf__uint32_value__descriptor,
    &google__protobuf__int64_value__descriptor,
    &google__protobuf__uint64_value__descriptor,
    &google__protobuf__float_value__descriptor,
    &google__protobuf__double_value__descriptor,
};

const ProtobufCMessageDescriptor *amc_proto_find(const char *name_or_url) {
  if (!name_or_url)
    return NULL;
  const char *slash = strrchr(name_or_url, '/');
  const char *name = slash ? slash + 1 : name_or_url;
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    if (strcmp(known[i]->name, name) == 0)
      return known[i];
  }
  return NULL;
}
