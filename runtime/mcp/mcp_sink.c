/* mcp_sink.c - connect, reconnect with backoff, dispatch to the protocol. */
#include "mcp/mcp_sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mcp/mcp_legacy.h"
#include "mcp/mcp_xds.h"
#include "util/log.h"

static void connect_now(amc_mcp_sink_t *s);

static char *dup_or_null(const char *p) {
  return p ? strdup(p) : NULL;
}

void amc_mcp_sink_event(amc_mcp_sink_t *s, const char *event,
                        const char *detail) {
  amc_log(strcmp(event, "connected") == 0 ? AMC_INFO : AMC_WARN, "mcp.stream",
          AMC_S("what", event), AMC_S("url", s->o.url),
          AMC_S("detail", detail ? detail : ""));
  if (s->ops.on_event)
    s->ops.on_event(s->ud, event, detail ? detail : "");
}

void amc_mcp_sink_valid(amc_mcp_sink_t *s) {
  s->valid_seen = 1;
  amc_mcp_backoff_reset(&s->backoff);
}

void amc_mcp_sink_flush_warnings(amc_mcp_sink_t *s) {
  if (!s->conv.warn.len)
    return;
  char *line = s->conv.warn.data;
  while (line && *line) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    amc_mcp_sink_event(s, "warning", line);
    line = nl ? nl + 1 : NULL;
  }
  amc_buf_reset(&s->conv.warn);
}

int amc_mcp_sink_send(amc_mcp_sink_t *s, const uint8_t *data, size_t len) {
  if (!s->call)
    return -1;
  return amc_grpc_call_send(s->call, data, len);
}

static void on_retry(uv_timer_t *t) {
  connect_now(t->data);
}

static void schedule_retry(amc_mcp_sink_t *s) {
  if (s->closing)
    return;
  uint64_t ms = amc_mcp_backoff_next(&s->backoff);
  amc_log(AMC_INFO, "mcp.reconnect", AMC_S("url", s->o.url),
          AMC_I("delay_ms", ms));
  uv_timer_start(&s->timer, on_retry, ms, 0);
}

static void on_open(void *ud) {
  (void)ud;
}

static void on_message(void *ud, const uint8_t *data, size_t len) {
  amc_mcp_sink_t *s = ud;
  if (s->mode == AMC_MCP_LEGACY)
    amc_mcp_legacy_on_message(s, data, len);
  else
    amc_mcp_xds_on_message(s, data, len);
}

static void on_end(void *ud, int status, const char *message) {
  amc_mcp_sink_t *s = ud;
  char detail[600];
  snprintf(detail, sizeof detail, "%s: %s", amc_grpc_status_name(status),
           message);
  amc_grpc_call_free(s->call);
  s->call = NULL;
  amc_mcp_sink_event(s, "disconnected", detail);
  schedule_retry(s);
}

static void connect_now(amc_mcp_sink_t *s) {
  if (s->closing)
    return;
  amc_grpc_options_t g = {
      .url = s->o.url,
      .ca_file = s->o.ca_file,
      .server_name = s->o.server_name,
      .insecure_skip_verify = s->o.insecure_skip_verify,
      .token_file = s->o.token_file,
      .keepalive_ms = s->o.keepalive_ms,
      .keepalive_timeout_ms = s->o.keepalive_timeout_ms,
      .connect_timeout_ms = s->o.connect_timeout_ms,
  };
  amc_grpc_callbacks_t cb = {on_open, on_message, on_end};
  char err[300];
  s->valid_seen = 0;
  s->call = amc_grpc_call_start(s->loop, &g,
                                s->mode == AMC_MCP_LEGACY ? AMC_MCP_LEGACY_PATH
                                : s->o.delta ? AMC_MCP_XDS_DELTA_PATH
                                             : AMC_MCP_XDS_PATH,
                                &cb, s, err, sizeof err);
  if (!s->call) { /* e.g. the token file is missing: retry later */
    amc_mcp_sink_event(s, "disconnected", err);
    schedule_retry(s);
    return;
  }
  amc_mcp_sink_event(s, "connected", s->o.url);
  if (s->mode == AMC_MCP_LEGACY)
    amc_mcp_legacy_on_start(s);
  else
    amc_mcp_xds_on_start(s);
}

