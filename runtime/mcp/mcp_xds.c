/* mcp_xds.c - MCP-over-xDS sink protocol (see mcp_xds.h). */
#include "mcp/mcp_xds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/service/discovery/v3/discovery.pb-c.h"

#define NVERS 2 /* index 0: v1, 1: v1alpha3 */
static const char *const versions[NVERS] = {"v1", "v1alpha3"};
#define MAX_KINDS 8

typedef struct {
  char url[128];
  const amc_pb_kind_t *kind;
  amc_mcp_item_t *items; /* last accepted set, sorted */
  size_t n;
  char *version; /* last accepted version_info */
  int answered;  /* on the current stream */
} sub_t;

typedef struct {
  sub_t subs[MAX_KINDS * NVERS];
  size_t nsubs;
  int synced[MAX_KINDS];
  int node_sent;
  int simple_lb_legacy;
} xds_t;

static xds_t *state(amc_mcp_sink_t *s) {
  if (!s->proto) {
    xds_t *x = calloc(1, sizeof *x);
    if (!x)
      abort();
    for (size_t k = 0; k < amc_pb_nkinds && k < MAX_KINDS; k++)
      for (int v = 0; v < NVERS; v++) {
        sub_t *sub = &x->subs[x->nsubs++];
        snprintf(sub->url, sizeof sub->url, "networking.istio.io/%s/%s",
                 versions[v], amc_pb_kinds[k].kind);
        sub->kind = &amc_pb_kinds[k];
      }
    s->proto = x;
  }
  return s->proto;
}

/* The node, sent on the first request of a stream only. */
typedef struct {
  Envoy__Config__Core__V3__Node node;
  Google__Protobuf__Struct md;
  Google__Protobuf__Struct__FieldsEntry e_gen, e_ns, *entries[2];
  Google__Protobuf__Value v_gen, v_ns;
  char id[512];
} node_buf_t;

static Envoy__Config__Core__V3__Node *make_node(amc_mcp_sink_t *s,
                                                node_buf_t *b) {
  xds_t *x = state(s);
  if (x->node_sent)
    return NULL;
  x->node_sent = 1;
  const char *ns = s->o.node_namespace;
  envoy__config__core__v3__node__init(&b->node);
  google__protobuf__struct__init(&b->md);
  google__protobuf__struct__fields_entry__init(&b->e_gen);
  google__protobuf__struct__fields_entry__init(&b->e_ns);
  google__protobuf__value__init(&b->v_gen);
  google__protobuf__value__init(&b->v_ns);
  if (s->o.node_id) {
    snprintf(b->id, sizeof b->id, "%s", s->o.node_id);
  } else {
    const char *ip = getenv("POD_IP");
    snprintf(b->id, sizeof b->id, "router~%s~amc.%s~%s.svc.cluster.local",
             ip && *ip ? ip : "127.0.0.1", ns, ns);
  }
  b->node.id = b->id;
  b->node.user_agent_name = "amc";
  b->node.user_agent_version_type_case =
      ENVOY__CONFIG__CORE__V3__NODE__USER_AGENT_VERSION_TYPE_USER_AGENT_VERSION;
  b->node.user_agent_version = AMC_VERSION;
  b->v_gen.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
  b->v_gen.string_value = "api";
  b->e_gen.key = "GENERATOR";
  b->e_gen.value = &b->v_gen;
  b->v_ns.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
  b->v_ns.string_value = (char *)ns;
  b->e_ns.key = "NAMESPACE";
  b->e_ns.value = &b->v_ns;
  b->entries[0] = &b->e_gen;
  b->entries[1] = &b->e_ns;
  b->md.n_fields = 2;
  b->md.fields = b->entries;
  b->node.metadata = &b->md;
  return &b->node;
}

static void send_packed(amc_mcp_sink_t *s, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf)
    abort();
  protobuf_c_message_pack(m, buf);
  amc_mcp_sink_send(s, buf, n);
  free(buf);
}

static void send_request(amc_mcp_sink_t *s, const char *type_url,
                         const char *version, const char *nonce,
                         const char *error) {
  node_buf_t nb;
  Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
  if (error) {
    st.code = 3;
    st.message = (char *)error;
  }
  if (s->o.delta) {
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest req =
        ENVOY__SERVICE__DISCOVERY__V3__DELTA_DISCOVERY_REQUEST__INIT;
    req.node = make_node(s, &nb);
    req.type_url = (char *)type_url;
    req.response_nonce = (char *)(nonce ? nonce : "");
    if (error)
      req.error_detail = &st;
    send_packed(s, &req.base);
    return;
  }
  Envoy__Service__Discovery__V3__DiscoveryRequest req =
      ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
  req.node = make_node(s, &nb);
  req.type_url = (char *)type_url;
  req.version_info = (char *)(version ? version : "");
  req.response_nonce = (char *)(nonce ? nonce : "");
  if (error)
    req.error_detail = &st;
  send_packed(s, &req.base);
}

