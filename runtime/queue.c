/* queue.c - keyed work queue: two FIFOs (foreground, background) + dirty
 * set + processing set, a timer heap for delayed adds, per-key exponential
 * backoff and a global token bucket. */
#include "queue.h"

#include "util/strmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-key state. An item exists while the key is dirty, processing, waiting
 * on a delay or has a non-zero failure count; otherwise it is freed. */
typedef struct {
  const char *key; /* interned: the strmap entry's key */
  unsigned dirty : 1;
  unsigned processing : 1;
  unsigned background : 1; /* dirty by background adds only */
  unsigned failures;
  unsigned bg_refs;  /* entries for it in the background ring */
  long heap_idx;     /* index in the delay heap, -1 if not waiting */
  uint64_t deadline; /* uv_now() ms when waiting */
  uint64_t seq;      /* ties in the heap break by insertion order */
} item_t;

typedef struct {
  item_t **v; /* a ring buffer */
  size_t head, len, cap;
} ring_t;

struct amc_queue {
  uv_loop_t *loop;
  uv_idle_t idle;   /* dispatches queued keys */
  uv_timer_t timer; /* fires at the earliest delay deadline */
  int closing_handles;
  amc_queue_options_t opt;
  amc_queue_process_fn process;
  void *data;

  amc_strmap_t items; /* key -> item_t */

  /* Dirty, non-processing items: the foreground FIFO, then the background
   * one. A background item that a foreground add promotes stays in the
   * background ring as a stale entry (skipped when popped): bg_live counts
   * the entries that are not. */
  ring_t fg, bg;
  size_t bg_live;

  /* Min-heap of waiting items, by (deadline, seq). */
  item_t **heap;
  size_t heap_len, heap_cap;
  uint64_t seq;

  size_t in_flight;

  /* Token bucket (tokens may go negative: reservations in the future). */
  double tokens;
  uint64_t bucket_ts_us;

  int shut_down;
  amc_queue_drained_fn drained;
  void *drained_data;
  int drained_called;
};

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n);
  if (!p) {
    fputs("amc: out of memory\n", stderr);
    abort();
  }
  return p;
}

/* ------------------------------------------------------------------------ */
/* Items */

static item_t *item_get(amc_queue_t *q, const char *key, int create) {
  amc_strmap_entry_t *e = amc_strmap_find(&q->items, key);
  if (e)
    return e->value;
  if (!create)
    return NULL;
  item_t *it = calloc(1, sizeof *it);
  if (!it)
    abort();
  it->heap_idx = -1;
  e = amc_strmap_put(&q->items, key, it, NULL);
  it->key = e->key;
  return it;
}

static void item_maybe_free(amc_queue_t *q, item_t *it) {
  if (it->dirty || it->processing || it->failures || it->heap_idx >= 0 ||
      it->bg_refs)
    return;
  amc_strmap_del(&q->items, it->key); /* it->key dies here */
  free(it);
}

/* ------------------------------------------------------------------------ */
/* FIFOs */

static void ring_push(ring_t *r, item_t *it) {
  if (r->len == r->cap) {
    size_t ncap = r->cap ? r->cap * 2 : 64;
    item_t **n = xrealloc(NULL, ncap * sizeof *n);
    for (size_t i = 0; i < r->len; i++)
      n[i] = r->v[(r->head + i) % r->cap];
    free(r->v);
    r->v = n;
    r->cap = ncap;
    r->head = 0;
  }
  r->v[(r->head + r->len) % r->cap] = it;
  r->len++;
}

static item_t *ring_pop(ring_t *r) {
  if (r->len == 0)
    return NULL;
  item_t *it = r->v[r->head];
  r->head = (r->head + 1) % r->cap;
  r->len--;
  return it;
}

/* Puts a dirty item that is not processing in line: its lane's FIFO. */
static void line_up(amc_queue_t *q, item_t *it) {
  if (it->background) {
    ring_push(&q->bg, it);
    it->bg_refs++;
    q->bg_live++;
  } else {
    ring_push(&q->fg, it);
  }
}