amc_mcp_sink_t *amc_mcp_sink_start(uv_loop_t *loop, amc_mcp_mode_t mode,
                                   const amc_mcp_options_t *o,
                                   const amc_mcp_ops_t *ops, void *ud,
                                   char *err, size_t errlen) {
  if (!o->url || !*o->url) {
    snprintf(err, errlen, "MCP URL is empty");
    return NULL;
  }
  if (strncmp(o->url, "http://", 7) && strncmp(o->url, "https://", 8) &&
      strncmp(o->url, "grpc://", 7) && strncmp(o->url, "grpcs://", 8)) {
    snprintf(err, errlen,
             "MCP URL '%s': expected http://, https://, grpc:// or grpcs://",
             o->url);
    return NULL;
  }
  amc_mcp_sink_t *s = calloc(1, sizeof *s);
  if (!s)
    abort();
  s->loop = loop;
  s->mode = mode;
  s->o = *o;
  s->o.url = dup_or_null(o->url);
  s->o.ca_file = dup_or_null(o->ca_file);
  s->o.server_name = dup_or_null(o->server_name);
  s->o.token_file = dup_or_null(o->token_file);
  s->o.node_id = dup_or_null(o->node_id);
  s->o.node_namespace =
      strdup(o->node_namespace ? o->node_namespace : "istio-system");
  s->ops = *ops;
  s->ud = ud;
  if (amc_mcp_conv_init(&s->conv) < 0)
    abort();
  amc_mcp_backoff_init(&s->backoff, o->backoff_initial_ms, o->backoff_max_ms);
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  if (s->o.keepalive_ms && s->o.keepalive_ms < 15000)
    amc_log(AMC_WARN, "mcp.keepalive", AMC_I("interval_ms", s->o.keepalive_ms),
            AMC_S("detail", "istiod answers client PINGs more often than "
                            "every 15 s with GOAWAY ENHANCE_YOUR_CALM"));
  if (s->o.insecure_skip_verify)
    amc_log(AMC_WARN, "mcp.tls", AMC_S("url", s->o.url),
            AMC_S("detail", "certificate verification disabled by choice"));
  connect_now(s);
  return s;
}

static void on_timer_closed(uv_handle_t *h) {
  amc_mcp_sink_t *s = h->data;
  if (s->mode == AMC_MCP_LEGACY)
    amc_mcp_legacy_free(s);
  else
    amc_mcp_xds_free(s);
  amc_mcp_conv_free(&s->conv);
  void (*closed)(void *) = s->closed;
  void *ud = s->ud;
  free((char *)s->o.url);
  free((char *)s->o.ca_file);
  free((char *)s->o.server_name);
  free((char *)s->o.token_file);
  free((char *)s->o.node_id);
  free((char *)s->o.node_namespace);
  free(s);
  if (closed)
    closed(ud);
}