void amc_mcp_xds_on_start(amc_mcp_sink_t *s) {
  xds_t *x = state(s);
  x->node_sent = 0;
  memset(x->synced, 0, sizeof x->synced);
  for (size_t i = 0; i < x->nsubs; i++) {
    x->subs[i].answered = 0;
    send_request(s, x->subs[i].url, "", "", NULL);
  }
}

/* Reads "version":"1.N" from an istiod control-plane identifier. */
static int legacy_from_identifier(const char *id) {
  const char *p = id ? strstr(id, "\"version\":\"1.") : NULL;
  if (!p)
    return 0;
  int minor = atoi(p + 13);
  return minor > 0 && minor < 14;
}

static int key_cmp(const amc_mcp_item_t *a, const amc_mcp_item_t *b) {
  int c = strcmp(a->ns, b->ns);
  return c ? c : strcmp(a->name, b->name);
}

/* Hands over the union of the kind's type URLs: a merge of sorted lists,
 * the v1 copy winning when both versions carry the same object. */
static void deliver_kind(amc_mcp_sink_t *s, const amc_pb_kind_t *kind) {
  xds_t *x = s->proto;
  const sub_t *v1 = NULL, *va3 = NULL;
  for (size_t i = 0; i < x->nsubs; i++)
    if (x->subs[i].kind == kind) {
      if (!v1)
        v1 = &x->subs[i];
      else
        va3 = &x->subs[i];
    }
  amc_mcp_object_t *objs = calloc(v1->n + va3->n + 1, sizeof *objs);
  if (!objs)
    abort();
  size_t i = 0, j = 0, n = 0;
  while (i < v1->n || j < va3->n) {
    int c = i == v1->n    ? 1
            : j == va3->n ? -1
                          : key_cmp(&v1->items[i], &va3->items[j]);
    if (c <= 0) {
      objs[n++] = amc_mcp_item_object(&v1->items[i++]);
      if (c == 0)
        j++;
    } else {
      objs[n++] = amc_mcp_item_object(&va3->items[j++]);
    }
  }
  if (s->ops.on_replace)
    s->ops.on_replace(s->ud, kind->kind, objs, n);
  free(objs);
}

/* NACK: the last accepted version, this nonce, and the error. */
static void nack(amc_mcp_sink_t *s, const sub_t *sub, const char *url,
                 const char *nonce, const char *err) {
  char msg[700];
  snprintf(msg, sizeof msg, "%s: %s", url, err);
  send_request(s, url, sub->version ? sub->version : "", nonce, msg);
  char detail[800];
  snprintf(detail, sizeof detail, "%s nonce %.40s: %s", url, nonce, msg);
  amc_mcp_sink_event(s, "nack", detail);
  amc_buf_reset(&s->conv.warn);
}

static int item_key_cmp(const void *a, const void *b) {
  return key_cmp(a, b);
}

/* Delta: the kept old items (not removed, not replaced) plus the new ones.
 * Takes ownership of `items`. */
static void apply_delta(sub_t *sub, amc_mcp_item_t *items, size_t n,
                        char **removed, size_t nremoved) {
  amc_mcp_item_t *out = calloc(sub->n + n + 1, sizeof *out);
  if (!out)
    abort();
  size_t m = 0;
  for (size_t i = 0; i < sub->n; i++) {
    amc_mcp_item_t *it = &sub->items[i];
    int drop = n && bsearch(it, items, n, sizeof *items, item_key_cmp);
    for (size_t r = 0; r < nremoved && !drop; r++) {
      size_t nl = strlen(it->ns);
      drop = !strncmp(removed[r], it->ns, nl) && removed[r][nl] == '/' &&
             !strcmp(removed[r] + nl + 1, it->name);
    }
    if (drop)
      amc_mcp_item_clear(it);
    else
      out[m++] = *it;
  }
  for (size_t i = 0; i < n; i++)
    out[m++] = items[i];
  free(items);
  free(sub->items);
  amc_mcp_items_sort(out, m);
  sub->items = out;
  sub->n = m;
}

