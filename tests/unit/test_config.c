/* test_config.c - `amc run` configuration: precedence, validation, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "config.h"

static char err[512];

static int load(amc_config_t *c, char **argv, char **env) {
  int argc = 0;
  while (argv[argc])
    argc++;
  FILE *devnull = fopen("/dev/null", "w");
  int rc = amc_config_load(c, argc, argv, env, devnull, err, sizeof err);
  fclose(devnull);
  return rc;
}

#define ARGV(...) ((char *[]){"run", __VA_ARGS__ __VA_OPT__(, ) NULL})
#define ENV(...)  ((char *[]){__VA_ARGS__ __VA_OPT__(, ) NULL})

static void test_defaults_and_dry_run(void **state) {
  (void)state;
  amc_config_t c;
  assert_int_equal(
      load(&c, ARGV("--source", "fs://examples", "--dry-run"), ENV()), 0);
  assert_string_equal(c.fs_dir, "examples");
  assert_true(c.dry_run);
  assert_null(c.cloud_name); /* the settings' defaults apply */
  assert_null(c.avi_tenant);
  assert_int_equal(c.workers, 4);
  assert_int_equal(c.admin_port, 8081);
  assert_true(c.istio_enabled);
  assert_string_equal(c.log_format, "logfmt");
  assert_true(c.incremental); /* the memo is on by default */
  amc_config_free(&c);
  assert_int_equal(load(&c,
                        ARGV("--source", "fs://examples", "--dry-run",
                             "--incremental=false"),
                        ENV()),
                   0);
  assert_false(c.incremental);
  amc_config_free(&c);
}

static void test_original_env_variables(void **state) {
  (void)state;
  amc_config_t c;
  assert_int_equal(load(&c, ARGV("--source", "fs://x"),
                        ENV("CTRL_IPADDRESS=10.1.2.3", "CTRL_USERNAME=admin",
                            "CTRL_PASSWORD=s3cret", "CTRL_VERSION=22.1.3",
                            "CLOUD_NAME=vcenter", "ISTIO_ENABLED=false",
                            "MCP_URL=grpc://istiod:15010")),
                   0);
  assert_string_equal(c.avi_url, "https://10.1.2.3");
  assert_string_equal(c.avi_username, "admin");
  assert_string_equal(c.avi_password, "s3cret");
  assert_string_equal(c.avi_version, "22.1.3");
  assert_string_equal(c.cloud_name, "vcenter");
  assert_false(c.istio_enabled);
  assert_string_equal(c.mcp_url, "grpc://istiod:15010");
  amc_config_free(&c);
  /* MCP_URL alone selects the mcp source */
  assert_int_equal(load(&c, ARGV("--dry-run"), ENV("MCP_URL=grpc://x:1")), 0);
  assert_string_equal(c.source, "mcp");
  amc_config_free(&c);
}

static void test_precedence_flag_env_file(void **state) {
  (void)state;
  char path[] = "/tmp/amc-config-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char *yaml = "# amc run config\n"
                     "source: fs://from-file\n"
                     "cloud: file-cloud\n"
                     "workers: 7\n"
                     "dry-run: true\n"
                     "log-format: json\n";
  assert_int_equal(write(fd, yaml, strlen(yaml)), (int)strlen(yaml));
  close(fd);
  amc_config_t c;
  assert_int_equal(load(&c, ARGV("--config", path, "--workers=9"),
                        ENV("CLOUD_NAME=env-cloud")),
                   0);
  assert_string_equal(c.fs_dir, "from-file");     /* file */
  assert_string_equal(c.cloud_name, "env-cloud"); /* env beats file */
  assert_int_equal(c.workers, 9);                 /* flag beats file */
  assert_string_equal(c.log_format, "json");
  amc_config_free(&c);
  /* JSON is YAML too */
  fd = open(path, O_WRONLY | O_TRUNC);
  const char *json = "{\"source\": \"fs://j\", \"dry-run\": true}\n";
  assert_int_equal(write(fd, json, strlen(json)), (int)strlen(json));
  close(fd);
  assert_int_equal(load(&c, ARGV("--config", path), ENV()), 0);
  assert_string_equal(c.fs_dir, "j");
  amc_config_free(&c);
  unlink(path);
}

static void test_config_file_errors(void **state) {
  (void)state;
  char path[] = "/tmp/amc-config-XXXXXX";
  int fd = mkstemp(path);
  const char *yaml = "source: fs://x\nworkerz: 3\n";
  assert_int_equal(write(fd, yaml, strlen(yaml)), (int)strlen(yaml));
  close(fd);
  amc_config_t c;
  assert_int_equal(load(&c, ARGV("--config", path), ENV()), -1);
  char want[600];
  snprintf(want, sizeof want, "%s:2:1: unknown option 'workerz'", path);
  assert_string_equal(err, want);
  amc_config_free(&c);
  fd = open(path, O_WRONLY | O_TRUNC);
  yaml = "source: [a, b]\n";
  assert_int_equal(write(fd, yaml, strlen(yaml)), (int)strlen(yaml));
  close(fd);
  assert_int_equal(load(&c, ARGV("--config", path), ENV()), -1);
  assert_non_null(strstr(err, ":1:9: expected a mapping"));
  amc_config_free(&c);
  unlink(path);
  assert_int_equal(load(&c, ARGV("--config", "/nonexistent.yaml"), ENV()), -1);
  assert_string_equal(
      err, "config file /nonexistent.yaml: No such file or directory");
  amc_config_free(&c);
}

