/* config.c - `amc run` options from flags, environment and a config file. */
#include "config.h"

#include "util/buf.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum { T_STR, T_INT, T_BOOL } opt_type_t;

typedef struct {
  const char *name; /* long flag without "--"; also the config file key */
  const char *env;  /* environment variable, or NULL */
  opt_type_t type;
  size_t off;
  const char *def; /* default, as text; NULL = unset */
  const char *metavar;
  const char *help;
  int secret; /* never echo the value */
} opt_t;

#define O(f) offsetof(amc_config_t, f)

static const opt_t opts[] = {
    {"source", NULL, T_STR, O(source), NULL, "URL",
     "where Services, EndpointSlices, Pods and Secrets (and, without MCP, "
     "the Istio kinds) come from: fs://DIR (YAML/JSON files) or kube (the "
     "cluster); mcp = kube plus MCP_URL; default: mcp when MCP_URL is set",
     0},
    {"mcp-url", "MCP_URL", T_STR, O(mcp_url), NULL, "URL",
     "MCP server (xds://istiod:15010, mcp://galley:9901, ...): Gateways, "
     "VirtualServices, DestinationRules and ServiceEntries come from it "
     "only (with any --source; off when istio-enabled is false)",
     0},
    {"kubeconfig", "KUBECONFIG", T_STR, O(kubeconfig), NULL, "FILE",
     "kubeconfig for --source kube (default: in-cluster)", 0},
    {"kube-context", NULL, T_STR, O(kube_context), NULL, "NAME",
     "kubeconfig context (default: the current one)", 0},
    {"leader-elect", NULL, T_BOOL, O(leader_elect), "false", NULL,
     "with --source kube: only the replica holding the Lease reconciles "
     "(other sources: ignored, with a warning)",
     0},
    {"lease-name", NULL, T_STR, O(lease_name), "amc", "NAME",
     "the leader-election Lease", 0},
    {"lease-namespace", "POD_NAMESPACE", T_STR, O(lease_namespace), NULL, "NS",
     "namespace of the Lease (default: the kubeconfig's or the pod's)", 0},
    {"lease-duration-ms", NULL, T_INT, O(lease_duration_ms), "15000", "MS",
     "how long a Lease holds without renewal (leader election)", 0},
    {"renew-deadline-ms", NULL, T_INT, O(renew_deadline_ms), "10000", "MS",
     "a leader that cannot renew for this long stops leading", 0},
    {"retry-period-ms", NULL, T_INT, O(retry_period_ms), "2000", "MS",
     "interval of Lease renewals and acquisition attempts", 0},
    {"events", NULL, T_BOOL, O(events), "false", NULL,
     "with --source kube: also create a Warning Event on an object whose "
     "status carries an error (statuses are always written)",
     0},
    {"default-namespace", NULL, T_STR, O(default_namespace), "default", "NS",
     "namespace of fs:// objects that name none", 0},
    {"fs-debounce-ms", NULL, T_INT, O(fs_debounce_ms), "1000", "MS",
     "a file still open for writing is read, and a deleted file dropped, "
     "after this long without events on it (complete saves are read at once)",
     0},
    {"resync", NULL, T_INT, O(resync_seconds), "300", "SECONDS",
     "full resync period (fs rescan, re-translation of every gateway); 0 off",
     0},
    {"rules", NULL, T_STR, O(rules_dir), NULL, "DIR",
     "rules directory, watched and hot-reloaded (default: the shipped rules)",
     0},
    {"settings", NULL, T_STR, O(settings_file), NULL, "FILE",
     "settings file for the rules (YAML/JSON)", 0},
    {"rules-debounce-ms", NULL, T_INT, O(rules_debounce_ms), "300", "MS",
     "quiet time after a rules-directory event before reloading", 0},
    {"avi-url", "CTRL_IPADDRESS", T_STR, O(avi_url), NULL, "URL",
     "AVI controller: host, host:port or http(s)://host[:port] (https when "
     "no scheme)",
     0},
    {"avi-username", "CTRL_USERNAME", T_STR, O(avi_username), NULL, "USER",
     "AVI user", 0},
    {"avi-password", "CTRL_PASSWORD", T_STR, O(avi_password), NULL, "PASS",
     "AVI password (prefer the environment or --avi-password-file)", 1},
    {"avi-password-file", NULL, T_STR, O(avi_password_file), NULL, "FILE",
     "file holding the AVI password", 0},
    {"avi-version", "CTRL_VERSION", T_STR, O(avi_version), "22.1.6", "VER",
     "AVI API version (X-Avi-Version)", 0},
    {"avi-tenant", NULL, T_STR, O(avi_tenant), NULL, "TENANT",
     "AVI tenant (overrides the settings file; its default: admin)", 0},
    {"avi-ca-file", NULL, T_STR, O(avi_ca_file), NULL, "FILE",
     "CA bundle to verify the AVI controller's certificate", 0},
    {"avi-insecure", NULL, T_BOOL, O(avi_insecure), "false", NULL,
     "do not verify the AVI controller's TLS certificate (logged)", 0},
    {"avi-rate", NULL, T_INT, O(avi_rate), "20", "N",
     "AVI calls per second at most (a token bucket; AVI rate-limits "
     "clients too)",
     0},
    {"avi-burst", NULL, T_INT, O(avi_burst), "5", "N",
     "AVI calls allowed at once above the rate", 0},
    {"cloud", "CLOUD_NAME", T_STR, O(cloud_name), NULL, "NAME",
     "AVI cloud for the virtual services (overrides the settings file; its "
     "default: Default-Cloud)",
     0},
    {"cluster", "CLUSTER_NAME", T_STR, O(cluster_name), NULL, "NAME",
     "cluster name, part of every AVI object name and owner marker "
     "(overrides the settings file; its default: default)",
     0},
    {"istio-enabled", "ISTIO_ENABLED", T_BOOL, O(istio_enabled), "true", NULL,
     "translate Istio objects (false: gateways are not programmed)", 0},
    {"dry-run", NULL, T_BOOL, O(dry_run), "false", NULL,
     "print the AVI calls that would be made instead of sending them", 0},
    {"incremental", NULL, T_BOOL, O(incremental), "true", NULL,
     "keep each VirtualService's translation per Gateway (compressed, ~0.2 "
     "KB each) and re-translate only what a change read; "
     "--incremental=false translates whole Gateways",
     0},
    {"workers", NULL, T_INT, O(workers), "4", "N",
     "gateways reconciled at once (keys in flight)", 0},
    {"admin-addr", NULL, T_STR, O(admin_addr), "0.0.0.0", "ADDR",
     "address of /healthz, /readyz and /metrics", 0},
    {"admin-port", NULL, T_INT, O(admin_port), "8081", "PORT",
     "port of the admin server (0: any free port; -1: disabled)", 0},
    {"admin-port-file", NULL, T_STR, O(admin_port_file), NULL, "FILE",
     "write the admin server's port here once listening", 0},
    {"log-level", NULL, T_STR, O(log_level), "info", "LEVEL",
     "debug, info, warn or error", 0},
    {"log-format", NULL, T_STR, O(log_format), "logfmt", "FMT",
     "logfmt (key=value) or json", 0},
};

