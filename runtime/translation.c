/* translation.c - releasing a translation's results. */
#include "translation.h"
#include "util/hash.h"

#include <stdint.h>
#include <stdlib.h>

void amc_diags_free(amc_diag_t *diags, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(diags[i].kind);
    free(diags[i].namespace_);
    free(diags[i].name);
    free(diags[i].field);
    free(diags[i].message);
  }
  free(diags);
}

void amc_reads_free(amc_read_t *reads, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(reads[i].kind);
    free(reads[i].namespace_);
    free(reads[i].name);
    free(reads[i].field);
    free(reads[i].label);
    free(reads[i].value);
  }
  free(reads);
}

void amc_translation_free(amc_translation_t *t) {
  if (!t)
    return;
  for (size_t i = 0; i < t->n_objects; i++) {
    free(t->objects[i].type);
    free(t->objects[i].name);
    free(t->objects[i].json);
    free(t->objects[i].tenant_ref);
  }
  free(t->objects);
  amc_diags_free(t->diags, t->n_diags);
  amc_reads_free(t->reads, t->n_reads);
  free(t->key);
  free(t->error);
  free(t);
}

/* 64-bit FNV-1a (util/hash.h; its values are stored on AVI objects:
 * they must never change). */
uint64_t amc_object_cksum64(const char *json, size_t len) {
  return amc_fnv64(json, len);
}

void amc_object_cksum_hex(uint64_t h, char out[17]) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--, h >>= 4)
    out[i] = hex[h & 15];
  out[16] = '\0';
}

void amc_object_cksum(const char *json, size_t len, char out[17]) {
  amc_object_cksum_hex(amc_object_cksum64(json, len), out);
}
