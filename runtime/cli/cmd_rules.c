/* cmd_rules.c - `amc rules test`: golden cases for rule authors.
 *
 * A case is a directory holding the input objects (`input.yaml`, or an
 * `input/` directory) and the expected output (`expected.json`), optionally
 * `settings.json` (settings overrides; the cluster name defaults to
 * "golden"). The case runs exactly as `amc translate` would and its output
 * must equal expected.json byte for byte (private keys are not redacted:
 * fixture keys are test data). */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/translate_run.h"
#include "settings.h"
#include "util/buf.h"

#define DIFF_CONTEXT   3
#define DIFF_MAX_CELLS 16000000u
#define DIFF_MAX_LINES 300

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: amc rules test [--rules DIR] [--update] [CASES_DIR]\n"
      "\n"
      "Runs every golden case under CASES_DIR (default tests/golden/cases).\n"
      "A case is a directory with input.yaml (or an input/ directory of\n"
      "YAML/JSON files), expected.json and optionally settings.json (the\n"
      "cluster name defaults to \"golden\"). Each case is translated like\n"
      "`amc translate` and compared byte for byte with expected.json;\n"
      "failures show a line diff (- expected, + actual).\n"
      "\n"
      "options:\n"
      "  --rules DIR   rule files (default: ./rules if it exists, else\n"
      "                %s)\n"
      "  --update      write the actual output to expected.json\n"
      "  -h, --help    this text\n"
      "\n"
      "exit status: 0 all cases pass, 1 a case failed, 2 usage error\n",
      AMC_RULES_DIR);
}

/* ------------------------------------------------------------------------ */
/* Line diff                                                                 */

typedef struct {
  const char **s;
  size_t *len;
  size_t n;
} lines_t;

static void split_lines(const char *text, size_t len, lines_t *l) {
  size_t cap = 64;
  l->s = malloc(cap * sizeof *l->s);
  l->len = malloc(cap * sizeof *l->len);
  l->n = 0;
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (l->n == cap) {
      cap *= 2;
      l->s = realloc(l->s, cap * sizeof *l->s);
      l->len = realloc(l->len, cap * sizeof *l->len);
    }
    if (!l->s || !l->len)
      abort();
    l->s[l->n] = p;
    l->len[l->n] = n;
    l->n++;
    p += n + 1;
  }
}

static int line_eq(const lines_t *a, size_t i, const lines_t *b, size_t j) {
  return a->len[i] == b->len[j] && memcmp(a->s[i], b->s[j], a->len[i]) == 0;
}

typedef struct {
  char op;     /* ' ', '-', '+' */
  size_t a, b; /* line index in a (for ' ', '-') and b (for ' ', '+') */
} edit_t;

/* Edit script from a to b: common prefix/suffix, LCS in between. */
static edit_t *diff_lines(const lines_t *a, const lines_t *b, size_t *n_out) {
  size_t pre = 0;
  while (pre < a->n && pre < b->n && line_eq(a, pre, b, pre))
    pre++;
  size_t suf = 0;
  while (suf < a->n - pre && suf < b->n - pre &&
         line_eq(a, a->n - 1 - suf, b, b->n - 1 - suf))
    suf++;
  size_t na = a->n - pre - suf, nb = b->n - pre - suf;
  edit_t *e = malloc((a->n + b->n + 1) * sizeof *e);
  if (!e)
    abort();
  size_t k = 0;
  for (size_t i = 0; i < pre; i++)
    e[k++] = (edit_t){' ', i, i};
  if ((na + 1) * (nb + 1) <= DIFF_MAX_CELLS) {
    uint32_t *t = calloc((na + 1) * (nb + 1), sizeof *t);
    if (!t)
      abort();
#define T(i, j) t[(i) * (nb + 1) + (j)]
    for (size_t i = na; i-- > 0;)
      for (size_t j = nb; j-- > 0;)
        T(i, j) = line_eq(a, pre + i, b, pre + j)
                      ? T(i + 1, j + 1) + 1
                      : (T(i + 1, j) > T(i, j + 1) ? T(i + 1, j) : T(i, j + 1));
    size_t i = 0, j = 0;
    while (i < na || j < nb) {
      if (i < na && j < nb && line_eq(a, pre + i, b, pre + j)) {
        e[k++] = (edit_t){' ', pre + i, pre + j};
        i++, j++;
      } else if (j < nb && (i == na || T(i, j + 1) >= T(i + 1, j))) {
        e[k++] = (edit_t){'+', pre + i, pre + j};
        j++;
      } else {
        e[k++] = (edit_t){'-', pre + i, pre + j};
        i++;
      }
    }
#undef T
    free(t);
  } else {
    for (size_t i = 0; i < na; i++)
      e[k++] = (edit_t){'-', pre + i, pre};
    for (size_t j = 0; j < nb; j++)
      e[k++] = (edit_t){'+', pre + na, pre + j};
  }
  for (size_t i = 0; i < suf; i++)
    e[k++] = (edit_t){' ', a->n - suf + i, b->n - suf + i};
  *n_out = k;
  return e;
}

