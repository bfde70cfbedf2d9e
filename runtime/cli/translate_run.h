/* translate_run.h - what `amc translate` does, reusable by `amc rules test`:
 * load Kubernetes objects from files into a store, translate every Gateway
 * with the rules, and render one JSON document.
 *
 * The document is pretty canonical JSON (json.h) with one key per AVI type
 * (an array of that type's objects from all Gateways, sorted by name) plus
 * "diagnostics": an array of {severity, object: {kind, namespace, name},
 * field, message} in the order the rules reported them, Gateway by Gateway
 * (namespace/name order); identical diagnostics from several Gateways are
 * listed once. Unless `show_secrets` is set, the private parts of
 * sslkeyandcertificate objects (`key`, `key_passphrase`) print as
 * "<sensitive>". The same input always gives the same bytes. */
#ifndef AMC_CLI_TRANSLATE_RUN_H
#define AMC_CLI_TRANSLATE_RUN_H

#include <stddef.h>

#include "rules_engine.h"
#include "settings.h"
#include "util/buf.h"

#ifndef AMC_RULES_DIR
/* Where packages install the rules; used when ./rules does not exist. */
#define AMC_RULES_DIR "/usr/share/amc/rules"
#endif

typedef struct {
  const char *rules_dir; /* NULL: amc_translate_default_rules_dir() */
  const amc_settings_t *settings;
  int show_secrets;
  const amc_rules_opts_t *rules_opts; /* NULL: defaults */
  int stats;                          /* print counts and timings on stderr */
} amc_translate_run_opts_t;

/* "./rules" when that directory exists, else AMC_RULES_DIR. */
const char *amc_translate_default_rules_dir(void);

/* Runs the whole translation. Returns AMC_EXIT_OK with the document in
 * `out`, AMC_EXIT_USAGE for input errors (unreadable or malformed files,
 * objects without identity, duplicates) or AMC_EXIT_FAIL for rule errors
 * (rules that do not load, translations that fail), with one message per
 * line in `err`. */
int amc_translate_run(char *const *paths, size_t n_paths,
                      const amc_translate_run_opts_t *opts, amc_buf_t *out,
                      amc_buf_t *err);

#endif
