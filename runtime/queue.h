/* queue.h - a keyed work queue on the libuv loop (client-go semantics).
 *
 * The queue holds keys (strings such as "Gateway/ns/name"), never objects:
 * work is level-triggered, the worker reads the current state when it runs.
 *
 *   - Deduplication: adding a key that is already queued does nothing.
 *   - A key is never processed twice at once: between the process callback
 *     for a key and amc_queue_done() for it, the key is "processing".
 *   - A key added while it is processing is marked dirty and queued again by
 *     amc_queue_done(), so N changes during one pass cost one extra pass.
 *   - At most `max_in_flight` keys are processing at any time.
 *   - Two lanes: keys added with amc_queue_add_background() (bulk passes)
 *     wait until no foreground key does; a foreground add of a key waiting
 *     in the background moves it forward.
 *   - amc_queue_add_after() queues a key after a delay (a timer heap with one
 *     uv_timer_t); a key waiting twice keeps the earlier deadline.
 *   - amc_queue_add_rate_limited() = add_after(the larger of the per-key
 *     exponential backoff base*2^failures, capped at max, and the delay of a
 *     global token bucket); amc_queue_forget() resets the key's backoff.
 *
 * Dispatch is asynchronous: keys are handed to the process callback from a
 * uv_idle_t, one key per loop iteration (so the I/O a key starts is served
 * before the next key runs), never from inside amc_queue_add(), so
 * callers may add keys from anywhere on the loop thread (including from the
 * process callback). The process callback may finish its work later (after
 * AVI calls): it must call amc_queue_done(key) exactly once per dispatch.
 *
 * Single-threaded: every function must be called on the loop thread. */
#ifndef AMC_QUEUE_H
#define AMC_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct amc_queue amc_queue_t;

/* Called with a key to process. `key` stays valid until amc_queue_done() for
 * it returns. */
typedef void (*amc_queue_process_fn)(amc_queue_t *q, const char *key,
                                     void *data);
/* Called once after amc_queue_shutdown() when no key is processing. */
typedef void (*amc_queue_drained_fn)(amc_queue_t *q, void *data);

typedef struct {
  unsigned max_in_flight; /* keys processing at once; 0 -> 1 */
  uint64_t base_delay_ms; /* per-key backoff start; 0 -> 5 ms */
  uint64_t max_delay_ms;  /* per-key backoff cap; 0 -> 1000 s */
  double qps;             /* global bucket refill rate; 0 -> 10/s, <0 off */
  unsigned burst;         /* global bucket size; 0 -> 100 */
} amc_queue_options_t;

/* Creates a queue. `opts` may be NULL (defaults above). Returns NULL when
 * out of memory. */
amc_queue_t *amc_queue_new(uv_loop_t *loop, const amc_queue_options_t *opts,
                           amc_queue_process_fn process, void *data);

/* Queues `key` (copied). Returns 0, or -1 after shutdown (ignored). */
int amc_queue_add(amc_queue_t *q, const char *key);
/* Queues `key` in the background: background keys are dispatched only when
 * no other key waits (for bulk work such as a periodic resync, so that a
 * change arriving meanwhile does not wait behind all of it). A key already
 * queued stays where it is; amc_queue_add() of a key waiting in the
 * background moves it to the foreground. Returns 0, or -1 after shutdown. */
int amc_queue_add_background(amc_queue_t *q, const char *key);
/* Queues `key` after `delay_ms` (0 = now). Returns 0, or -1 after shutdown. */
int amc_queue_add_after(amc_queue_t *q, const char *key, uint64_t delay_ms);
/* Queues `key` after its backoff delay and counts a failure. Returns the
 * delay chosen in ms, or -1 after shutdown. */
int64_t amc_queue_add_rate_limited(amc_queue_t *q, const char *key);
/* Resets the key's failure count (call on success). */
void amc_queue_forget(amc_queue_t *q, const char *key);
/* Failures counted for `key` since its last forget. */
unsigned amc_queue_num_requeues(amc_queue_t *q, const char *key);
/* Ends the processing of `key`; queues it again if it became dirty
 * meanwhile. Calling it for a key that is not processing is a no-op. */
void amc_queue_done(amc_queue_t *q, const char *key);

/* Keys waiting to be processed (the metric "queue depth"). */
size_t amc_queue_len(const amc_queue_t *q);
/* Keys processing now. */
size_t amc_queue_in_flight(const amc_queue_t *q);
/* Keys waiting on a delay (add_after / rate limited). */
size_t amc_queue_waiting(const amc_queue_t *q);
/* 1 if `key` is queued (dirty and not processing). */
int amc_queue_is_queued(const amc_queue_t *q, const char *key);

/* Stops dispatching; later adds are ignored and delayed keys are dropped.
 * Keys already processing finish normally: `drained` (may be NULL) runs once,
 * on a later loop iteration, when none is left. */
void amc_queue_shutdown(amc_queue_t *q, amc_queue_drained_fn drained,
                        void *data);

/* Closes the queue's handles and frees it (in their close callbacks). Implies
 * shutdown without the drained callback. The queue must not be used after,
 * so close it once drained (or when no pending work will call done()). */
void amc_queue_close(amc_queue_t *q);

#endif