static void test_validation_errors(void **state) {
  (void)state;
  amc_config_t c;
  struct {
    char **argv;
    char **env;
    const char *err;
  } cases[] = {
      {ARGV(), ENV(),
       "no source: give --source fs://DIR (files), --source kube (the "
       "cluster) or set MCP_URL"},
      {ARGV("--source", "ftp://x", "--dry-run"), ENV(),
       "source 'ftp://x': expected fs://DIR, kube or mcp"},
      {ARGV("--source", "fs://"), ENV(),
       "source 'fs://': no directory after fs://"},
      {ARGV("--source", "fs://x"), ENV(),
       "no AVI controller: set CTRL_IPADDRESS or --avi-url (or use --dry-run)"},
      {ARGV("--source", "fs://x", "--avi-url", "h"), ENV(),
       "no AVI user: set CTRL_USERNAME or --avi-username"},
      {ARGV("--source", "fs://x", "--avi-url", "h", "--avi-username", "u"),
       ENV(), "no AVI password: set CTRL_PASSWORD or --avi-password-file"},
      {ARGV("--source", "fs://x", "--dry-run", "--avi-url", "ftp://h"), ENV(),
       "avi-url 'ftp://h': the scheme must be http:// or https://"},
      {ARGV("--source", "fs://x", "--dry-run", "--workers", "0"), ENV(),
       "workers: 0 is out of range 1..1024"},
      {ARGV("--source", "fs://x", "--dry-run", "--workers", "many"), ENV(),
       "--workers: 'many' is not an integer"},
      {ARGV("--source", "fs://x", "--dry-run", "--admin-port", "70000"), ENV(),
       "admin-port: 70000 is out of range -1..65535"},
      {ARGV("--source", "fs://x", "--dry-run", "--log-level", "loud"), ENV(),
       "log-level 'loud': expected debug, info, warn or error"},
      {ARGV("--source", "fs://x", "--dry-run", "--log-format", "xml"), ENV(),
       "log-format 'xml': expected logfmt or json"},
      {ARGV("--source", "fs://x", "--dry-run"), ENV("ISTIO_ENABLED=maybe"),
       "environment variable ISTIO_ENABLED: 'maybe' is not a boolean (true "
       "or false)"},
      {ARGV("--source", "fs://x", "--bogus"), ENV(),
       "unknown option '--bogus' (see amc run --help)"},
      {ARGV("--source"), ENV(), "option '--source' needs a value (URL)"},
      {ARGV("stray"), ENV(),
       "unexpected argument 'stray' (see amc run --help)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    err[0] = '\0';
    assert_int_equal(load(&c, cases[i].argv, cases[i].env), -1);
    assert_string_equal(err, cases[i].err);
    amc_config_free(&c);
  }
}

static void test_password_never_echoed(void **state) {
  (void)state;
  amc_config_t c;
  /* a bad value for a secret option names the option, not the value */
  assert_int_equal(
      load(&c,
           ARGV("--source", "fs://x", "--avi-url", "h", "--avi-username", "u",
                "--avi-password", "hunter2", "--workers", "x"),
           ENV()),
      -1);
  assert_null(strstr(err, "hunter2"));
  amc_config_free(&c);
  char path[] = "/tmp/amc-pw-XXXXXX";
  int fd = mkstemp(path);
  assert_int_equal(write(fd, "pw-from-file\n", 13), 13);
  close(fd);
  assert_int_equal(
      load(&c,
           ARGV("--source", "fs://x", "--avi-url", "http://127.0.0.1:8080/",
                "--avi-username", "u", "--avi-password-file", path),
           ENV()),
      0);
  assert_string_equal(c.avi_password, "pw-from-file");
  assert_string_equal(c.avi_url, "http://127.0.0.1:8080");
  amc_config_free(&c);
  unlink(path);
}

static void test_help(void **state) {
  (void)state;
  amc_config_t c;
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  assert_int_equal(
      amc_config_load(&c, 2, ARGV("--help"), ENV(), out, err, sizeof err),
      AMC_CONFIG_HELP);
  fclose(out);
  const char *must[] = {"CTRL_IPADDRESS", "CTRL_USERNAME", "CTRL_PASSWORD",
                        "CTRL_VERSION",   "CLOUD_NAME",    "ISTIO_ENABLED",
                        "MCP_URL",        "--config FILE", "--dry-run",
                        "--admin-port",   "--log-format",  "SIGHUP"};
  for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
    assert_non_null(strstr(buf, must[i]));
  free(buf);
  amc_config_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_dry_run),
      cmocka_unit_test(test_original_env_variables),
      cmocka_unit_test(test_precedence_flag_env_file),
      cmocka_unit_test(test_config_file_errors),
      cmocka_unit_test(test_validation_errors),
      cmocka_unit_test(test_password_never_echoed),
      cmocka_unit_test(test_help),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
