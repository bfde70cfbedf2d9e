/* backoff.h - exponential backoff with jitter for watch/list retries.
 *
 * delay(n) = min(max, initial * 2^n) * (1 + jitter * r), r uniform in
 * [0, 1), as client-go's wait.Backoff with Factor 2 (jitter spreads many
 * clients' retries after an API server restart). reset() after a success.
 * The random source is injectable for tests. */
#ifndef AMC_KUBE_BACKOFF_H
#define AMC_KUBE_BACKOFF_H

#include <stdint.h>

typedef struct {
  uint64_t initial_ms;      /* first delay (default 500) */
  uint64_t max_ms;          /* cap before jitter (default 30000) */
  double jitter;            /* default 0.5 */
  unsigned attempts;        /* failures since the last reset */
  double (*rand01)(void *); /* NULL = rand() */
  void *rand_data;
} amc_backoff_t;

void amc_backoff_init(amc_backoff_t *b, uint64_t initial_ms, uint64_t max_ms,
                      double jitter);
/* The delay before the next attempt; counts one more failure. */
uint64_t amc_backoff_next(amc_backoff_t *b);
void amc_backoff_reset(amc_backoff_t *b);

#endif