static void print_diff(const char *exp, size_t exp_len, const char *act,
                       size_t act_len) {
  lines_t a, b;
  split_lines(exp, exp_len, &a);
  split_lines(act, act_len, &b);
  size_t n;
  edit_t *e = diff_lines(&a, &b, &n);
  printf("    --- expected.json\n    +++ actual\n");
  size_t printed = 0, i = 0;
  while (i < n) {
    if (e[i].op == ' ') {
      i++;
      continue;
    }
    /* A hunk: from DIFF_CONTEXT before this change to DIFF_CONTEXT after
     * the last change that is close enough. */
    size_t start = i >= DIFF_CONTEXT ? i - DIFF_CONTEXT : 0;
    size_t end = i;
    for (size_t j = i; j < n; j++) {
      if (e[j].op != ' ')
        end = j;
      else if (j - end > 2 * DIFF_CONTEXT)
        break;
    }
    size_t stop = end + DIFF_CONTEXT + 1 < n ? end + DIFF_CONTEXT + 1 : n;
    size_t la = 0, lb = 0;
    for (size_t j = start; j < stop; j++) {
      la += e[j].op != '+';
      lb += e[j].op != '-';
    }
    printf("    @@ -%zu,%zu +%zu,%zu @@\n", e[start].a + 1, la, e[start].b + 1,
           lb);
    for (size_t j = start; j < stop; j++) {
      if (printed++ >= DIFF_MAX_LINES) {
        printf("    ... (diff truncated)\n");
        goto out;
      }
      if (e[j].op == '+')
        printf("    +%.*s\n", (int)b.len[e[j].b], b.s[e[j].b]);
      else
        printf("    %c%.*s\n", e[j].op, (int)a.len[e[j].a], a.s[e[j].a]);
    }
    i = stop;
  }
out:
  free(e);
  free(a.s);
  free(a.len);
  free(b.s);
  free(b.len);
}

/* ------------------------------------------------------------------------ */

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int write_file(const char *path, const char *data, size_t len) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f)
    return -1;
  int ok = fwrite(data, 1, len, f) == len;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    remove(tmp);
    return -1;
  }
  return 0;
}