/* The next item to dispatch: foreground first. Stale background entries
 * (promoted since, or already dispatched through a later entry) are
 * dropped on the way. */
static item_t *next_in_line(amc_queue_t *q) {
  item_t *it = ring_pop(&q->fg);
  if (it)
    return it;
  while ((it = ring_pop(&q->bg)) != NULL) {
    it->bg_refs--;
    if (it->background && it->dirty && !it->processing) {
      q->bg_live--;
      it->background = 0;
      return it;
    }
    item_maybe_free(q, it);
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Delay heap */

static int heap_less(const item_t *a, const item_t *b) {
  if (a->deadline != b->deadline)
    return a->deadline < b->deadline;
  return a->seq < b->seq;
}

static void heap_set(amc_queue_t *q, size_t i, item_t *it) {
  q->heap[i] = it;
  it->heap_idx = (long)i;
}

static void heap_up(amc_queue_t *q, size_t i) {
  item_t *it = q->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!heap_less(it, q->heap[p]))
      break;
    heap_set(q, i, q->heap[p]);
    i = p;
  }
  heap_set(q, i, it);
}

static void heap_down(amc_queue_t *q, size_t i) {
  item_t *it = q->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const item_t *best = it;
    if (l < q->heap_len && heap_less(q->heap[l], best)) {
      m = l;
      best = q->heap[l];
    }
    if (r < q->heap_len && heap_less(q->heap[r], best))
      m = r;
    if (m == i)
      break;
    heap_set(q, i, q->heap[m]);
    i = m;
  }
  heap_set(q, i, it);
}

static void heap_remove(amc_queue_t *q, item_t *it) {
  size_t i = (size_t)it->heap_idx;
  it->heap_idx = -1;
  q->heap_len--;
  if (i == q->heap_len)
    return;
  heap_set(q, i, q->heap[q->heap_len]);
  heap_down(q, i);
  heap_up(q, (size_t)q->heap[i]->heap_idx);
}

static void heap_push(amc_queue_t *q, item_t *it) {
  if (q->heap_len == q->heap_cap) {
    q->heap_cap = q->heap_cap ? q->heap_cap * 2 : 16;
    q->heap = xrealloc(q->heap, q->heap_cap * sizeof *q->heap);
  }
  q->heap[q->heap_len] = it;
  it->heap_idx = (long)q->heap_len;
  q->heap_len++;
  heap_up(q, q->heap_len - 1);
}

/* ------------------------------------------------------------------------ */
/* Dispatch */

static void on_idle(uv_idle_t *h);
static void on_timer(uv_timer_t *h);

/* Starts the idle handle when there is something to do on the next
 * iteration: a key to dispatch, or a drained callback to deliver. */
static void kick(amc_queue_t *q) {
  if (q->closing_handles)
    return;
  int work = !q->shut_down && q->fg.len + q->bg_live > 0 &&
             q->in_flight < q->opt.max_in_flight;
  int drain = q->shut_down && !q->drained_called && q->in_flight == 0;
  if (work || drain)
    uv_idle_start(&q->idle, on_idle);
  else
    uv_idle_stop(&q->idle);
}

static void on_idle(uv_idle_t *h) {
  amc_queue_t *q = h->data;
  /* One key per loop iteration: processing may be long (a translation runs
   * on the loop), and the I/O a key started (its first AVI call) must get
   * its turn before the next key is taken. */
  if (!q->shut_down && q->in_flight < q->opt.max_in_flight) {
    item_t *it = next_in_line(q);
    if (it) {
      it->dirty = 0;
      it->processing = 1;
      q->in_flight++;
      /* The callback may call done() synchronously, which may free the item
       * (and its interned key): nothing below touches `it`. */
      q->process(q, it->key, q->data);
    }
  }
  if (q->shut_down && !q->drained_called && q->in_flight == 0) {
    q->drained_called = 1;
    if (q->drained)
      q->drained(q, q->drained_data);
  }
  kick(q);
}