#define N_OPTS (sizeof opts / sizeof opts[0])

static char **str_at(amc_config_t *c, const opt_t *o) {
  return (char **)((char *)c + o->off);
}

static int *int_at(amc_config_t *c, const opt_t *o) {
  return (int *)((char *)c + o->off);
}

static const opt_t *find_opt(const char *name, size_t len) {
  for (size_t i = 0; i < N_OPTS; i++) {
    if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
      return &opts[i];
  }
  return NULL;
}

static int parse_bool(const char *v, int *out) {
  static const char *yes[] = {"true", "1", "yes", "on", "True", "TRUE"};
  static const char *no[] = {"false", "0", "no", "off", "False", "FALSE"};
  for (size_t i = 0; i < 6; i++) {
    if (strcmp(v, yes[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcmp(v, no[i]) == 0) {
      *out = 0;
      return 0;
    }
  }
  return -1;
}

/* Sets option `o` from text `v`; `where` names the origin for errors
 * ("--workers", "env CTRL_USERNAME", "amc.yaml:3:1"). */
static int set_opt(amc_config_t *c, const opt_t *o, const char *v,
                   const char *where, char *err, size_t errlen) {
  if (o->type == T_STR) {
    char **p = str_at(c, o);
    free(*p);
    *p = strdup(v);
    if (!*p)
      abort();
    return 0;
  }
  if (o->type == T_BOOL) {
    if (parse_bool(v, int_at(c, o)) != 0) {
      snprintf(err, errlen, "%s: '%s' is not a boolean (true or false)", where,
               v);
      return -1;
    }
    return 0;
  }
  char *end = NULL;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < INT_MIN || n > INT_MAX) {
    snprintf(err, errlen, "%s: '%s' is not an integer", where, v);
    return -1;
  }
  *int_at(c, o) = (int)n;
  return 0;
}

static const char *env_get(char **env, const char *name) {
  size_t n = strlen(name);
  for (char **e = env; e && *e; e++) {
    if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
      return *e + n + 1;
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Config file: a flat YAML/JSON mapping of scalars. */

static int load_file(amc_config_t *c, const char *path, char *err,
                     size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "config file %s: %s", path, strerror(errno));
    return -1;
  }
  yaml_parser_t p;
  yaml_parser_initialize(&p);
  yaml_parser_set_input_file(&p, f);
  int rc = -1, depth = 0, done = 0;
  char *key = NULL;
  char where[512];
  while (!done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      snprintf(err, errlen, "%s:%zu:%zu: %s", path, p.problem_mark.line + 1,
               p.problem_mark.column + 1, p.problem ? p.problem : "bad YAML");
      goto out;
    }
    size_t line = ev.start_mark.line + 1, col = ev.start_mark.column + 1;
    snprintf(where, sizeof where, "%s:%zu:%zu", path, line, col);
    int bad = 0;
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = 1;
      break;
    case YAML_MAPPING_START_EVENT:
      if (++depth > 1 || key)
        bad = 1;
      break;
    case YAML_MAPPING_END_EVENT:
      depth--;
      break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_ALIAS_EVENT:
      bad = 1;
      break;
    case YAML_SCALAR_EVENT: {
      const char *v = (const char *)ev.data.scalar.value;
      if (depth != 1) {
        if (depth == 0 && ev.data.scalar.length == 0)
          break; /* empty document */
        bad = 1;
        break;
      }
      if (!key) {
        key = strdup(v);
        if (!key)
          abort();
        const opt_t *o = find_opt(key, strlen(key));
        if (!o) {
          snprintf(err, errlen, "%s: unknown option '%s'", where, key);
          yaml_event_delete(&ev);
          goto out;
        }
        break;
      }
      const opt_t *o = find_opt(key, strlen(key));
      if (set_opt(c, o, v, where, err, errlen) != 0) {
        yaml_event_delete(&ev);
        goto out;
      }
      free(key);
      key = NULL;
      break;
    }
    default:
      break;
    }
    yaml_event_delete(&ev);
    if (bad) {
      snprintf(err, errlen,
               "%s: expected a mapping of option names to scalar values",
               where);
      goto out;
    }
  }
  rc = 0;
