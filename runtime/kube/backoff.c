/* backoff.c - exponential backoff with jitter (see backoff.h). */
#include "kube/backoff.h"

#include <stdlib.h>

void amc_backoff_init(amc_backoff_t *b, uint64_t initial_ms, uint64_t max_ms,
                      double jitter) {
  b->initial_ms = initial_ms ? initial_ms : 500;
  b->max_ms = max_ms ? max_ms : 30000;
  if (b->max_ms < b->initial_ms)
    b->max_ms = b->initial_ms;
  b->jitter = jitter >= 0 ? jitter : 0.5;
  b->attempts = 0;
  b->rand01 = NULL;
  b->rand_data = NULL;
}

uint64_t amc_backoff_next(amc_backoff_t *b) {
  uint64_t d = b->initial_ms;
  for (unsigned i = 0; i < b->attempts && d < b->max_ms; i++)
    d *= 2;
  if (d > b->max_ms)
    d = b->max_ms;
  if (b->attempts < 64)
    b->attempts++;
  double r = b->rand01 ? b->rand01(b->rand_data)
                       : (double)rand() / ((double)RAND_MAX + 1.0);
  return d + (uint64_t)((double)d * b->jitter * r);
}

void amc_backoff_reset(amc_backoff_t *b) {
  b->attempts = 0;
}