/* One response, SotW or Delta: `anys` are the istio.mcp Resources. */
static void on_response(amc_mcp_sink_t *s, const char *url, const char *nonce,
                        const char *version, Google__Protobuf__Any **anys,
                        size_t nany, char **removed, size_t nremoved,
                        const char *identifier) {
  xds_t *x = state(s);
  sub_t *sub = NULL;
  for (size_t i = 0; i < x->nsubs; i++)
    if (!strcmp(x->subs[i].url, url))
      sub = &x->subs[i];
  if (!sub) {
    char msg[300];
    snprintf(msg, sizeof msg, "type %.200s was not requested", url);
    send_request(s, url, "", nonce, msg);
    amc_mcp_sink_event(s, "nack", msg);
    return;
  }
  if (identifier && *identifier)
    x->simple_lb_legacy = legacy_from_identifier(identifier);
  amc_mcp_item_t *items = calloc(nany + 1, sizeof *items);
  if (!items)
    abort();
  size_t n = 0;
  char err[600];
  for (size_t i = 0; i < nany; i++) {
    Google__Protobuf__Any *any = anys[i];
    const char *t = any && any->type_url ? any->type_url : "";
    int rc;
    if (strcmp(t, "type.googleapis.com/istio.mcp.v1alpha1.Resource") != 0) {
      snprintf(err, sizeof err,
               "resource %zu: type '%.200s' is not istio.mcp.v1alpha1.Resource",
               i, t);
      rc = -1;
    } else {
      char e2[560];
      rc = amc_mcp_conv_resource(&s->conv, any->value.data, any->value.len,
                                 sub->kind, x->simple_lb_legacy, &items[n], e2,
                                 sizeof e2);
      if (rc < 0)
        snprintf(err, sizeof err, "resource %zu: %s", i, e2);
    }
    if (rc < 0) {
      nack(s, sub, url, nonce, err);
      amc_mcp_items_free(items, n);
      return;
    }
    n++;
  }
  amc_mcp_items_sort(items, n);
  const amc_mcp_item_t *dup = amc_mcp_items_dup(items, n);
  if (dup) {
    snprintf(err, sizeof err, "%s %s/%s appears more than once",
             sub->kind->kind, dup->ns, dup->name);
    nack(s, sub, url, nonce, err);
    amc_mcp_items_free(items, n);
    return;
  }
  amc_mcp_sink_valid(s);
  amc_mcp_sink_flush_warnings(s);
  if (s->o.delta && sub->answered) {
    apply_delta(sub, items, n, removed, nremoved);
  } else { /* SotW, or the first Delta answer of this stream: full state */
    amc_mcp_items_free(sub->items, sub->n);
    sub->items = items;
    sub->n = n;
  }
  free(sub->version);
  sub->version = strdup(version);
  sub->answered = 1;
  deliver_kind(s, sub->kind);
  send_request(s, url, version, nonce, NULL);
  size_t ki = (size_t)(sub->kind - amc_pb_kinds);
  int all = 1;
  for (size_t i = 0; i < x->nsubs; i++)
    if (x->subs[i].kind == sub->kind && !x->subs[i].answered)
      all = 0;
  if (all && !x->synced[ki]) {
    x->synced[ki] = 1;
    if (s->ops.on_synced)
      s->ops.on_synced(s->ud, sub->kind->kind);
  }
}

void amc_mcp_xds_on_message(amc_mcp_sink_t *s, const uint8_t *data,
                            size_t len) {
  if (s->o.delta) {
    Envoy__Service__Discovery__V3__DeltaDiscoveryResponse *r =
        envoy__service__discovery__v3__delta_discovery_response__unpack(
            NULL, len, data);
    if (!r) {
      amc_mcp_sink_event(s, "warning",
                         "undecodable DeltaDiscoveryResponse ignored");
      return;
    }
    Google__Protobuf__Any **anys = calloc(r->n_resources + 1, sizeof *anys);
    if (!anys)
      abort();
    for (size_t i = 0; i < r->n_resources; i++)
      anys[i] = r->resources[i]->resource;
    on_response(s, r->type_url ? r->type_url : "", r->nonce ? r->nonce : "",
                r->system_version_info ? r->system_version_info : "", anys,
                r->n_resources, r->removed_resources, r->n_removed_resources,
                r->control_plane ? r->control_plane->identifier : NULL);
    free(anys);
    envoy__service__discovery__v3__delta_discovery_response__free_unpacked(
        r, NULL);
    return;
  }
  Envoy__Service__Discovery__V3__DiscoveryResponse *r =
      envoy__service__discovery__v3__discovery_response__unpack(NULL, len,
                                                                data);
  if (!r) {
    amc_mcp_sink_event(s, "warning", "undecodable DiscoveryResponse ignored");
    return;
  }
  on_response(s, r->type_url ? r->type_url : "", r->nonce ? r->nonce : "",
              r->version_info ? r->version_info : "", r->resources,
              r->n_resources, NULL, 0,
              r->control_plane ? r->control_plane->identifier : NULL);
  envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
}

void amc_mcp_xds_free(amc_mcp_sink_t *s) {
  xds_t *x = s->proto;
  if (!x)
    return;
  for (size_t i = 0; i < x->nsubs; i++) {
    amc_mcp_items_free(x->subs[i].items, x->subs[i].n);
    free(x->subs[i].version);
  }
  free(x);
  s->proto = NULL;
}
