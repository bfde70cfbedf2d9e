/* translation.c - releasing a translation's results. */
#include "translation.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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
  for (size_t i = 0; i < t->n_diags; i++) {
    free(t->diags[i].kind);
    free(t->diags[i].namespace_);
    free(t->diags[i].name);
    free(t->diags[i].field);
    free(t->diags[i].message);
  }
  free(t->diags);
  for (size_t i = 0; i < t->n_reads; i++) {
    free(t->reads[i].kind);
    free(t->reads[i].namespace_);
    free(t->reads[i].name);
    free(t->reads[i].field);
    free(t->reads[i].label);
    free(t->reads[i].value);
  }
  free(t->reads);
  free(t->key);
  free(t->error);
  free(t);
}

void amc_object_cksum(const char *json, size_t len, char out[17]) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)json[i];
    h *= 1099511628211ull;
  }
  snprintf(out, 17, "%016llx", (unsigned long long)h);
}
