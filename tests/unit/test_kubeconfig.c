/* test_kubeconfig.c - kubeconfig files, in-cluster config, token source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kube/kubeconfig.h"

static char fx[1024];

static const char *fixture(const char *name) {
  const char *src = getenv("AMC_SOURCE_DIR");
  snprintf(fx, sizeof fx, "%s/tests/unit/fixtures/kube/%s", src ? src : ".",
           name);
  return fx;
}

static void test_current_context_with_cert_data(void **state) {
  (void)state;
  amc_kubeconfig_t c;
  char err[256] = "";
  assert_int_equal(
      amc_kubeconfig_load(fixture("certs.yaml"), NULL, &c, err, sizeof err), 0);
  assert_string_equal(c.context, "dev");
  assert_string_equal(c.server, "https://127.0.0.1:6443"); /* '/' trimmed */
  assert_string_equal(c.namespace_, "team-a");
  assert_null(c.ca_file);
  assert_non_null(strstr(c.ca_pem, "FAKECA"));
  assert_non_null(strstr(c.cert_pem, "BEGIN CERTIFICATE"));
  assert_non_null(strstr(c.key_pem, "FAKEKEY"));
  assert_null(c.token);
  assert_int_equal(c.insecure, 0);
  amc_kubeconfig_free(&c);
}

static void test_named_context_relative_paths(void **state) {
  (void)state;
  amc_kubeconfig_t c;
  char err[256] = "";
  const char *path = fixture("certs.yaml");
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  assert_int_equal(amc_kubeconfig_load(path, "prod", &c, err, sizeof err), 0);
  char want[1200];
  snprintf(want, sizeof want, "%s/certs/ca.crt", dir);
  assert_string_equal(c.ca_file, want);
  snprintf(want, sizeof want, "%s/certs/client.crt", dir);
  assert_string_equal(c.cert_file, want);
  assert_string_equal(c.key_file, "/abs/client.key");
  assert_string_equal(c.tls_server_name, "kubernetes.default");
  assert_null(c.namespace_);
  amc_kubeconfig_free(&c);
}

static void test_token_file_and_insecure(void **state) {
  (void)state;
  amc_kubeconfig_t c;
  char err[256] = "";
  assert_int_equal(
      amc_kubeconfig_load(fixture("token.yaml"), NULL, &c, err, sizeof err), 0);
  assert_int_equal(c.insecure, 1);
  assert_non_null(strstr(c.token_file, "/fixtures/kube/sa/token"));
  amc_token_source_t *ts = amc_token_source_new(&c, 0);
  assert_string_equal(amc_token_source_get(ts, 0), "token-one");
  amc_token_source_free(ts);
  amc_kubeconfig_free(&c);
}

static void test_merge_first_wins(void **state) {
  (void)state;
  char paths[2200], a[1024];
  snprintf(a, sizeof a, "%s", fixture("merge-a.yaml"));
  snprintf(paths, sizeof paths, "%s:/nonexistent/skipped:%s", a,
           fixture("merge-b.yaml"));
  amc_kubeconfig_t c;
  char err[256] = "";
  assert_int_equal(amc_kubeconfig_load(paths, NULL, &c, err, sizeof err), 0);
  assert_string_equal(c.context, "from-a");
  assert_string_equal(c.server, "https://a.example:6443");
  assert_string_equal(c.token, "static-token-a");
  amc_kubeconfig_free(&c);
  /* A context from the second file; its cluster "shared" still comes from
   * the first file (first definition wins). */
  assert_int_equal(amc_kubeconfig_load(paths, "from-b", &c, err, sizeof err),
                   0);
  assert_string_equal(c.server, "https://a.example:6443");
  assert_string_equal(c.token, "static-token-b");
  amc_kubeconfig_free(&c);
  /* KUBECONFIG is used when no path is given. */
  setenv("KUBECONFIG", paths, 1);
  assert_int_equal(amc_kubeconfig_load(NULL, NULL, &c, err, sizeof err), 0);
  assert_string_equal(c.context, "from-a");
  amc_kubeconfig_free(&c);
  unsetenv("KUBECONFIG");
}

