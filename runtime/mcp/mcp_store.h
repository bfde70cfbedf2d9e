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
 * (amc_mcp_store_synced, on_synced_all) so the controller can wait for a
 * complete first state before it deletes anything on AVI.
 *
 * Wiring in `amc run` (sketch):
 *   amc_mcp_store_init(&ms, store);
 *   ms.on_synced_all = mark_source_synced; ms.data = run;
 *   amc_mcp_options_from_env(&o, &mode, &envbuf, err, n)   (or
 *   amc_mcp_parse_url on --mcp-url)
 *   sink = amc_mcp_sink_start(loop, mode, &o, amc_mcp_store_ops(), &ms, ...);
 *   ... amc_mcp_sink_close(sink, closed_cb) on shutdown. NACKs and disconnects
 * change nothing in the store. The store's listener sees every change as usual.
 */
#ifndef AMC_MCP_STORE_H
#define AMC_MCP_STORE_H

#include "mcp/mcp_common.h"
#include "store.h"

#define AMC_MCP_STORE_SOURCE "mcp"

typedef struct {
  amc_store_t *store;
  unsigned synced;  /* bit i: amc_pb_kinds[i] had a complete state */
  uint64_t changes; /* puts + deletes that changed the store */
  /* Optional: called once, when every kind first had a complete state
   * (e.g. amc_controller_source_synced), and on each sink event
   * ("connected", "disconnected", "nack", "warning"; e.g. for metrics). */
  void (*on_synced_all)(void *data);
  void (*on_event)(void *data, const char *event, const char *detail);
  void *data;
  int synced_all_called;
} amc_mcp_store_t;

void amc_mcp_store_init(amc_mcp_store_t *ms, amc_store_t *store);
const amc_mcp_ops_t *amc_mcp_store_ops(void);
/* 1 when every kind in amc_pb_kinds has had a complete state. */
int amc_mcp_store_synced(const amc_mcp_store_t *ms);

#endif
