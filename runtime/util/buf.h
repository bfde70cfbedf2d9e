/* buf.h - a growable byte buffer (length-carrying, always NUL-terminated).
 *
 * Ownership: an amc_buf_t owns `data`; amc_buf_free releases it and leaves an
 * empty buffer that may be reused. Appending never fails: allocation failure
 * aborts the process (amc treats out-of-memory in the runtime as fatal; Lua
 * memory is capped separately). `data` may move on every append, so never
 * keep pointers into it across appends. */
#ifndef AMC_UTIL_BUF_H
#define AMC_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

typedef struct {
  char *data; /* NUL-terminated; NULL until the first append */
  size_t len;
  size_t cap;
} amc_buf_t;

#define AMC_BUF_INIT {NULL, 0, 0}

void amc_buf_append(amc_buf_t *b, const void *p, size_t n);
void amc_buf_puts(amc_buf_t *b, const char *s);
void amc_buf_putc(amc_buf_t *b, char c);
void amc_buf_printf(amc_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void amc_buf_vprintf(amc_buf_t *b, const char *fmt, va_list ap);
/* Makes room for `n` more bytes and returns where they go; the caller writes
 * them and calls amc_buf_commit(b, n). */
char *amc_buf_reserve(amc_buf_t *b, size_t n);
void amc_buf_commit(amc_buf_t *b, size_t n);
void amc_buf_reset(amc_buf_t *b); /* len = 0, keeps the memory */
void amc_buf_free(amc_buf_t *b);
/* Gives the caller the malloc'd string (never NULL) and empties the buffer. */
char *amc_buf_steal(amc_buf_t *b);

/* Encoders' appends: without a call when the buffer has room (the common
 * case), else amc_buf_putc / amc_buf_append. They leave the text
 * unterminated (the room for the NUL stays reserved): the caller
 * terminates it once at the end (`b->data[b->len] = '\0'`, or any other
 * append). */
static inline void amc_buf_put1(amc_buf_t *b, char c) {
  if (b->len + 2 <= b->cap)
    b->data[b->len++] = c;
  else
    amc_buf_putc(b, c);
}

static inline void amc_buf_putn(amc_buf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 <= b->cap) {
    memcpy(b->data + b->len, s, n);
    b->len += n;
  } else {
    amc_buf_append(b, s, n);
  }
}

/* Reads a whole file into `b` (appending). Returns 0, or -errno. */
int amc_buf_read_file(amc_buf_t *b, const char *path);

#endif
