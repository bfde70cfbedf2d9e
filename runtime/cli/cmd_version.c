/* cmd_version.c - `amc version`: the version and the libraries linked in. */
#include "cli/cli.h"

#include <curl/curl.h>
#include <lua.h>
#include <nghttp2/nghttp2ver.h>
#include <openssl/opensslv.h>
#include <stdio.h>
#include <uv.h>
#include <yaml.h>

int amc_cmd_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("amc %s\n", AMC_VERSION);
  printf("  lua      %s\n", LUA_RELEASE);
  printf("  libuv    %s\n", uv_version_string());
  printf("  libcurl  %s\n", curl_version_info(CURLVERSION_NOW)->version);
  printf("  nghttp2  %s\n", NGHTTP2_VERSION);
  printf("  openssl  %s\n", OPENSSL_VERSION_TEXT);
  printf("  libyaml  %s\n", yaml_get_version_string());
  return AMC_EXIT_OK;
}