static void test_errors_name_file_and_field(void **state) {
  (void)state;
  amc_kubeconfig_t c;
  char err[512] = "";
  assert_int_equal(
      amc_kubeconfig_load(fixture("exec.yaml"), NULL, &c, err, sizeof err), -1);
  assert_non_null(strstr(err, "exec.yaml"));
  assert_non_null(strstr(err, "exec is not supported"));
  amc_kubeconfig_free(&c);
  assert_int_equal(
      amc_kubeconfig_load(fixture("certs.yaml"), "nope", &c, err, sizeof err),
      -1);
  assert_non_null(strstr(err, "context \"nope\" not found"));
  amc_kubeconfig_free(&c);
  assert_int_equal(
      amc_kubeconfig_load(fixture("bad.yaml"), NULL, &c, err, sizeof err), -1);
  assert_non_null(strstr(err, "bad.yaml: line"));
  amc_kubeconfig_free(&c);
  assert_int_equal(amc_kubeconfig_load(fixture("server-name.yaml"), NULL, &c,
                                       err, sizeof err),
                   -1);
  assert_non_null(strstr(err, "server-name.yaml: cluster \"k\": "
                              "tls-server-name \"kube api:443\" is not a "
                              "host name"));
  amc_kubeconfig_free(&c);
  assert_int_equal(
      amc_kubeconfig_load("/nonexistent/kc", NULL, &c, err, sizeof err), -1);
  assert_non_null(strstr(err, "/nonexistent/kc"));
  amc_kubeconfig_free(&c);
}

static void test_in_cluster(void **state) {
  (void)state;
  amc_kubeconfig_t c;
  char err[512] = "";
  char sa[1024];
  snprintf(sa, sizeof sa, "%s", fixture("sa"));
  unsetenv("KUBERNETES_SERVICE_HOST");
  assert_int_equal(amc_kubeconfig_in_cluster(sa, &c, err, sizeof err), -1);
  assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));
  amc_kubeconfig_free(&c);
  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  assert_int_equal(amc_kubeconfig_in_cluster(sa, &c, err, sizeof err), 0);
  assert_string_equal(c.server, "https://[fd00::1]:443");
  assert_string_equal(c.namespace_, "amc-system");
  assert_non_null(strstr(c.ca_file, "sa/ca.crt"));
  assert_non_null(strstr(c.token_file, "sa/token"));
  amc_kubeconfig_free(&c);
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("AMC_SERVICEACCOUNT_DIR", sa, 1);
  assert_int_equal(amc_kubeconfig_in_cluster(NULL, &c, err, sizeof err), 0);
  assert_string_equal(c.server, "https://10.96.0.1:443");
  amc_kubeconfig_free(&c);
  setenv("AMC_SERVICEACCOUNT_DIR", "/nonexistent/sa", 1);
  assert_int_equal(amc_kubeconfig_in_cluster(NULL, &c, err, sizeof err), -1);
  assert_non_null(strstr(err, "/nonexistent/sa/token"));
  amc_kubeconfig_free(&c);
  unsetenv("AMC_SERVICEACCOUNT_DIR");
}

static void write_file(const char *path, const char *s) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(s, f);
  fclose(f);
}

static void test_token_rotation(void **state) {
  (void)state;
  char dir[] = "/tmp/amc-kc-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/token", dir);
  write_file(path, "first\n");
  amc_kubeconfig_t c = {0};
  c.token_file = path;
  amc_token_source_t *ts = amc_token_source_new(&c, 60000);
  assert_string_equal(amc_token_source_get(ts, 1000), "first");
  write_file(path, "second\n");
  /* Cached within the refresh period... */
  assert_string_equal(amc_token_source_get(ts, 30000), "first");
  assert_int_equal(amc_token_source_reads(ts), 1);
  /* ...re-read at once after a 401... */
  assert_int_equal(amc_token_source_invalidate(ts), 1);
  assert_string_equal(amc_token_source_get(ts, 30001), "second");
  /* ...and after the refresh period. */
  write_file(path, "third");
  assert_string_equal(amc_token_source_get(ts, 90001), "third");
  assert_int_equal(amc_token_source_reads(ts), 3);
  /* A vanished file keeps the last good token. */
  unlink(path);
  assert_string_equal(amc_token_source_get(ts, 200000), "third");
  amc_token_source_free(ts);
  rmdir(dir);
  /* A static token never needs a re-read. */
  amc_kubeconfig_t s = {0};
  s.token = "static";
  ts = amc_token_source_new(&s, 0);
  assert_string_equal(amc_token_source_get(ts, 0), "static");
  assert_int_equal(amc_token_source_invalidate(ts), 0);
  amc_token_source_free(ts);
}

static void test_base64(void **state) {
  (void)state;
  size_t n;
  char *s = amc_base64_decode("aGVs\nbG8=", &n);
  assert_string_equal(s, "hello");
  assert_int_equal(n, 5);
  free(s);
  assert_null(amc_base64_decode("a*b", &n));
  assert_null(amc_base64_decode("aGVsbG8=x", &n));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_current_context_with_cert_data),
      cmocka_unit_test(test_named_context_relative_paths),
      cmocka_unit_test(test_token_file_and_insecure),
      cmocka_unit_test(test_merge_first_wins),
      cmocka_unit_test(test_errors_name_file_and_field),
      cmocka_unit_test(test_in_cluster),
      cmocka_unit_test(test_token_rotation),
      cmocka_unit_test(test_base64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