void amc_mcp_sink_close(amc_mcp_sink_t *s, void (*closed)(void *ud)) {
  if (!s || s->closing)
    return;
  s->closing = 1;
  s->closed = closed;
  if (s->call) {
    amc_grpc_call_free(s->call);
    s->call = NULL;
  }
  uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

int amc_mcp_parse_url(const char *url, amc_mcp_mode_t fallback,
                      amc_mcp_mode_t *mode, char *grpc_url, size_t len,
                      char *err, size_t errlen) {
  static const struct {
    const char *scheme;
    int mode; /* -1: fallback */
    const char *transport;
  } map[] = {
      {"mcp://", AMC_MCP_LEGACY, "http://"},
      {"mcps://", AMC_MCP_LEGACY, "https://"},
      {"xds://", AMC_MCP_XDS, "http://"},
      {"xdss://", AMC_MCP_XDS, "https://"},
      {"http://", -1, "http://"},
      {"https://", -1, "https://"},
      {"grpc://", -1, "http://"},
      {"grpcs://", -1, "https://"},
  };
  for (size_t i = 0; url && i < sizeof map / sizeof map[0]; i++) {
    size_t sl = strlen(map[i].scheme);
    if (strncmp(url, map[i].scheme, sl) == 0) {
      *mode = map[i].mode < 0 ? fallback : (amc_mcp_mode_t)map[i].mode;
      snprintf(grpc_url, len, "%s%s", map[i].transport, url + sl);
      return 0;
    }
  }
  snprintf(err, errlen,
           "MCP URL '%s': expected mcp://, mcps://, xds://, xdss://, "
           "http:// or https://",
           url ? url : "");
  return -1;
}

static int truthy(const char *v) {
  return v &&
         (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"));
}

int amc_mcp_options_from_env(amc_mcp_options_t *o, amc_mcp_mode_t *mode,
                             amc_mcp_env_buf_t *b, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  memset(b, 0, sizeof *b);
  if (!truthy(getenv("ISTIO_ENABLED")))
    return 0;
  const char *url = getenv("MCP_URL");
  if (!url || !*url) {
    snprintf(err, errlen, "ISTIO_ENABLED is set but MCP_URL is empty");
    return -1;
  }
  return amc_mcp_options_from_url(o, mode, b, url, err, errlen) < 0 ? -1 : 1;
}

int amc_mcp_options_from_url(amc_mcp_options_t *o, amc_mcp_mode_t *mode,
                             amc_mcp_env_buf_t *b, const char *url, char *err,
                             size_t errlen) {
  memset(o, 0, sizeof *o);
  memset(b, 0, sizeof *b);
  const char *proto = getenv("MCP_PROTOCOL");
  amc_mcp_mode_t fallback = AMC_MCP_LEGACY;
  if (proto && !strcmp(proto, "xds"))
    fallback = AMC_MCP_XDS;
  else if (proto && *proto && strcmp(proto, "legacy")) {
    snprintf(err, errlen, "MCP_PROTOCOL '%s': expected legacy or xds", proto);
    return -1;
  }
  if (amc_mcp_parse_url(url, fallback, mode, b->url, sizeof b->url, err,
                        errlen) < 0)
    return -1;
  o->url = b->url;
  int tls = strncmp(b->url, "https://", 8) == 0;
  const char *ca = getenv("MCP_CA_FILE");
  if (!ca && tls && access("/var/run/secrets/istio/root-cert.pem", R_OK) == 0)
    ca = "/var/run/secrets/istio/root-cert.pem";
  if (ca) {
    snprintf(b->ca_file, sizeof b->ca_file, "%s", ca);
    o->ca_file = b->ca_file;
  }
  const char *tok = getenv("MCP_TOKEN_FILE");
  if (!tok && tls && *mode == AMC_MCP_XDS &&
      access("/var/run/secrets/tokens/istio-token", R_OK) == 0)
    tok = "/var/run/secrets/tokens/istio-token";
  if (tok) {
    snprintf(b->token_file, sizeof b->token_file, "%s", tok);
    o->token_file = b->token_file;
  }
  o->server_name = getenv("MCP_SERVER_NAME");
  o->node_namespace = getenv("POD_NAMESPACE");
  const char *delta = getenv("MCP_DELTA");
  if (delta && *delta) {
    if (!strcmp(delta, "true") || !strcmp(delta, "1"))
      o->delta = 1;
    else if (strcmp(delta, "false") && strcmp(delta, "0")) {
      snprintf(err, errlen, "MCP_DELTA '%s': expected true or false", delta);
      return -1;
    }
    if (o->delta && *mode != AMC_MCP_XDS) {
      snprintf(err, errlen,
               "MCP_DELTA=true needs MCP over xDS (xds://, xdss://, or "
               "http(s):// with MCP_PROTOCOL=xds); %s is legacy MCP",
               url);
      return -1;
    }
  }
  return 0;
}