static void arm_timer(amc_queue_t *q) {
  if (q->closing_handles)
    return;
  if (q->heap_len == 0) {
    uv_timer_stop(&q->timer);
    return;
  }
  uint64_t now = uv_now(q->loop);
  uint64_t dl = q->heap[0]->deadline;
  uv_timer_start(&q->timer, on_timer, dl > now ? dl - now : 0, 0);
}

static void enqueue(amc_queue_t *q, item_t *it) {
  if (it->dirty) {
    if (!it->background)
      return; /* deduplicated */
    /* waiting in the background: now in the foreground (the background
     * entry goes stale) */
    it->background = 0;
    if (it->processing)
      return; /* done() queues it, in the foreground */
    q->bg_live--;
    ring_push(&q->fg, it);
    kick(q);
    return;
  }
  it->dirty = 1;
  if (it->processing)
    return; /* queued again by done() */
  ring_push(&q->fg, it);
  kick(q);
}

static void enqueue_background(amc_queue_t *q, item_t *it) {
  if (it->dirty)
    return; /* deduplicated (in whichever lane) */
  it->dirty = 1;
  it->background = 1;
  if (it->processing)
    return; /* queued again by done(), in the background */
  line_up(q, it);
  kick(q);
}

static void on_timer(uv_timer_t *h) {
  amc_queue_t *q = h->data;
  uint64_t now = uv_now(q->loop);
  while (q->heap_len > 0 && q->heap[0]->deadline <= now) {
    item_t *it = q->heap[0];
    heap_remove(q, it);
    enqueue(q, it);
  }
  arm_timer(q);
}

/* ------------------------------------------------------------------------ */
/* API */

amc_queue_t *amc_queue_new(uv_loop_t *loop, const amc_queue_options_t *opts,
                           amc_queue_process_fn process, void *data) {
  amc_queue_t *q = calloc(1, sizeof *q);
  if (!q)
    return NULL;
  q->loop = loop;
  q->process = process;
  q->data = data;
  if (opts)
    q->opt = *opts;
  if (q->opt.max_in_flight == 0)
    q->opt.max_in_flight = 1;
  if (q->opt.base_delay_ms == 0)
    q->opt.base_delay_ms = 5;
  if (q->opt.max_delay_ms == 0)
    q->opt.max_delay_ms = 1000 * 1000;
  if (q->opt.qps == 0)
    q->opt.qps = 10;
  if (q->opt.burst == 0)
    q->opt.burst = 100;
  q->tokens = q->opt.burst;
  q->bucket_ts_us = uv_hrtime() / 1000;
  /* Both inits only fill in structures; they cannot fail on Unix. */
  uv_idle_init(loop, &q->idle);
  uv_timer_init(loop, &q->timer);
  q->idle.data = q;
  q->timer.data = q;
  return q;
}

int amc_queue_add(amc_queue_t *q, const char *key) {
  if (q->shut_down)
    return -1;
  enqueue(q, item_get(q, key, 1));
  return 0;
}

int amc_queue_add_background(amc_queue_t *q, const char *key) {
  if (q->shut_down)
    return -1;
  enqueue_background(q, item_get(q, key, 1));
  return 0;
}

int amc_queue_add_after(amc_queue_t *q, const char *key, uint64_t delay_ms) {
  if (q->shut_down)
    return -1;
  if (delay_ms == 0)
    return amc_queue_add(q, key);
  item_t *it = item_get(q, key, 1);
  uint64_t dl = uv_now(q->loop) + delay_ms;
  if (it->heap_idx >= 0) {
    if (dl >= it->deadline)
      return 0; /* already waiting with an earlier deadline */
    it->deadline = dl;
    heap_up(q, (size_t)it->heap_idx);
  } else {
    it->deadline = dl;
    it->seq = q->seq++;
    heap_push(q, it);
  }
  arm_timer(q);
  return 0;
}

