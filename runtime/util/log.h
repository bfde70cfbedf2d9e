/* log.h - leveled, structured, one-line-per-event logging.
 *
 * Every line is an event name plus typed key/value fields, written either as
 * logfmt (`ts=... level=info event=sync.done key=ns/gw calls=3`) or as one JSON
 * object per line. The reconcile key currently being processed (if any) is
 * added to every line as `key=`.
 *
 *   amc_log(AMC_INFO, "avi.request", AMC_S("method", "PUT"), AMC_I("code", 200));
 *
 * Never pass secrets (passwords, cookies, tokens, private keys) as values:
 * there is no redaction here, by design the callers do not hand them in.
 * The module is single-threaded like the rest of the runtime (loop thread). */
#ifndef AMC_UTIL_LOG_H
#define AMC_UTIL_LOG_H

#include <stdio.h>

typedef enum {
  AMC_DEBUG = 0,
  AMC_INFO = 1,
  AMC_WARN = 2,
  AMC_ERROR = 3,
  AMC_OFF = 4
} amc_log_level_t;

typedef enum { AMC_LOG_LOGFMT = 0, AMC_LOG_JSON = 1 } amc_log_format_t;

typedef struct {
  const char *key; /* NULL terminates a field list */
  char type;       /* 's' string, 'i' integer, 'f' double, 'b' bool */
  const char *s;
  long long i;
  double f;
} amc_kv_t;

#define AMC_S(k, v) ((amc_kv_t){(k), 's', (v), 0, 0})
#define AMC_I(k, v) ((amc_kv_t){(k), 'i', NULL, (long long)(v), 0})
#define AMC_F(k, v) ((amc_kv_t){(k), 'f', NULL, 0, (double)(v)})
#define AMC_B(k, v) ((amc_kv_t){(k), 'b', NULL, (v) ? 1 : 0, 0})

#define amc_log(level, event, ...)                                             \
  amc_log_kv((level), (event), (const amc_kv_t[]){__VA_ARGS__ __VA_OPT__(, ){0}})

/* Configures the logger. Default: AMC_INFO, logfmt, stderr. */
void amc_log_init(amc_log_level_t min_level, amc_log_format_t format, FILE *out);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 if unknown. */
int amc_log_level_parse(const char *name);
int amc_log_enabled(amc_log_level_t level);
/* Sets the reconcile key added to every line; NULL clears it. The string is
 * borrowed until the next call. */
void amc_log_set_key(const char *key);
void amc_log_kv(amc_log_level_t level, const char *event, const amc_kv_t *fields);

/* For tests: every formatted line (without the newline) is also passed to
 * `hook` when set. */
typedef void (*amc_log_hook_fn)(const char *line, void *data);
void amc_log_set_hook(amc_log_hook_fn hook, void *data);

#endif
