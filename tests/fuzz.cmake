# libFuzzer targets: the MCP input path (tests/fuzz/fuzz_mcp.c: gRPC
# reassembly + protobuf decoding + protobuf -> Lua -> canonical JSON), and
# the YAML fast path against libyaml (tests/fuzz/fuzz_yaml.c, seeds in
# tests/fuzz/corpus_yaml).
# The project builds with the default C compiler; the fuzzer needs clang's
# -fsanitize=fuzzer, so it is compiled by a custom command with clang, only
# when clang and its libFuzzer runtime are available. ctest runs it for a
# bounded time (AMC_FUZZ_SECONDS, default 20) from the seed corpus in
# tests/fuzz/corpus; new inputs go to the build tree, never the sources.
find_program(AMC_CLANG NAMES clang clang-14)
set(AMC_FUZZ_SECONDS 20 CACHE STRING "run time of each fuzz test in ctest")
if(AMC_CLANG)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E echo "int LLVMFuzzerTestOneInput(const char*d,unsigned long n){return 0;}"
    OUTPUT_FILE ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe.c)
  execute_process(
    COMMAND ${AMC_CLANG} -fsanitize=fuzzer ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe.c
            -o ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe
    RESULT_VARIABLE amc_fuzz_probe_rc OUTPUT_QUIET ERROR_QUIET)
endif()
if(AMC_CLANG AND amc_fuzz_probe_rc EQUAL 0)
  set(amc_fuzz_bin ${CMAKE_CURRENT_BINARY_DIR}/fuzz_mcp)
  set(amc_fuzz_src
    ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_mcp.c
    ${PROJECT_SOURCE_DIR}/runtime/grpc.c
    ${PROJECT_SOURCE_DIR}/runtime/mcp/pb_lua.c
    ${PROJECT_SOURCE_DIR}/runtime/mcp/mcp_common.c
    ${PROJECT_SOURCE_DIR}/runtime/util/buf.c
    ${PROJECT_SOURCE_DIR}/runtime/util/log.c
    ${PROJECT_SOURCE_DIR}/proto/proto_registry.c)
  if(EXISTS ${PROJECT_SOURCE_DIR}/runtime/json.c)
    list(APPEND amc_fuzz_src ${PROJECT_SOURCE_DIR}/runtime/json.c)
  endif()
  set(amc_fuzz_inc -I${PROJECT_SOURCE_DIR}/runtime -I${PROJECT_SOURCE_DIR}/proto
      -I${AMC_PROTO_INCLUDE})
  foreach(d ${LUA_INCLUDE_DIRS} ${UV_INCLUDE_DIRS} ${NGHTTP2_INCLUDE_DIRS}
          ${OPENSSL_INCLUDE_DIRS} ${PROTOBUFC_INCLUDE_DIRS})
    list(APPEND amc_fuzz_inc -I${d})
  endforeach()
  add_custom_command(
    OUTPUT ${amc_fuzz_bin}
    COMMAND ${AMC_CLANG} -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined
            -fno-sanitize-recover=undefined -DAMC_VERSION="${PROJECT_VERSION}"
            ${amc_fuzz_inc} ${amc_fuzz_src} ${AMC_PROTO_SOURCES}
            ${LUA_LINK_LIBRARIES} ${UV_LINK_LIBRARIES} ${NGHTTP2_LINK_LIBRARIES}
            ${OPENSSL_LINK_LIBRARIES} ${PROTOBUFC_LINK_LIBRARIES} -lm
            -o ${amc_fuzz_bin}
    DEPENDS ${amc_fuzz_src} ${AMC_PROTO_SOURCES}
    COMMENT "clang libFuzzer target fuzz_mcp"
    VERBATIM)
  add_custom_target(fuzz_mcp ALL DEPENDS ${amc_fuzz_bin})
  add_dependencies(fuzz_mcp amc_proto)
  add_test(NAME fuzz.mcp
    COMMAND ${CMAKE_COMMAND} -E env
            ${amc_fuzz_bin} -max_total_time=${AMC_FUZZ_SECONDS} -rss_limit_mb=1024
            -timeout=10 -artifact_prefix=${CMAKE_CURRENT_BINARY_DIR}/fuzz-mcp-
            ${CMAKE_CURRENT_BINARY_DIR}/fuzz_mcp_corpus
            ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus)
  file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fuzz_mcp_corpus)
  set_tests_properties(fuzz.mcp PROPERTIES LABELS "fuzz" TIMEOUT 300)

  set(amc_fuzz_yaml_bin ${CMAKE_CURRENT_BINARY_DIR}/fuzz_yaml)
  set(amc_fuzz_yaml_src
    ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_yaml.c
    ${PROJECT_SOURCE_DIR}/runtime/yaml_fast.c
    ${PROJECT_SOURCE_DIR}/runtime/loader.c
    ${PROJECT_SOURCE_DIR}/runtime/json.c
    ${PROJECT_SOURCE_DIR}/runtime/util/buf.c
    ${PROJECT_SOURCE_DIR}/runtime/util/log.c)
  set(amc_fuzz_yaml_inc -I${PROJECT_SOURCE_DIR}/runtime
      -I${PROJECT_SOURCE_DIR}/tests/unit)
  foreach(d ${LUA_INCLUDE_DIRS} ${YAML_INCLUDE_DIRS})
    list(APPEND amc_fuzz_yaml_inc -I${d})
  endforeach()
  add_custom_command(
    OUTPUT ${amc_fuzz_yaml_bin}
    COMMAND ${AMC_CLANG} -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined
            -fno-sanitize-recover=undefined ${amc_fuzz_yaml_inc}
            ${amc_fuzz_yaml_src} ${LUA_LINK_LIBRARIES} ${YAML_LINK_LIBRARIES}
            -lm -o ${amc_fuzz_yaml_bin}
    DEPENDS ${amc_fuzz_yaml_src} ${PROJECT_SOURCE_DIR}/runtime/yaml_fast.h
            ${PROJECT_SOURCE_DIR}/runtime/loader.h
            ${PROJECT_SOURCE_DIR}/tests/unit/lua_same.h
    COMMENT "clang libFuzzer target fuzz_yaml"
    VERBATIM)
  add_custom_target(fuzz_yaml ALL DEPENDS ${amc_fuzz_yaml_bin})
  add_test(NAME fuzz.yaml
    COMMAND ${amc_fuzz_yaml_bin} -max_total_time=${AMC_FUZZ_SECONDS}
            -rss_limit_mb=1024 -timeout=10
            -artifact_prefix=${CMAKE_CURRENT_BINARY_DIR}/fuzz-yaml-
            ${CMAKE_CURRENT_BINARY_DIR}/fuzz_yaml_corpus
            ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus_yaml)
  file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fuzz_yaml_corpus)
  set_tests_properties(fuzz.yaml PROPERTIES LABELS "fuzz" TIMEOUT 300)
else()
  message(STATUS "clang with libFuzzer not found: fuzz_mcp, fuzz_yaml not built")
endif()