/* Runs one case; returns 1 pass, 0 fail. */
static int run_case(const char *dir, const char *name, const char *rules,
                    int update) {
  char path[4096], input[4200], expected[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(expected, sizeof expected, "%s/expected.json", path);
  snprintf(input, sizeof input, "%s/input.yaml", path);
  if (!is_file(input)) {
    snprintf(input, sizeof input, "%s/input", path);
    if (!is_dir(input)) {
      printf("FAIL %s\n    no input.yaml or input/ in %s\n", name, path);
      return 0;
    }
  }
  amc_settings_t settings;
  amc_settings_init(&settings);
  amc_settings_set(&settings, "cluster", "golden");
  char serr[1024], sfile[4200];
  snprintf(sfile, sizeof sfile, "%s/settings.json", path);
  if (is_file(sfile) &&
      amc_settings_load_file(&settings, sfile, serr, sizeof serr) < 0) {
    printf("FAIL %s\n    %s\n", name, serr);
    amc_settings_free(&settings);
    return 0;
  }
  /* Goldens check the whole output, private keys included: fixture keys
   * are test data, and the key mapping is part of what a case verifies. */
  amc_translate_run_opts_t o = {
      .rules_dir = rules, .settings = &settings, .show_secrets = 1};
  amc_buf_t out = AMC_BUF_INIT, err = AMC_BUF_INIT, exp = AMC_BUF_INIT;
  char *paths[1] = {input};
  int rc = amc_translate_run(paths, 1, &o, &out, &err);
  int pass = 0;
  if (rc != AMC_EXIT_OK) {
    printf("FAIL %s\n", name);
    const char *p = err.data ? err.data : "";
    while (*p) {
      const char *nl = strchr(p, '\n');
      size_t n = nl ? (size_t)(nl - p) : strlen(p);
      printf("    %.*s\n", (int)n, p);
      p += n + (nl ? 1 : 0);
    }
    goto done;
  }
  if (update) {
    int have = amc_buf_read_file(&exp, expected) == 0;
    if (have && exp.len == out.len &&
        memcmp(exp.data, out.data, out.len) == 0) {
      printf("PASS %s\n", name);
    } else if (write_file(expected, out.data, out.len) < 0) {
      printf("FAIL %s\n    cannot write %s: %s\n", name, expected,
             strerror(errno));
      goto done;
    } else {
      printf("UPDATED %s\n", name);
    }
    pass = 1;
    goto done;
  }
  int r = amc_buf_read_file(&exp, expected);
  if (r < 0) {
    printf("FAIL %s\n    %s: %s (run with --update to create it)\n", name,
           expected, strerror(-r));
    goto done;
  }
  if (exp.len == out.len && memcmp(exp.data, out.data, out.len) == 0) {
    printf("PASS %s\n", name);
    pass = 1;
    goto done;
  }
  printf("FAIL %s\n", name);
  print_diff(exp.data ? exp.data : "", exp.len, out.data, out.len);
done:
  amc_buf_free(&out);
  amc_buf_free(&err);
  amc_buf_free(&exp);
  amc_settings_free(&settings);
  return pass;
}

static int cmd_test(int argc, char **argv) {
  static const struct option longopts[] = {
      {"rules", required_argument, NULL, 'r'},
      {"update", no_argument, NULL, 'u'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *rules = NULL;
  int update = 0;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
    switch (c) {
    case 'r':
      rules = optarg;
      break;
    case 'u':
      update = 1;
      break;
    case 'h':
      usage(stdout);
      return AMC_EXIT_OK;
    default:
      fprintf(stderr, "amc rules test: unknown option or missing value: %s\n",
              argv[optind - 1]);
      return AMC_EXIT_USAGE;
    }
  }
  if (argc - optind > 1) {
    fprintf(stderr, "amc rules test: at most one CASES_DIR\n");
    return AMC_EXIT_USAGE;
  }
  const char *dir = optind < argc ? argv[optind] : "tests/golden/cases";
  if (!rules)
    rules = amc_translate_default_rules_dir();
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "amc rules test: %s: %s\n", dir, strerror(errno));
    return AMC_EXIT_USAGE;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    if (de->d_name[0] == '.' || !is_dir(p))
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      names = realloc(names, cap * sizeof *names);
      if (!names)
        abort();
    }
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  if (n == 0) {
    fprintf(stderr, "amc rules test: no cases (directories) in %s\n", dir);
    free(names);
    return AMC_EXIT_USAGE;
  }
  qsort(names, n, sizeof *names, name_cmp);
  size_t passed = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    if (run_case(dir, names[i], rules, update))
      passed++;
    else
      failed++;
    fflush(stdout);
    free(names[i]);
  }
  free(names);
  printf("%zu passed, %zu failed\n", passed, failed);
  return failed ? AMC_EXIT_FAIL : AMC_EXIT_OK;
}

int amc_cmd_rules(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? AMC_EXIT_USAGE : AMC_EXIT_OK;
  }
  if (strcmp(argv[1], "test") == 0)
    return cmd_test(argc - 1, argv + 1);
  fprintf(stderr, "amc rules: unknown subcommand '%s' (try 'amc rules test')\n",
          argv[1]);
  return AMC_EXIT_USAGE;
}
