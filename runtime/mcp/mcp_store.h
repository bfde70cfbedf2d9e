/* mcp_store.h - feeds an MCP sink (mcp_sink.h) into the object store
 * (store.h), the same store the Kubernetes and fs:// sources fill.
 *
 *   amc_mcp_store_t ms;
 *   amc_mcp_store_init(&ms, store);
 *   amc_mcp_sink_start(loop, mode, &opts, amc_mcp_store_ops(), &ms, ...);
 *
 * on_replace makes the store's objects of that kind *that came from MCP*
 * (source "mcp") exactly the given set: new or changed objects are put,
 * missing ones deleted; objects of the kind from other sources are never
 * touched. on_upsert/on_delete apply one change. on_synced marks the kind
 * (amc_mcp_store_synced) so the controller can wait for a complete first
 * state before it deletes anything on AVI. NACKs and disconnects change
 * nothing in the store. The store's listener sees every change as usual. */
#ifndef AMC_MCP_STORE_H
#define AMC_MCP_STORE_H

#include "mcp/mcp_common.h"
#include "store.h"

#define AMC_MCP_STORE_SOURCE "mcp"

typedef struct {
  amc_store_t *store;
  unsigned synced;  /* bit i: amc_pb_kinds[i] had a complete state */
  uint64_t changes; /* puts + deletes that changed the store */
} amc_mcp_store_t;

void amc_mcp_store_init(amc_mcp_store_t *ms, amc_store_t *store);
const amc_mcp_ops_t *amc_mcp_store_ops(void);
/* 1 when every kind in amc_pb_kinds has had a complete state. */
int amc_mcp_store_synced(const amc_mcp_store_t *ms);

#endif
