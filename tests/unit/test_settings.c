/* test_settings.c - translation settings: defaults, files, overrides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "settings.h"

static char *write_tmp(const char *suffix, const char *text) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/amc-settings-XXXXXX%s", suffix);
  int fd = mkstemps(path, (int)strlen(suffix));
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

/* The settings as rules see them, as canonical JSON. */
static char *as_json(const amc_settings_t *s) {
  lua_State *L = luaL_newstate();
  amc_settings_push(L, s);
  amc_buf_t b = AMC_BUF_INIT;
  char err[128];
  assert_int_equal(amc_json_encode(L, -1, &b, err, sizeof err), 0);
  lua_close(L);
  return amc_buf_steal(&b);
}

static void test_defaults_and_set(void **state) {
  (void)state;
  amc_settings_t s;
  amc_settings_init(&s);
  char *j = as_json(&s);
  assert_string_equal(j, "{\"cloud\":\"Default-Cloud\",\"cluster\":\"default\","
                         "\"domain\":\"cluster.local\",\"ingress_selector\":{"
                         "\"istio\":\"ingressgateway\"},\"se_group\":"
                         "\"Default-Group\",\"tenant\":\"admin\",\"vrf\":"
                         "\"global\"}");
  free(j);
  assert_int_equal(amc_settings_set(&s, "cluster", "east"), 0);
  assert_int_equal(amc_settings_set(&s, "cluster", ""), -1);
  assert_int_equal(amc_settings_set(&s, "nope", "x"), -1);
  assert_string_equal(s.cluster, "east");
  amc_settings_free(&s);
}

static void test_files(void **state) {
  (void)state;
  amc_settings_t s;
  amc_settings_init(&s);
  char err[512];
  char *y = write_tmp(".yaml", "cluster: west\ntenant: t1\n"
                               "ingress_selector: {app: gw, tier: edge}\n"
                               "vip_network: net-1\nvip_prefix: 24\n");
  assert_int_equal(amc_settings_load_file(&s, y, err, sizeof err), 0);
  unlink(y);
  char *j = as_json(&s);
  assert_string_equal(j, "{\"cloud\":\"Default-Cloud\",\"cluster\":\"west\","
                         "\"domain\":\"cluster.local\",\"ingress_selector\":{"
                         "\"app\":\"gw\",\"tier\":\"edge\"},\"se_group\":"
                         "\"Default-Group\",\"tenant\":\"t1\",\"vip_network\":"
                         "\"net-1\",\"vip_prefix\":24,\"vrf\":\"global\"}");
  free(j);
  /* JSON file applied on top. */
  char *js = write_tmp(".json", "{\"cluster\": \"golden\", \"vrf\": \"v2\"}");
  assert_int_equal(amc_settings_load_file(&s, js, err, sizeof err), 0);
  unlink(js);
  assert_string_equal(s.cluster, "golden");
  assert_string_equal(s.vrf, "v2");
  assert_string_equal(s.tenant, "t1");
  amc_settings_free(&s);
}

static void test_file_errors(void **state) {
  (void)state;
  amc_settings_t s;
  amc_settings_init(&s);
  char err[512], want[600];
  char *p = write_tmp(".yaml", "cluster: [a]\n");
  assert_int_equal(amc_settings_load_file(&s, p, err, sizeof err), -1);
  snprintf(want, sizeof want, "%s: cluster must be a non-empty string", p);
  assert_string_equal(err, want);
  unlink(p);
  p = write_tmp(".yaml", "ingress_selector: [a]\n");
  assert_int_equal(amc_settings_load_file(&s, p, err, sizeof err), -1);
  snprintf(want, sizeof want,
           "%s: ingress_selector must be a mapping of label to value "
           "(strings)",
           p);
  assert_string_equal(err, want);
  unlink(p);
  p = write_tmp(".yaml", "extra: {a: 1}\n");
  assert_int_equal(amc_settings_load_file(&s, p, err, sizeof err), -1);
  snprintf(want, sizeof want,
           "%s: setting 'extra' must be a string, number or boolean", p);
  assert_string_equal(err, want);
  unlink(p);
  p = write_tmp(".json", "{\"cluster\": }");
  assert_int_equal(amc_settings_load_file(&s, p, err, sizeof err), -1);
  snprintf(want, sizeof want, "%s: line 1, column 13: unexpected character '}'",
           p);
  assert_string_equal(err, want);
  unlink(p);
  p = write_tmp(".yaml", "- a\n");
  assert_int_equal(amc_settings_load_file(&s, p, err, sizeof err), -1);
  snprintf(want, sizeof want, "%s: settings must be a mapping", p);
  assert_string_equal(err, want);
  unlink(p);
  assert_int_equal(
      amc_settings_load_file(&s, "/nonexistent/s.yaml", err, sizeof err), -1);
  assert_string_equal(err, "/nonexistent/s.yaml: No such file or directory");
  /* Nothing changed by the failed loads. */
  assert_string_equal(s.cluster, "default");
  amc_settings_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_set),
      cmocka_unit_test(test_files),
      cmocka_unit_test(test_file_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
