/* text_mutate.h - random one-byte-ish edits of a text, for the tests that
 * run many variants of the tree's documents through two paths and compare
 * them (test_yaml_fast, test_canon). Deterministic: a fixed xorshift seed
 * per test program. `out` needs room for n + 8 bytes. */
#ifndef AMC_TESTS_TEXT_MUTATE_H
#define AMC_TESTS_TEXT_MUTATE_H

#include <stdint.h>
#include <string.h>

static uint64_t mutate_state = 0x9E3779B97F4A7C15ull;

static uint64_t mutate_rand(void) {
  mutate_state ^= mutate_state << 13;
  mutate_state ^= mutate_state >> 7;
  mutate_state ^= mutate_state << 17;
  return mutate_state;
}

/* `ch` inserted at `at` (op 0), the byte at `at` deleted (op 1) or
 * replaced by `ch` (op 2). Returns the new length. */
static size_t mutate_edit(const char *s, size_t n, char *out, int op, size_t at,
                          char ch) {
  switch (op) {
  case 0:
    memcpy(out, s, at);
    out[at] = ch;
    memcpy(out + at + 1, s + at, n - at);
    return n + 1;
  case 1:
    if (!n)
      return 0;
    memcpy(out, s, at);
    memcpy(out + at, s + at + 1, n - at - 1);
    return n - 1;
  default:
    memcpy(out, s, n);
    if (n)
      out[at] = ch;
    return n;
  }
}

/* One random edit of a YAML text: a byte of YAML's syntax inserted,
 * deleted or replaced, or the line holding `at` indented one or two
 * spaces deeper or one less. */
static inline size_t mutate_yaml(const char *s, size_t n, char *out) {
  static const char alphabet[] = " -:#'\"{}[],&*!|>?%@`\n\t~.0123456789aeyn\\x";
  char ch = alphabet[mutate_rand() % (sizeof alphabet - 1)];
  size_t at = n ? mutate_rand() % n : 0;
  int op = (int)(mutate_rand() % 5);
  if (op < 3)
    return mutate_edit(s, n, out, op, at, ch);
  while (at > 0 && s[at - 1] != '\n')
    at--;
  if (op == 3) {
    size_t k = 1 + mutate_rand() % 2;
    memcpy(out, s, at);
    memset(out + at, ' ', k);
    memcpy(out + at + k, s + at, n - at);
    return n + k;
  }
  memcpy(out, s, n);
  if (at < n && s[at] == ' ') {
    memcpy(out + at, s + at + 1, n - at - 1);
    return n - 1;
  }
  return n;
}

#endif