out:
  free(key);
  yaml_parser_delete(&p);
  fclose(f);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Validation */

static int validate_url(amc_config_t *c, char *err, size_t errlen) {
  char *u = c->avi_url;
  if (!u)
    return 0;
  if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) {
    if (strstr(u, "://")) {
      snprintf(err, errlen,
               "avi-url '%s': the scheme must be http:// or https://", u);
      return -1;
    }
    amc_buf_t b = AMC_BUF_INIT;
    amc_buf_printf(&b, "https://%s", u);
    free(c->avi_url);
    c->avi_url = amc_buf_steal(&b);
    u = c->avi_url;
  }
  const char *host = strstr(u, "://") + 3;
  if (!*host || *host == '/' || *host == ':') {
    snprintf(err, errlen, "avi-url '%s': no host", u);
    return -1;
  }
  for (const char *p = host; *p; p++) {
    if (isspace((unsigned char)*p)) {
      snprintf(err, errlen, "avi-url '%s': contains whitespace", u);
      return -1;
    }
  }
  /* Drop a trailing slash: paths are appended as "/api/...". */
  size_t n = strlen(u);
  while (n > 0 && u[n - 1] == '/')
    u[--n] = '\0';
  return 0;
}

static int read_password_file(amc_config_t *c, char *err, size_t errlen) {
  amc_buf_t b = AMC_BUF_INIT;
  int rc = amc_buf_read_file(&b, c->avi_password_file);
  if (rc != 0) {
    snprintf(err, errlen, "avi-password-file %s: %s", c->avi_password_file,
             strerror(-rc));
    amc_buf_free(&b);
    return -1;
  }
  while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
    b.data[--b.len] = '\0';
  free(c->avi_password);
  c->avi_password = amc_buf_steal(&b);
  return 0;
}

