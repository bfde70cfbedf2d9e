/* fuzz_mcp.c - libFuzzer target for everything amc does with bytes from an
 * MCP server: gRPC message reassembly (split at fuzzer-chosen points),
 * protobuf decoding of legacy Resources and ADS DiscoveryResponses, the
 * protobuf -> Lua conversion of every resource, canonical JSON encoding, and
 * grpc-message percent-decoding.
 *
 * Input: byte 0 picks the chunk size for reassembly (1..256), byte 1 the
 * message type (legacy Resources / DiscoveryResponse / DeltaDiscovery-
 * Response); the rest is the gRPC byte stream. */
#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "grpc.h"
#include "mcp/mcp_common.h"
#include "mcp/v1alpha1/mcp.pb-c.h"

static amc_mcp_conv_t conv;
static int xds;

static void convert(const uint8_t *d, size_t n) {
  amc_mcp_item_t it;
  char err[600];
  if (amc_mcp_conv_resource(&conv, d, n, NULL, n & 1, &it, err, sizeof err) ==
      0)
    amc_mcp_item_clear(&it);
  amc_buf_reset(&conv.warn);
  if (lua_gettop(conv.L) != 0)
    abort(); /* the converter must leave the stack as it found it */
}

static int on_msg(void *ud, const uint8_t *d, size_t n) {
  (void)ud;
  if (xds == 2) {
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *r =
        envoy__service__discovery__v3__delta_discovery_response__unpack(NULL, n,
                                                                        d);
    if (!r)
      return 0;
    for (size_t i = 0; i < r->n_resources; i++)
      if (r->resources[i]->resource)
        convert(r->resources[i]->resource->value.data,
                r->resources[i]->resource->value.len);
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(
        r, NULL);
  } else if (xds) {
    Envoy__Service__Discovery__V3__DiscoveryResponse *r =
        envoy__service__discovery__v3__discovery_response__unpack(NULL, n, d);
    if (!r)
      return 0;
    for (size_t i = 0; i < r->n_resources; i++)
      convert(r->resources[i]->value.data, r->resources[i]->value.len);
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
  } else {
    Istio__Mcp__V1alpha1__Resources *r =
        istio__mcp__v1alpha1__resources__unpack(NULL, n, d);
    if (!r)
      return 0;
    for (size_t i = 0; i < r->n_resources; i++) {
      size_t len =
          istio__mcp__v1alpha1__resource__get_packed_size(r->resources[i]);
      uint8_t *buf = malloc(len ? len : 1);
      istio__mcp__v1alpha1__resource__pack(r->resources[i], buf);
      convert(buf, len);
      free(buf);
    }
    istio__mcp__v1alpha1__resources__free_unpacked(r, NULL);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!conv.L && amc_mcp_conv_init(&conv) < 0)
    abort();
  if (size < 2)
    return 0;
  size_t chunk = (size_t)data[0] + 1;
  xds = data[1] & 3; /* 0 legacy, 1 SotW, 2 Delta, 3 SotW */
  data += 2;
  size -= 2;
  amc_buf_t acc = AMC_BUF_INIT;
  char err[160];
  for (size_t off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (amc_grpc_deframe(&acc, data + off, n, 4u << 20, on_msg, NULL, err,
                         sizeof err))
      break;
  }
  amc_buf_free(&acc);
  /* the raw bytes as a Resource and as a grpc-message value */
  convert(data, size);
  amc_buf_t pd = AMC_BUF_INIT;
  amc_grpc_percent_decode((const char *)data, size, &pd);
  amc_buf_free(&pd);
  return 0;
}
