/* log.c - structured logging in logfmt or JSON lines. */
#include "util/log.h"

#include "util/buf.h"

#include <string.h>
#include <sys/time.h>
#include <time.h>

static struct {
  amc_log_level_t min;
  amc_log_format_t format;
  FILE *out;
  const char *key;
  amc_log_hook_fn hook;
  void *hook_data;
} logger = {AMC_INFO, AMC_LOG_LOGFMT, NULL, NULL, NULL, NULL};

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

void amc_log_init(amc_log_level_t min_level, amc_log_format_t format,
                  FILE *out) {
  logger.min = min_level;
  logger.format = format;
  logger.out = out;
}

int amc_log_level_parse(const char *name) {
  for (int i = 0; i <= AMC_OFF; i++) {
    if (strcmp(name, level_names[i]) == 0)
      return i;
  }
  if (strcmp(name, "warning") == 0)
    return AMC_WARN;
  return -1;
}

int amc_log_enabled(amc_log_level_t level) {
  return level >= logger.min && level < AMC_OFF;
}

void amc_log_set_key(const char *key) {
  logger.key = key;
}

void amc_log_set_hook(amc_log_hook_fn hook, void *data) {
  logger.hook = hook;
  logger.hook_data = data;
}

/* logfmt values are quoted when they hold spaces, quotes, '=' or controls. */
static void put_logfmt_value(amc_buf_t *b, const char *s) {
  int quote = (*s == '\0');
  for (const char *p = s; *p; p++) {
    if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\')
      quote = 1;
  }
  if (!quote) {
    amc_buf_puts(b, s);
    return;
  }
  amc_buf_putc(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      amc_buf_putc(b, '\\');
      amc_buf_putc(b, (char)*p);
    } else if (*p == '\n') {
      amc_buf_puts(b, "\\n");
    } else if (*p < 0x20) {
      amc_buf_printf(b, "\\x%02x", *p);
    } else {
      amc_buf_putc(b, (char)*p);
    }
  }
  amc_buf_putc(b, '"');
}

static void put_json_string(amc_buf_t *b, const char *s) {
  amc_buf_putc(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"':
      amc_buf_puts(b, "\\\"");
      break;
    case '\\':
      amc_buf_puts(b, "\\\\");
      break;
    case '\n':
      amc_buf_puts(b, "\\n");
      break;
    case '\t':
      amc_buf_puts(b, "\\t");
      break;
    case '\r':
      amc_buf_puts(b, "\\r");
      break;
    default:
      if (*p < 0x20)
        amc_buf_printf(b, "\\u%04x", *p);
      else
        amc_buf_putc(b, (char)*p);
    }
  }
  amc_buf_putc(b, '"');
}

static void put_field(amc_buf_t *b, const char *key, const amc_kv_t *kv,
                      const char *sval) {
  char num[64];
  const char *text = sval;
  if (kv) {
    switch (kv->type) {
    case 'i':
      snprintf(num, sizeof num, "%lld", kv->i);
      text = num;
      break;
    case 'f':
      snprintf(num, sizeof num, "%.6g", kv->f);
      text = num;
      break;
    case 'b':
      text = kv->i ? "true" : "false";
      break;
    default:
      text = kv->s ? kv->s : "";
    }
  }
  if (logger.format == AMC_LOG_JSON) {
    amc_buf_putc(b, ',');
    put_json_string(b, key);
    amc_buf_putc(b, ':');
    if (kv && kv->type != 's')
      amc_buf_puts(b, text);
    else
      put_json_string(b, text);
  } else {
    amc_buf_putc(b, ' ');
    amc_buf_puts(b, key);
    amc_buf_putc(b, '=');
    put_logfmt_value(b, text);
  }
}

void amc_log_kv(amc_log_level_t level, const char *event,
                const amc_kv_t *fields) {
  if (!amc_log_enabled(level))
    return;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[40];
  size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof ts - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

  amc_buf_t b = AMC_BUF_INIT;
  if (logger.format == AMC_LOG_JSON) {
    amc_buf_puts(&b, "{\"ts\":");
    put_json_string(&b, ts);
  } else {
    amc_buf_printf(&b, "ts=%s", ts);
  }
  put_field(&b, "level", NULL, level_names[level]);
  put_field(&b, "event", NULL, event);
  if (logger.key)
    put_field(&b, "key", NULL, logger.key);
  for (const amc_kv_t *kv = fields; kv && kv->key; kv++)
    put_field(&b, kv->key, kv, NULL);
  if (logger.format == AMC_LOG_JSON)
    amc_buf_putc(&b, '}');
  if (logger.hook)
    logger.hook(b.data, logger.hook_data);
  FILE *out = logger.out ? logger.out : stderr;
  amc_buf_putc(&b, '\n');
  fwrite(b.data, 1, b.len, out);
  fflush(out);
  amc_buf_free(&b);
}
