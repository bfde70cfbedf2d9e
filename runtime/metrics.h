/* metrics.h - counters, gauges and histograms with labels, exposed in the
 * Prometheus text format (version 0.0.4).
 *
 * A registry holds metric families; each family has a fixed list of label
 * names and one series per distinct tuple of label values. Families render
 * in registration order, series sorted by their label values, with # HELP
 * and # TYPE lines; HELP text escapes '\' and newline, label values escape
 * '\', '"' and newline.
 *
 *   amc_metric_t *req = amc_metrics_counter(reg, "amc_avi_requests_total",
 *       "AVI REST requests.", (const char *[]){"method", "type", "code",
 * NULL}); amc_metric_inc(req, (const char *[]){"PUT", "pool", "200"});
 *
 * Label values are passed as an array with exactly as many strings as the
 * family has label names (NULL for a family without labels). Names are not
 * validated beyond being non-empty: they are compile-time constants.
 * Values must never carry secrets.
 *
 * Single-threaded (loop thread), like the rest of the runtime: the admin
 * server renders on the loop too (admin_http.h). A `collect` hook runs before
 * each render, to refresh gauges that are read rather than pushed (queue
 * depth, objects by kind). */
#ifndef AMC_METRICS_H
#define AMC_METRICS_H

#include <stddef.h>

#include "util/buf.h"

typedef struct amc_metrics amc_metrics_t;
typedef struct amc_metric amc_metric_t;

amc_metrics_t *amc_metrics_new(void);
void amc_metrics_free(amc_metrics_t *reg);

/* Registers a family. `labels` is a NULL-terminated array of label names
 * (copied), or NULL. Returns the family (owned by the registry), or NULL if
 * the name is already registered. */
amc_metric_t *amc_metrics_counter(amc_metrics_t *reg, const char *name,
                                  const char *help, const char *const *labels);
amc_metric_t *amc_metrics_gauge(amc_metrics_t *reg, const char *name,
                                const char *help, const char *const *labels);
/* `bounds` are the buckets' upper bounds, strictly increasing (copied); the
 * +Inf bucket is implicit. */
amc_metric_t *amc_metrics_histogram(amc_metrics_t *reg, const char *name,
                                    const char *help, const char *const *labels,
                                    const double *bounds, size_t n_bounds);

/* Counter or gauge: add `v` (a counter ignores negative values). */
void amc_metric_add(amc_metric_t *m, const char *const *values, double v);
#define amc_metric_inc(m, ...) amc_metric_add((m), __VA_ARGS__, 1)
/* Gauge: set. */
void amc_metric_set(amc_metric_t *m, const char *const *values, double v);
/* Gauge: drop every series (before re-setting the ones that exist, e.g.
 * objects by kind). */
void amc_metric_reset(amc_metric_t *m);
/* Histogram: record one observation. */
void amc_metric_observe(amc_metric_t *m, const char *const *values, double v);
/* Current value of a counter/gauge series, or of a histogram's count; 0 if
 * the series does not exist. */
double amc_metric_value(amc_metric_t *m, const char *const *values);

typedef void (*amc_metrics_collect_fn)(amc_metrics_t *reg, void *data);
void amc_metrics_set_collect(amc_metrics_t *reg, amc_metrics_collect_fn fn,
                             void *data);

/* Appends the exposition text of every family to `out` (after running the
 * collect hook). */
void amc_metrics_render(amc_metrics_t *reg, amc_buf_t *out);

#endif
