/* config.h - `amc run`'s configuration: flags, environment, config file.
 *
 * One table of options drives the flags, the config file keys, the
 * environment variables and `amc run --help`, so they cannot drift apart.
 * Precedence, highest first: command-line flags, environment variables,
 * the config file (--config FILE), built-in defaults.
 *
 * The config file is a YAML (or JSON) mapping whose keys are the long flag
 * names without the dashes ("avi-url: https://10.0.0.1"); values are
 * scalars. Unknown keys are errors (a typo must not be silently ignored).
 *
 * The original controller's environment variables keep their meaning:
 *   CTRL_IPADDRESS  AVI controller address (host, host:port or URL)
 *   CTRL_USERNAME   AVI user
 *   CTRL_PASSWORD   AVI password (never logged or echoed in errors)
 *   CTRL_VERSION    AVI API version (X-Avi-Version)
 *   CLOUD_NAME      AVI cloud for virtual services
 *   ISTIO_ENABLED   "true"/"false": translate Istio objects
 *   MCP_URL         MCP server (Istio Galley / istiod); a source
 *
 * amc_config_load validates everything before the controller starts and
 * returns one clear message for the first problem found. This module is the
 * only reader of the environment in `amc run`. */
#ifndef AMC_CONFIG_H
#define AMC_CONFIG_H

#include <stdio.h>

typedef struct {
  /* sources */
  char *source;     /* "fs://DIR", "kube" or "mcp" (= kube + MCP_URL; ""
                       = from MCP_URL) */
  char *fs_dir;     /* DIR of an fs:// source (derived), or NULL */
  char *mcp_url;    /* MCP_URL / --mcp-url */
  int mcp;          /* derived: MCP feeds (and owns) the Istio kinds */
  char *kubeconfig; /* --kubeconfig (kube source) */
  char *kube_context;
  int leader_elect; /* Lease-based leader election (kube source) */
  char *lease_name;
  char *lease_namespace;
  int lease_duration_ms, renew_deadline_ms, retry_period_ms;
  int events; /* Warning Events on failing objects (accepted) */
  char *default_namespace;
  int fs_debounce_ms;
  int resync_seconds;
  /* rules */
  char *rules_dir;     /* NULL: the embedded/installed default */
  char *settings_file; /* optional settings for the rules */
  int rules_debounce_ms;
  /* AVI */
  char *avi_url; /* normalised "https://host[:port]" */
  char *avi_username;
  char *avi_password; /* secret */
  char *avi_password_file;
  char *avi_version;
  char *avi_tenant;
  char *avi_ca_file;
  int avi_insecure; /* skip TLS verification (explicit, logged) */
  int avi_rate;     /* client rate limit, calls/s (0: the client's) */
  int avi_burst;    /* client burst (0: the client's) */
  char *cloud_name;
  char *cluster_name;
  int istio_enabled;
  int dry_run;
  int incremental; /* the rules engine's memo (rules_engine.h "Memo") */
  /* controller */
  int workers;
  /* admin HTTP */
  char *admin_addr;
  int admin_port; /* 0 = ephemeral; -1 = disabled */
  char *admin_port_file;
  /* logs */
  char *log_level;
  char *log_format;
  char *config_file;
} amc_config_t;

#define AMC_CONFIG_HELP 1 /* returned when --help was printed */

/* Fills `c` from argv (argv[0] is the subcommand name), `env` (a
 * NULL-terminated "NAME=value" array, e.g. environ) and the config file.
 * Returns 0, AMC_CONFIG_HELP after printing help to `out`, or -1 with a
 * message in `err`. On any return, amc_config_free releases `c`. */
int amc_config_load(amc_config_t *c, int argc, char **argv, char **env,
                    FILE *out, char *err, size_t errlen);
void amc_config_free(amc_config_t *c);
/* Prints the help text (all flags, their env variables and defaults). */
void amc_config_usage(FILE *out);

#endif
