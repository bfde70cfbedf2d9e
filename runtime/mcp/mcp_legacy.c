/* mcp_legacy.c - legacy MCP sink protocol (see mcp_legacy.h). */
#include "mcp/mcp_legacy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/v1alpha1/mcp.pb-c.h"

typedef struct {
  int synced[8]; /* per amc_pb_kinds index, on the current stream */
} legacy_t;

static legacy_t *state(amc_mcp_sink_t *s) {
  if (!s->proto)
    s->proto = calloc(1, sizeof(legacy_t));
  return s->proto;
}

static void send_request(amc_mcp_sink_t *s, const char *collection,
                         const char *nonce, int code, const char *error) {
  Istio__Mcp__V1alpha1__SinkNode node = ISTIO__MCP__V1ALPHA1__SINK_NODE__INIT;
  node.id = (char *)(s->o.node_id ? s->o.node_id : "amc");
  Istio__Mcp__V1alpha1__RequestResources req =
      ISTIO__MCP__V1ALPHA1__REQUEST_RESOURCES__INIT;
  req.sink_node = &node;
  req.collection = (char *)collection;
  req.response_nonce = (char *)(nonce ? nonce : "");
  Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
  if (error) {
    st.code = code;
    st.message = (char *)error;
    req.error_detail = &st;
  }
  size_t n = istio__mcp__v1alpha1__request_resources__get_packed_size(&req);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf)
    abort();
  istio__mcp__v1alpha1__request_resources__pack(&req, buf);
  amc_mcp_sink_send(s, buf, n);
  free(buf);
}

void amc_mcp_legacy_on_start(amc_mcp_sink_t *s) {
  legacy_t *st = state(s);
  memset(st->synced, 0, sizeof st->synced);
  for (size_t i = 0; i < amc_pb_nkinds; i++)
    send_request(s, amc_pb_kinds[i].collection, NULL, 0, NULL);
}

static void nack(amc_mcp_sink_t *s, const char *collection, const char *nonce,
                 int code, const char *msg) {
  send_request(s, collection, nonce, code, msg);
  char detail[1024];
  snprintf(detail, sizeof detail, "%.200s nonce %.40s: %s", collection, nonce,
           msg);
  amc_mcp_sink_event(s, "nack", detail);
}

void amc_mcp_legacy_on_message(amc_mcp_sink_t *s, const uint8_t *data,
                               size_t len) {
  legacy_t *st = state(s);
  Istio__Mcp__V1alpha1__Resources *r =
      istio__mcp__v1alpha1__resources__unpack(NULL, len, data);
  if (!r) {
    /* No collection or nonce to answer: the stream is unusable. */
    amc_mcp_sink_event(s, "warning",
                       "undecodable istio.mcp.v1alpha1.Resources ignored");
    return;
  }
  const char *coll = r->collection ? r->collection : "";
  const char *nonce = r->nonce ? r->nonce : "";
  size_t ki = amc_pb_nkinds;
  for (size_t i = 0; i < amc_pb_nkinds; i++)
    if (strcmp(amc_pb_kinds[i].collection, coll) == 0)
      ki = i;
  if (ki == amc_pb_nkinds) {
    nack(s, coll, nonce, 12, "collection not requested by amc");
    istio__mcp__v1alpha1__resources__free_unpacked(r, NULL);
    return;
  }
  const amc_pb_kind_t *kind = &amc_pb_kinds[ki];
  amc_mcp_item_t *items = calloc(r->n_resources + 1, sizeof *items);
  if (!items)
    abort();
  char err[600];
  size_t n = 0;
  for (size_t i = 0; i < r->n_resources; i++, n++) {
    Istio__Mcp__V1alpha1__Resource *res = r->resources[i];
    size_t plen = istio__mcp__v1alpha1__resource__get_packed_size(res);
    uint8_t *buf = malloc(plen ? plen : 1);
    istio__mcp__v1alpha1__resource__pack(res, buf);
    int rc = amc_mcp_conv_resource(&s->conv, buf, plen, kind,
                                   /*simple_lb_legacy=*/1, &items[n], err,
                                   sizeof err);
    free(buf);
    if (rc < 0) {
      char msg[700];
      snprintf(msg, sizeof msg, "%s resource %zu: %s", coll, i, err);
      nack(s, coll, nonce, 3, msg);
      amc_mcp_items_free(items, n);
      amc_buf_reset(&s->conv.warn);
      istio__mcp__v1alpha1__resources__free_unpacked(r, NULL);
      return;
    }
  }
  amc_mcp_items_sort(items, n);
  const amc_mcp_item_t *dup = amc_mcp_items_dup(items, n);
  if (dup) {
    char msg[700];
    snprintf(msg, sizeof msg, "%s: %s %s/%s appears more than once", coll,
             kind->kind, dup->ns, dup->name);
    nack(s, coll, nonce, 3, msg);
    amc_mcp_items_free(items, n);
    amc_buf_reset(&s->conv.warn);
    istio__mcp__v1alpha1__resources__free_unpacked(r, NULL);
    return;
  }
  amc_mcp_sink_valid(s);
  amc_mcp_sink_flush_warnings(s);
  if (r->incremental) {
    for (size_t i = 0; i < n; i++) {
      amc_mcp_object_t o = amc_mcp_item_object(&items[i]);
      if (s->ops.on_upsert)
        s->ops.on_upsert(s->ud, kind->kind, &o);
    }
    for (size_t i = 0; i < r->n_removed_resources; i++) {
      char nsb[254] = "", nameb[254];
      const char *full = r->removed_resources[i];
      const char *sl = strchr(full, '/');
      if (sl)
        snprintf(nsb, sizeof nsb, "%.*s", (int)(sl - full), full);
      snprintf(nameb, sizeof nameb, "%s", sl ? sl + 1 : full);
      if (s->ops.on_delete)
        s->ops.on_delete(s->ud, kind->kind, nsb, nameb);
    }
  } else {
    amc_mcp_object_t *objs = calloc(n + 1, sizeof *objs);
    for (size_t i = 0; i < n; i++)
      objs[i] = amc_mcp_item_object(&items[i]);
    if (s->ops.on_replace)
      s->ops.on_replace(s->ud, kind->kind, objs, n);
    free(objs);
  }
  amc_mcp_items_free(items, n);
  if (s->call) /* a callback may not close us, but the call may have ended */
    send_request(s, coll, nonce, 0, NULL);
  if (!st->synced[ki] && !r->incremental) {
    st->synced[ki] = 1;
    if (s->ops.on_synced)
      s->ops.on_synced(s->ud, kind->kind);
  }
  istio__mcp__v1alpha1__resources__free_unpacked(r, NULL);
}

void amc_mcp_legacy_free(amc_mcp_sink_t *s) {
  free(s->proto);
  s->proto = NULL;
}
