/* test_queue.c - the keyed work queue: every client-go semantic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "queue.h"

/* A recorder: every dispatched key in order, with the time it came and the
 * number processing at that moment. Keys are done immediately unless
 * `hold` is set (then the test calls done itself). */
typedef struct {
  char keys[64][32];
  uint64_t at[64];
  size_t n;
  int hold;
  size_t max_seen_in_flight;
  int readd_in_callback; /* add the key again from inside the callback */
  int drained;
} rec_t;

static uv_loop_t loop;

static void process(amc_queue_t *q, const char *key, void *data) {
  rec_t *r = data;
  if (r->n < 64) {
    snprintf(r->keys[r->n], sizeof r->keys[0], "%s", key);
    r->at[r->n] = uv_now(&loop);
  }
  r->n++;
  if (amc_queue_in_flight(q) > r->max_seen_in_flight)
    r->max_seen_in_flight = amc_queue_in_flight(q);
  if (r->readd_in_callback) {
    r->readd_in_callback--;
    amc_queue_add(q, key);
  }
  if (!r->hold)
    amc_queue_done(q, key);
}

static void on_stop(uv_timer_t *t) {
  uv_stop(t->loop);
}

/* Runs the loop for `ms` milliseconds of wall time. */
static void run_for(uint64_t ms) {
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, on_stop, ms, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* Runs the loop until `cond` holds or `ms` of wall time pass. Positive
 * checks wait with this (a loaded machine may take longer than a fixed
 * short run); fixed run_for() stays only before "nothing happened" checks,
 * where more time can only expose a bug, never hide a pass. */
#define RUN_UNTIL(cond, ms)                                                    \
  do {                                                                         \
    uint64_t run_until_end_ = uv_hrtime() / 1000000 + (ms);                    \
    while (!(cond) && uv_hrtime() / 1000000 < run_until_end_)                  \
      run_for(1);                                                              \
  } while (0)

static int setup(void **state) {
  (void)state;
  uv_loop_init(&loop);
  return 0;
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static int teardown(void **state) {
  (void)state;
  /* A failed assertion longjmps past amc_queue_close(): close whatever is
   * still open so the failure reports at once instead of the loop waiting
   * on the queue's timers until the ctest timeout (the queue's memory then
   * leaks, but only on a test that already failed). */
  uv_walk(&loop, close_any, NULL);
  uv_run(&loop, UV_RUN_DEFAULT); /* finishes close callbacks */
  assert_int_equal(uv_loop_close(&loop), 0);
  return 0;
}

static void test_dedup_and_fifo(void **state) {
  (void)state;
  rec_t r = {0};
  amc_queue_t *q = amc_queue_new(&loop, NULL, process, &r);
  amc_queue_add(q, "a");
  amc_queue_add(q, "b");
  amc_queue_add(q, "a");
  amc_queue_add(q, "c");
  amc_queue_add(q, "b");
  assert_int_equal(amc_queue_len(q), 3);
  assert_true(amc_queue_is_queued(q, "a"));
  assert_int_equal(r.n, 0); /* never dispatched from inside add */
  RUN_UNTIL(r.n >= 3, 2000);
  assert_int_equal(r.n, 3);
  assert_string_equal(r.keys[0], "a");
  assert_string_equal(r.keys[1], "b");
  assert_string_equal(r.keys[2], "c");
  assert_int_equal(amc_queue_len(q), 0);
  amc_queue_close(q);
}

static void test_never_concurrent_and_requeue_when_dirty(void **state) {
  (void)state;
  rec_t r = {.hold = 1};
  amc_queue_options_t o = {.max_in_flight = 4};
  amc_queue_t *q = amc_queue_new(&loop, &o, process, &r);
  amc_queue_add(q, "a");
  RUN_UNTIL(r.n >= 1, 2000);
  assert_int_equal(r.n, 1);
  assert_int_equal(amc_queue_in_flight(q), 1);
  /* Changes while "a" is processing: not dispatched again, even with free
   * slots, and coalesced into one extra pass. */
  amc_queue_add(q, "a");
  amc_queue_add(q, "a");
  amc_queue_add(q, "a");
  assert_false(amc_queue_is_queued(q, "a"));
  assert_int_equal(amc_queue_len(q), 0);
  run_for(5);
  assert_int_equal(r.n, 1);
  amc_queue_done(q, "a");
  assert_int_equal(amc_queue_len(q), 1);
  RUN_UNTIL(r.n >= 2, 2000);
  assert_int_equal(r.n, 2);
  assert_string_equal(r.keys[1], "a");
  amc_queue_done(q, "a");
  run_for(5);
  assert_int_equal(r.n, 2); /* not dirty any more: no third pass */
  /* done for a key not processing is a no-op */
  amc_queue_done(q, "zzz");
  assert_int_equal(amc_queue_in_flight(q), 0);
  amc_queue_close(q);
}

/* Background keys wait until no foreground key does; a foreground add
 * moves a waiting background key forward, and it is dispatched once. */
static void test_background_lane(void **state) {
  (void)state;
  rec_t r = {0};
  amc_queue_t *q = amc_queue_new(&loop, NULL, process, &r);
  amc_queue_add_background(q, "bg1");
  amc_queue_add_background(q, "bg2");
  amc_queue_add_background(q, "bg3");
  amc_queue_add(q, "fg1");
  amc_queue_add_background(q, "fg1"); /* already queued: stays in front */
  amc_queue_add(q, "bg3");            /* promoted */
  amc_queue_add_background(q, "bg1"); /* deduplicated */
  assert_int_equal(amc_queue_len(q), 4);
  assert_true(amc_queue_is_queued(q, "bg1"));
  assert_true(amc_queue_is_queued(q, "bg3"));
  RUN_UNTIL(r.n >= 4, 2000);
  run_for(5); /* no duplicate from bg3's stale background entry */
  assert_int_equal(r.n, 4);
  assert_string_equal(r.keys[0], "fg1");
  assert_string_equal(r.keys[1], "bg3");
  assert_string_equal(r.keys[2], "bg1");
  assert_string_equal(r.keys[3], "bg2");
  assert_int_equal(amc_queue_len(q), 0);
  /* The stale entry went with the rest: the key can be queued again. */
  amc_queue_add_background(q, "bg3");
  assert_int_equal(amc_queue_len(q), 1);
  RUN_UNTIL(r.n >= 5, 2000);
  assert_int_equal(r.n, 5);
  assert_string_equal(r.keys[4], "bg3");
  amc_queue_close(q);
}

/* A key dirtied while processing is queued again in the lane of what
 * dirtied it: a foreground add wins over a background one. */
static void test_background_lane_while_processing(void **state) {
  (void)state;
  rec_t r = {.hold = 1};
  amc_queue_options_t o = {.max_in_flight = 1};
  amc_queue_t *q = amc_queue_new(&loop, &o, process, &r);
  amc_queue_add(q, "a");
  RUN_UNTIL(r.n >= 1, 2000);
  amc_queue_add_background(q, "a"); /* while "a" is processing */
  amc_queue_add(q, "b");
  amc_queue_add_background(q, "c");
  amc_queue_done(q, "a"); /* "a" goes after "c" (background, in order) */
  assert_int_equal(amc_queue_len(q), 3);
  for (size_t n = 2; n <= 4; n++) {
    RUN_UNTIL(r.n >= n, 2000);
    assert_int_equal(r.n, n);
    amc_queue_done(q, r.keys[n - 1]);
  }
  assert_string_equal(r.keys[1], "b");
  assert_string_equal(r.keys[2], "c");
  assert_string_equal(r.keys[3], "a");
  /* Now dirtied by both while processing: the foreground add counts. */
  amc_queue_add_background(q, "z");
  RUN_UNTIL(r.n >= 5, 2000);
  assert_string_equal(r.keys[4], "z");
  amc_queue_add_background(q, "y");
  amc_queue_add_background(q, "z");
  amc_queue_add(q, "z");
  amc_queue_done(q, "z");
  RUN_UNTIL(r.n >= 6, 2000);
  assert_string_equal(r.keys[5], "z");
  amc_queue_done(q, "z");
  RUN_UNTIL(r.n >= 7, 2000);
  assert_string_equal(r.keys[6], "y");
  amc_queue_done(q, "y");
  run_for(5);
  assert_int_equal(r.n, 7);
  /* Shutdown drops background keys too (ASan: nothing leaks). */
  amc_queue_add_background(q, "p");
  amc_queue_add(q, "p");
  amc_queue_add_background(q, "q");
  amc_queue_close(q);
}

static void test_readd_from_callback(void **state) {
  (void)state;
  rec_t r = {.readd_in_callback = 1};
  amc_queue_t *q = amc_queue_new(&loop, NULL, process, &r);
  amc_queue_add(q, "k");
  RUN_UNTIL(r.n >= 2, 2000);
  run_for(5); /* no third pass */
  /* added while processing (from the callback) -> exactly one more pass */
  assert_int_equal(r.n, 2);
  amc_queue_close(q);
}

static void test_bounded_in_flight(void **state) {
  (void)state;
  rec_t r = {.hold = 1};
  amc_queue_options_t o = {.max_in_flight = 2};
  amc_queue_t *q = amc_queue_new(&loop, &o, process, &r);
  const char *keys[] = {"k1", "k2", "k3", "k4", "k5"};
  for (int i = 0; i < 5; i++)
    amc_queue_add(q, keys[i]);
  RUN_UNTIL(r.n >= 2, 2000);
  run_for(5); /* the bound holds: no third dispatch */
  assert_int_equal(r.n, 2);
  assert_int_equal(amc_queue_in_flight(q), 2);
  assert_int_equal(amc_queue_len(q), 3);
  amc_queue_done(q, "k1");
  RUN_UNTIL(r.n >= 3, 2000);
  assert_int_equal(r.n, 3);
  assert_string_equal(r.keys[2], "k3");
  amc_queue_done(q, "k2");
  amc_queue_done(q, "k3");
  RUN_UNTIL(r.n >= 5, 2000);
  assert_int_equal(r.n, 5);
  assert_int_equal(r.max_seen_in_flight, 2);
  amc_queue_done(q, "k4");
  amc_queue_done(q, "k5");
  amc_queue_close(q);
}

static void test_add_after(void **state) {
  (void)state;
  rec_t r = {0};
  amc_queue_t *q = amc_queue_new(&loop, NULL, process, &r);
  uv_update_time(&loop);
  uint64_t t0 = uv_now(&loop);
  amc_queue_add_after(q, "late", 60);
  amc_queue_add_after(q, "early", 20);
  amc_queue_add_after(q, "late", 200); /* later deadline: ignored */
  assert_int_equal(amc_queue_waiting(q), 2);
  assert_int_equal(amc_queue_len(q), 0);
  run_for(10);
  uv_update_time(&loop);
  if (uv_now(&loop) - t0 < 20) /* a loaded machine may have slept longer */
    assert_int_equal(r.n, 0);
  RUN_UNTIL(r.n >= 2, 2000);
  assert_int_equal(r.n, 2);
  assert_string_equal(r.keys[0], "early");
  assert_string_equal(r.keys[1], "late");
  assert_true(r.at[0] - t0 >= 20);
  assert_true(r.at[1] - t0 >= 60);
  assert_true(r.at[1] - t0 < 200);
  /* an earlier deadline replaces a later one */
  uv_update_time(&loop);
  t0 = uv_now(&loop);
  amc_queue_add_after(q, "x", 500);
  amc_queue_add_after(q, "x", 10);
  RUN_UNTIL(r.n >= 3, 2000);
  assert_int_equal(r.n, 3);
  assert_true(r.at[2] - t0 < 500);
  assert_int_equal(amc_queue_waiting(q), 0);
  /* a waiting key that is also added directly runs once now (the delay is
   * long enough that the direct pass surely comes first, even under load) */
  amc_queue_add_after(q, "y", 300);
  amc_queue_add(q, "y");
  RUN_UNTIL(r.n >= 4, 2000);
  assert_int_equal(r.n, 4);
  assert_int_equal(amc_queue_waiting(q), 1);
  RUN_UNTIL(r.n >= 5, 3000);
  assert_int_equal(r.n, 5); /* the delayed add still fires: level-based */
  amc_queue_close(q);
}

static void test_rate_limited_backoff(void **state) {
  (void)state;
  rec_t r = {0};
  amc_queue_options_t o = {
      .base_delay_ms = 5, .max_delay_ms = 80, .qps = -1 /* bucket off */};
  amc_queue_t *q = amc_queue_new(&loop, &o, process, &r);
  int64_t want[] = {5, 10, 20, 40, 80, 80, 80};
  for (int i = 0; i < 7; i++) {
    assert_int_equal(amc_queue_add_rate_limited(q, "k"), want[i]);
    assert_int_equal(amc_queue_num_requeues(q, "k"), i + 1);
  }
  /* per key: another key starts from the base */
  assert_int_equal(amc_queue_add_rate_limited(q, "other"), 5);
  amc_queue_forget(q, "k");
  assert_int_equal(amc_queue_num_requeues(q, "k"), 0);
  assert_int_equal(amc_queue_add_rate_limited(q, "k"), 5);
  RUN_UNTIL(r.n >= 2 && amc_queue_waiting(q) == 0, 2000);
  run_for(10); /* no further passes */
  /* "k" and "other" each ran once (the waits coalesce per key) */
  assert_int_equal(r.n, 2);
  amc_queue_forget(q, "k");
  amc_queue_forget(q, "other");
  amc_queue_close(q);
}

static void test_rate_limited_defaults(void **state) {
  (void)state;
  rec_t r = {0};
  amc_queue_t *q = amc_queue_new(&loop, NULL, process, &r);
  /* default: 5 ms doubling, capped at 1000 s */
  int64_t d = 0;
  for (int i = 0; i < 40; i++)
    d = amc_queue_add_rate_limited(q, "k");
  assert_int_equal(d, 1000 * 1000);
  amc_queue_close(q);
}

static void test_token_bucket(void **state) {
  (void)state;
  rec_t r = {0};
  amc_queue_options_t o = {.base_delay_ms = 1, .qps = 10, .burst = 2};
  uint64_t t0 = uv_hrtime();
  amc_queue_t *q = amc_queue_new(&loop, &o, process, &r);
  /* Two tokens in the bucket: the per-key delay wins. */
  assert_int_equal(amc_queue_add_rate_limited(q, "a"), 1);
  assert_int_equal(amc_queue_add_rate_limited(q, "b"), 1);
  /* Bucket empty: ~100 ms per token at 10/s, accumulating. */
  int64_t c = amc_queue_add_rate_limited(q, "c");
  int64_t d = amc_queue_add_rate_limited(q, "d");
  /* The bucket refills on the real clock (1 token per 100 ms): each wait is
   * 100 ms per missing token less the time that passed since the bucket was
   * full, so bound it by the time measured here (a loaded machine may
   * pause the test for tens of ms between the calls). */
  int64_t el = (int64_t)((uv_hrtime() - t0) / 1000000) + 1;
  assert_true(c <= 100 && c >= 100 - el);
  assert_true(d <= 200 && d >= 200 - el);
  assert_true(d >= c); /* tokens accumulate: later reservations wait longer */
  amc_queue_forget(q, "a");
  amc_queue_forget(q, "b");
  amc_queue_forget(q, "c");
  amc_queue_forget(q, "d");
  amc_queue_close(q);
}

static void on_drained(amc_queue_t *q, void *data) {
  (void)q;
  ((rec_t *)data)->drained++;
}

static void test_shutdown_drains(void **state) {
  (void)state;
  rec_t r = {.hold = 1};
  amc_queue_options_t o = {.max_in_flight = 1};
  amc_queue_t *q = amc_queue_new(&loop, &o, process, &r);
  amc_queue_add(q, "busy");
  amc_queue_add(q, "queued");
  amc_queue_add_after(q, "later", 10);
  RUN_UNTIL(r.n >= 1, 2000);
  assert_int_equal(r.n, 1);
  amc_queue_shutdown(q, on_drained, &r);
  assert_int_equal(amc_queue_add(q, "new"), -1);
  assert_int_equal(amc_queue_add_rate_limited(q, "new"), -1);
  assert_int_equal(amc_queue_len(q), 0);
  assert_int_equal(amc_queue_waiting(q), 0);
  amc_queue_add(q, "busy"); /* ignored: no pass after done */
  run_for(20);
  assert_int_equal(r.drained, 0); /* "busy" still in flight */
  amc_queue_done(q, "busy");
  RUN_UNTIL(r.drained >= 1, 2000);
  run_for(5);
  assert_int_equal(r.drained, 1);
  assert_int_equal(r.n, 1); /* nothing else was dispatched */
  amc_queue_close(q);
}

static void test_shutdown_idle_queue_drains_at_once(void **state) {
  (void)state;
  rec_t r = {0};
  amc_queue_t *q = amc_queue_new(&loop, NULL, process, &r);
  amc_queue_shutdown(q, on_drained, &r);
  assert_int_equal(r.drained, 0); /* never from inside shutdown */
  RUN_UNTIL(r.drained >= 1, 2000);
  assert_int_equal(r.drained, 1);
  amc_queue_close(q);
}

static void test_many_keys(void **state) {
  (void)state;
  /* Growth of the FIFO ring and of the item map. */
  rec_t r = {0};
  amc_queue_t *q = amc_queue_new(&loop, NULL, process, &r);
  char k[32];
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 1000; i++) {
      snprintf(k, sizeof k, "key-%d", i);
      amc_queue_add(q, k);
    }
  }
  assert_int_equal(amc_queue_len(q), 1000);
  RUN_UNTIL(r.n >= 1000, 5000);
  run_for(5);
  assert_int_equal(r.n, 1000);
  assert_string_equal(r.keys[63], "key-63"); /* FIFO order kept */
  amc_queue_close(q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_dedup_and_fifo, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_never_concurrent_and_requeue_when_dirty, setup, teardown),
      cmocka_unit_test_setup_teardown(test_readd_from_callback, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_bounded_in_flight, setup, teardown),
      cmocka_unit_test_setup_teardown(test_add_after, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rate_limited_backoff, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_rate_limited_defaults, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_token_bucket, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shutdown_drains, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shutdown_idle_queue_drains_at_once,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_background_lane, setup, teardown),
      cmocka_unit_test_setup_teardown(test_background_lane_while_processing,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
