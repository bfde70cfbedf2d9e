/* settings.h - the translation settings handed to rules as `rt.settings`.
 *
 * One place for the defaults (docs/rules-contract.md) and for reading them
 * from a settings file and command-line flags, shared by `amc translate`,
 * `amc rules test` and `amc run`.
 *
 *   key               default            meaning
 *   cluster           "default"          cluster name (in every object name)
 *   tenant            "admin"            AVI tenant
 *   cloud             "Default-Cloud"    AVI cloud
 *   vrf               "global"           AVI VRF context
 *   se_group          "Default-Group"    AVI Service Engine group
 *   ingress_selector  {istio = "ingressgateway"}  labels a Gateway's
 *                                        spec.selector must match
 *   domain            "cluster.local"    cluster DNS suffix
 *
 * A settings file is a JSON or YAML mapping with any of these keys (a file
 * named *.json is read as JSON, anything else as YAML). Other keys are passed
 * to the rules unchanged when their value is a string, number or boolean
 * (e.g. vip_network); anything else is an error. Later sources override
 * earlier ones: defaults, then files, then flags. */
#ifndef AMC_SETTINGS_H
#define AMC_SETTINGS_H

#include <lua.h>
#include <stddef.h>

typedef struct {
  char *key;
  char *value;
} amc_settings_pair_t;

typedef struct {
  char *cluster;
  char *tenant;
  char *cloud;
  char *vrf;
  char *se_group;
  char *domain;
  amc_settings_pair_t *ingress_selector; /* sorted by key */
  size_t n_ingress_selector;
  /* Extra scalar settings, sorted by key; `value` is the canonical JSON of
   * the scalar ("\"text\"", "42", "true"). */
  amc_settings_pair_t *extra;
  size_t n_extra;
} amc_settings_t;

/* Fills `s` with the defaults (free with amc_settings_free). */
void amc_settings_init(amc_settings_t *s);
void amc_settings_free(amc_settings_t *s);

/* Sets one string setting by name ("cluster", "tenant", ...; not
 * ingress_selector). Returns 0, or -1 for an unknown name or an empty
 * value. */
int amc_settings_set(amc_settings_t *s, const char *key, const char *value);

/* Applies a settings file. Returns 0, or -1 with `err` naming the file and
 * the key. */
int amc_settings_load_file(amc_settings_t *s, const char *path, char *err,
                           size_t errlen);

/* Applies a settings mapping held as a Lua table at `idx`; `what` names the
 * source in errors. */
int amc_settings_apply_lua(amc_settings_t *s, lua_State *L, int idx,
                           const char *what, char *err, size_t errlen);

/* Pushes the settings as a fresh Lua table (string values; the selector as
 * a table; extras decoded). */
void amc_settings_push(lua_State *L, const amc_settings_t *s);

#endif
