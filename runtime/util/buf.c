/* buf.c - growable byte buffer. */
#include "util/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void buf_grow(amc_buf_t *b, size_t extra) {
  size_t need = b->len + extra + 1;
  if (need <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    fprintf(stderr, "amc: out of memory (%zu bytes)\n", cap);
    abort();
  }
  b->data = p;
  b->cap = cap;
}

char *amc_buf_reserve(amc_buf_t *b, size_t n) {
  buf_grow(b, n);
  return b->data + b->len;
}

void amc_buf_commit(amc_buf_t *b, size_t n) {
  b->len += n;
  b->data[b->len] = '\0';
}

void amc_buf_append(amc_buf_t *b, const void *p, size_t n) {
  buf_grow(b, n);
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void amc_buf_puts(amc_buf_t *b, const char *s) {
  amc_buf_append(b, s, strlen(s));
}

void amc_buf_putc(amc_buf_t *b, char c) {
  amc_buf_append(b, &c, 1);
}

void amc_buf_vprintf(amc_buf_t *b, const char *fmt, va_list ap) {
  va_list cp;
  va_copy(cp, ap);
  int n = vsnprintf(NULL, 0, fmt, cp);
  va_end(cp);
  if (n <= 0)
    return;
  buf_grow(b, (size_t)n);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void amc_buf_printf(amc_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  amc_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void amc_buf_reset(amc_buf_t *b) {
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

void amc_buf_free(amc_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *amc_buf_steal(amc_buf_t *b) {
  if (!b->data)
    amc_buf_append(b, "", 0);
  char *p = b->data;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

/* Straight into the buffer, sized from the file's size: the fs source
 * reads a saved file on every change (stdio's FILE, its buffer and a
 * growing copy cost several times the read). Reads to the end whatever
 * the size said (a file may grow meanwhile; /proc files say 0). */
int amc_buf_read_file(amc_buf_t *b, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  size_t want = 4096;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
    want = (size_t)st.st_size + 1; /* (+1: the read that sees the end) */
  int err = 0;
  for (;;) {
    ssize_t n = read(fd, amc_buf_reserve(b, want), want);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      err = n < 0 ? -EIO : 0;
      break;
    }
    amc_buf_commit(b, (size_t)n);
    if (want < 65536)
      want = 65536;
  }
  close(fd);
  if (b->data) /* (reserved, maybe nothing committed) */
    b->data[b->len] = '\0';
  return err;
}
