/* tree_files.h - the project's own files of some kinds, for the tests that
 * run every manifest of the tree through a path (test_yaml_fast,
 * test_canon). Include after cmocka.h; needs AMC_SOURCE_DIR.
 *
 *   tree_files_t f = {0};
 *   tree_files_find(&f, (const char *[]){"examples", "tests", NULL},
 *                   (const char *[]){".yaml", ".yml", NULL});
 *   ... f.paths[0 .. f.n) ...
 *   tree_files_free(&f);
 *
 * Hidden entries, build/ and node_modules/ are passed over; directories
 * are followed 8 deep. Paths are malloc'd; tree_files_free frees them. */
#ifndef AMC_TESTS_TREE_FILES_H
#define AMC_TESTS_TREE_FILES_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
  char **paths;
  size_t n, cap;
} tree_files_t;

static inline int tree_has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n > m && strcmp(s + n - m, suffix) == 0;
}

static void tree_files_walk(tree_files_t *f, const char *dir,
                            const char *const *suffixes, int depth) {
  DIR *d = opendir(dir);
  if (!d || depth > 8) {
    if (d)
      closedir(d);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' || strcmp(e->d_name, "build") == 0 ||
        strcmp(e->d_name, "node_modules") == 0)
      continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) != 0)
      continue;
    if (S_ISDIR(st.st_mode)) {
      tree_files_walk(f, path, suffixes, depth + 1);
      continue;
    }
    int wanted = 0;
    for (size_t i = 0; suffixes[i] && !wanted; i++)
      wanted = tree_has_suffix(e->d_name, suffixes[i]);
    if (!wanted)
      continue;
    if (f->n == f->cap) {
      f->cap = f->cap ? f->cap * 2 : 64;
      f->paths = realloc(f->paths, f->cap * sizeof *f->paths);
      assert_non_null(f->paths);
    }
    f->paths[f->n++] = strdup(path);
  }
  closedir(d);
}

/* Appends the files below AMC_SOURCE_DIR/<each of dirs> whose names end in
 * one of `suffixes` (both lists NULL-terminated). */
static void tree_files_find(tree_files_t *f, const char *const *dirs,
                            const char *const *suffixes) {
  for (size_t i = 0; dirs[i]; i++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", AMC_SOURCE_DIR, dirs[i]);
    tree_files_walk(f, dir, suffixes, 0);
  }
}

static void tree_files_free(tree_files_t *f) {
  for (size_t i = 0; i < f->n; i++)
    free(f->paths[i]);
  free(f->paths);
  *f = (tree_files_t){0};
}

#endif