/* Delay the global bucket imposes on one more event, reserving its token. */
static uint64_t bucket_delay_ms(amc_queue_t *q) {
  if (q->opt.qps < 0)
    return 0;
  uint64_t now = uv_hrtime() / 1000;
  double elapsed = (double)(now - q->bucket_ts_us) / 1e6;
  q->bucket_ts_us = now;
  q->tokens += elapsed * q->opt.qps;
  if (q->tokens > q->opt.burst)
    q->tokens = q->opt.burst;
  q->tokens -= 1;
  if (q->tokens >= 0)
    return 0;
  /* Round up so that the token really exists when the delay ends. */
  double wait_ms = -q->tokens / q->opt.qps * 1000.0;
  uint64_t ms = (uint64_t)wait_ms;
  return (double)ms < wait_ms ? ms + 1 : ms;
}

int64_t amc_queue_add_rate_limited(amc_queue_t *q, const char *key) {
  if (q->shut_down)
    return -1;
  item_t *it = item_get(q, key, 1);
  uint64_t d = q->opt.base_delay_ms;
  for (unsigned i = 0; i < it->failures && d < q->opt.max_delay_ms; i++)
    d *= 2;
  if (d > q->opt.max_delay_ms)
    d = q->opt.max_delay_ms;
  it->failures++;
  uint64_t b = bucket_delay_ms(q);
  if (b > d)
    d = b;
  amc_queue_add_after(q, key, d);
  return (int64_t)d;
}

void amc_queue_forget(amc_queue_t *q, const char *key) {
  item_t *it = item_get(q, key, 0);
  if (!it)
    return;
  it->failures = 0;
  item_maybe_free(q, it);
}

unsigned amc_queue_num_requeues(amc_queue_t *q, const char *key) {
  item_t *it = item_get(q, key, 0);
  return it ? it->failures : 0;
}

void amc_queue_done(amc_queue_t *q, const char *key) {
  item_t *it = item_get(q, key, 0);
  if (!it || !it->processing)
    return;
  it->processing = 0;
  q->in_flight--;
  if (it->dirty && !q->shut_down) {
    line_up(q, it);
  } else {
    it->dirty = 0;
    it->background = 0;
  }
  item_maybe_free(q, it);
  kick(q);
}

size_t amc_queue_len(const amc_queue_t *q) {
  return q->fg.len + q->bg_live;
}

size_t amc_queue_in_flight(const amc_queue_t *q) {
  return q->in_flight;
}

size_t amc_queue_waiting(const amc_queue_t *q) {
  return q->heap_len;
}

int amc_queue_is_queued(const amc_queue_t *q, const char *key) {
  item_t *it = amc_strmap_get(&q->items, key);
  return it && it->dirty && !it->processing;
}

void amc_queue_shutdown(amc_queue_t *q, amc_queue_drained_fn drained,
                        void *data) {
  if (q->shut_down)
    return;
  q->shut_down = 1;
  q->drained = drained;
  q->drained_data = data;
  /* Drop queued and waiting keys: nothing will process them. */
  item_t *it;
  while ((it = ring_pop(&q->fg)) != NULL) {
    it->dirty = 0;
    it->background = 0;
    item_maybe_free(q, it);
  }
  while ((it = ring_pop(&q->bg)) != NULL) {
    it->bg_refs--;
    if (!it->processing) {
      it->dirty = 0;
      it->background = 0;
    }
    item_maybe_free(q, it);
  }
  q->bg_live = 0;
  while (q->heap_len > 0) {
    it = q->heap[0];
    heap_remove(q, it);
    item_maybe_free(q, it);
  }
  if (!q->closing_handles)
    uv_timer_stop(&q->timer);
  kick(q);
}

static void on_handle_closed(uv_handle_t *h) {
  amc_queue_t *q = h->data;
  if (--q->closing_handles > 0)
    return;
  amc_strmap_clear(&q->items, free);
  free(q->fg.v);
  free(q->bg.v);
  free(q->heap);
  free(q);
}

void amc_queue_close(amc_queue_t *q) {
  q->drained_called = 1; /* no drained callback once closing */
  amc_queue_shutdown(q, NULL, NULL);
  q->closing_handles = 2;
  uv_close((uv_handle_t *)&q->idle, on_handle_closed);
  uv_close((uv_handle_t *)&q->timer, on_handle_closed);
}