static int validate(amc_config_t *c, char *err, size_t errlen) {
  if (!c->source || !*c->source) {
    free(c->source);
    c->source = NULL;
    if (c->mcp_url && *c->mcp_url) {
      c->source = strdup("mcp");
    } else {
      snprintf(err, errlen,
               "no source: give --source fs://DIR (files), --source kube "
               "(the cluster) or set MCP_URL");
      return -1;
    }
  }
  if (strncmp(c->source, "fs://", 5) == 0) {
    if (!c->source[5]) {
      snprintf(err, errlen, "source 'fs://': no directory after fs://");
      return -1;
    }
    c->fs_dir = strdup(c->source + 5);
  } else if (strcmp(c->source, "mcp") == 0) {
    /* The original controller's deployment: Istio config from MCP, the
     * rest from the cluster (`amc run` treats it as kube + MCP). */
    if (!c->mcp_url || !*c->mcp_url) {
      snprintf(err, errlen, "source mcp: MCP_URL (or --mcp-url) is not set");
      return -1;
    }
  } else if (strcmp(c->source, "kube") != 0) {
    snprintf(err, errlen, "source '%s': expected fs://DIR, kube or mcp",
             c->source);
    return -1;
  }
  /* MCP owns the Istio kinds whenever it is configured and Istio is on. */
  c->mcp = c->mcp_url && *c->mcp_url && c->istio_enabled;
  if (c->avi_password_file && read_password_file(c, err, errlen) != 0)
    return -1;
  if (validate_url(c, err, errlen) != 0)
    return -1;
  if (!c->dry_run) {
    if (!c->avi_url) {
      snprintf(err, errlen,
               "no AVI controller: set CTRL_IPADDRESS or "
               "--avi-url (or use --dry-run)");
      return -1;
    }
    if (!c->avi_username || !*c->avi_username) {
      snprintf(err, errlen, "no AVI user: set CTRL_USERNAME or --avi-username");
      return -1;
    }
    if (!c->avi_password || !*c->avi_password) {
      snprintf(err, errlen,
               "no AVI password: set CTRL_PASSWORD or "
               "--avi-password-file");
      return -1;
    }
  }
  if (c->workers < 1 || c->workers > 1024) {
    snprintf(err, errlen, "workers: %d is out of range 1..1024", c->workers);
    return -1;
  }
  if (c->avi_rate < 1 || c->avi_rate > 100000 || c->avi_burst < 1 ||
      c->avi_burst > 100000) {
    snprintf(err, errlen, "avi-rate/avi-burst: out of range 1..100000");
    return -1;
  }
  if (c->admin_port < -1 || c->admin_port > 65535) {
    snprintf(err, errlen, "admin-port: %d is out of range -1..65535",
             c->admin_port);
    return -1;
  }
  if (c->fs_debounce_ms < 0 || c->fs_debounce_ms > 60000 ||
      c->rules_debounce_ms < 0 || c->rules_debounce_ms > 60000) {
    snprintf(err, errlen, "debounce: out of range 0..60000 ms");
    return -1;
  }
  if (c->resync_seconds < 0) {
    snprintf(err, errlen, "resync: %d is negative", c->resync_seconds);
    return -1;
  }
  const char *levels[] = {"debug", "info", "warn", "warning", "error"};
  int ok = 0;
  for (size_t i = 0; i < 5; i++)
    ok |= strcmp(c->log_level, levels[i]) == 0;
  if (!ok) {
    snprintf(err, errlen, "log-level '%s': expected debug, info, warn or error",
             c->log_level);
    return -1;
  }
  if (strcmp(c->log_format, "logfmt") != 0 &&
      strcmp(c->log_format, "json") != 0) {
    snprintf(err, errlen, "log-format '%s': expected logfmt or json",
             c->log_format);
    return -1;
  }
  if (c->cluster_name &&
      (!c->cluster_name[0] || strlen(c->cluster_name) > 64)) {
    snprintf(err, errlen, "cluster: the name must be 1..64 characters");
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* API */

/* Prints `text` word-wrapped to `width` columns, indented by `indent`. */
static void wrap(FILE *out, const char *text, int indent, int width) {
  int col = 0;
  const char *p = text;
  while (*p) {
    while (*p == ' ')
      p++;
    const char *w = p;
    while (*p && *p != ' ')
      p++;
    int len = (int)(p - w);
    if (len == 0)
      break;
    if (col > 0 && col + 1 + len > width) {
      fputc('\n', out);
      col = 0;
    }
    if (col == 0) {
      fprintf(out, "%*s", indent, "");
      col = indent;
    } else {
      fputc(' ', out);
      col++;
    }
    fwrite(w, 1, (size_t)len, out);
    col += len;
  }
  fputc('\n', out);
}

void amc_config_usage(FILE *out) {
  fprintf(out,
          "usage: amc run [options]\n\n"
          "Runs the controller: objects from a source are translated by the "
          "rules into\nAVI objects, which are kept in step with the AVI "
          "controller.\n\n"
          "Examples:\n"
          "  amc run --source fs://examples --avi-url http://127.0.0.1:8080 "
          "\\\n      --avi-username admin --avi-password-file pw.txt\n"
          "  amc run --source fs://examples --dry-run\n"
          "  ISTIO_ENABLED=true MCP_URL=xdss://istiod.istio-system.svc:15012 "
          "amc run\n\n"
          "Sources: Services, EndpointSlices, Pods and Secrets come from "
          "--source\n(fs://DIR or kube). With MCP_URL (--mcp-url) set, "
          "Gateways, VirtualServices,\nDestinationRules and ServiceEntries "
          "come from MCP only (each kind has one\nowner); --source mcp, the "
          "default then, means kube plus MCP. Nothing is\nreconciled before "
          "every source has synced. The MCP connection's other\nsettings "
          "come from the environment: MCP_PROTOCOL, MCP_CA_FILE,\n"
          "MCP_TOKEN_FILE, MCP_SERVER_NAME, MCP_DELTA (docs/mcp.md).\n\n"
          "Options (flag / environment variable / default):\n");
  for (size_t i = 0; i < N_OPTS; i++) {
    const opt_t *o = &opts[i];
    if (o->metavar)
      fprintf(out, "  --%s %s", o->name, o->metavar);
    else
      fprintf(out, "  --%s", o->name);
    if (o->env)
      fprintf(out, "   (env %s)", o->env);
    fputc('\n', out);
    amc_buf_t text = AMC_BUF_INIT;
    amc_buf_puts(&text, o->help);
    if (o->def)
      amc_buf_printf(&text, " [default: %s]", o->def);
    wrap(out, text.data, 6, 78);
    amc_buf_free(&text);
  }
  fprintf(out, "  --config FILE\n");
  wrap(out, "YAML/JSON mapping of the options above (keys without --)", 6, 78);
  fprintf(out, "  --help\n      this text\n\n");
  fprintf(out,
          "Precedence: flags, then environment, then the config file, then "
          "defaults.\nBoolean flags take no value (--dry-run) or "
          "--flag=true|false.\n"
          "Signals: SIGHUP reloads the rules; SIGTERM/SIGINT stop gracefully "
          "(exit 0).\n");
}

void amc_config_free(amc_config_t *c) {
  for (size_t i = 0; i < N_OPTS; i++) {
    if (opts[i].type == T_STR) {
      free(*str_at(c, &opts[i]));
      *str_at(c, &opts[i]) = NULL;
    }
  }
  free(c->fs_dir);
  free(c->config_file);
  c->fs_dir = NULL;
  c->config_file = NULL;
}

int amc_config_load(amc_config_t *c, int argc, char **argv, char **env,
                    FILE *out, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < N_OPTS; i++) {
    if (opts[i].def &&
        set_opt(c, &opts[i], opts[i].def, "default", err, errlen) != 0)
      return -1;
  }
  /* First pass over argv: --help and --config. */
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      amc_config_usage(out);
      return AMC_CONFIG_HELP;
    }
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      free(c->config_file);
      c->config_file = strdup(argv[++i]);
    } else if (strncmp(argv[i], "--config=", 9) == 0) {
      free(c->config_file);
      c->config_file = strdup(argv[i] + 9);
    }
  }
  if (c->config_file && load_file(c, c->config_file, err, errlen) != 0)
    return -1;
  /* Environment. */
  char where[128];
  for (size_t i = 0; i < N_OPTS; i++) {
    const char *v = opts[i].env ? env_get(env, opts[i].env) : NULL;
    if (!v || !*v)
      continue;
    snprintf(where, sizeof where, "environment variable %s", opts[i].env);
    if (set_opt(c, &opts[i], v, where, err, errlen) != 0)
      return -1;
  }
  /* Flags. */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0) {
      snprintf(err, errlen, "unexpected argument '%s' (see amc run --help)", a);
      return -1;
    }
    a += 2;
    const char *eq = strchr(a, '=');
    size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
    if (nlen == 6 && strncmp(a, "config", 6) == 0) {
      if (!eq)
        i++;
      continue;
    }
    const opt_t *o = find_opt(a, nlen);
    if (!o) {
      snprintf(err, errlen, "unknown option '--%.*s' (see amc run --help)",
               (int)nlen, a);
      return -1;
    }
    const char *v;
    if (eq) {
      v = eq + 1;
    } else if (o->type == T_BOOL) {
      v = "true";
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      snprintf(err, errlen, "option '--%s' needs a value (%s)", o->name,
               o->metavar);
      return -1;
    }
    snprintf(where, sizeof where, "--%s", o->name);
    if (set_opt(c, o, v, where, err, errlen) != 0) {
      if (o->secret) /* never echo a secret in an error */
        snprintf(err, errlen, "%s: invalid value", where);
      return -1;
    }
  }
  return validate(c, err, errlen);
}
