# libFuzzer targets: the MCP input path (tests/fuzz/fuzz_mcp.c: gRPC
# reassembly + protobuf decoding + protobuf -> Lua -> canonical JSON), the
# YAML fast path against libyaml (fuzz_yaml.c) and the JSON codec's own
# agreements (fuzz_json.c: decode, canonical encode, canonical decode,
# memo/tape/pretty encodings), and a Kubernetes watch stream (fuzz_kube.c:
# line splitting, event parsing, kjson against json.h).
# The project builds with the default C compiler; the fuzzer needs clang's
# -fsanitize=fuzzer, so it is compiled by a custom command with clang, only
# when clang and its libFuzzer runtime are available. ctest runs it for a
# bounded time (AMC_FUZZ_SECONDS, default 20) from its seed corpus in
# tests/fuzz/corpus*; new inputs go to the build tree, never the sources.
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
# amc_fuzz(NAME name SEEDS dir SOURCES ... INCLUDES ... LIBS ... [DEPENDS
# target]): builds tests/fuzz/<name>.c with the sources given into
# build/tests/<name> and registers ctest `fuzz.<suffix>`: a bounded run from
# the seed corpus (new inputs go to build/tests/<name>_corpus, crashes to
# build/tests/<name>-*).
function(amc_fuzz)
  cmake_parse_arguments(F "" "NAME;SEEDS;DEPENDS" "SOURCES;INCLUDES;LIBS"
                        ${ARGN})
  set(bin ${CMAKE_CURRENT_BINARY_DIR}/${F_NAME})
  set(src ${PROJECT_SOURCE_DIR}/tests/fuzz/${F_NAME}.c ${F_SOURCES})
  set(inc -I${PROJECT_SOURCE_DIR}/runtime -I${PROJECT_SOURCE_DIR}/tests/unit)
  foreach(d ${F_INCLUDES})
    list(APPEND inc -I${d})
  endforeach()
  add_custom_command(
    OUTPUT ${bin}
    COMMAND ${AMC_CLANG} -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined
            -fno-sanitize-recover=undefined -DAMC_VERSION="${PROJECT_VERSION}"
            ${inc} ${src} ${F_LIBS} -lm -o ${bin}
    DEPENDS ${src} ${PROJECT_SOURCE_DIR}/tests/unit/lua_same.h
            ${PROJECT_SOURCE_DIR}/tests/unit/loader_spans.h
            ${PROJECT_SOURCE_DIR}/tests/unit/canon_same.h
    COMMENT "clang libFuzzer target ${F_NAME}"
    VERBATIM)
  add_custom_target(${F_NAME} ALL DEPENDS ${bin})
  if(F_DEPENDS)
    add_dependencies(${F_NAME} ${F_DEPENDS})
  endif()
  string(REPLACE "fuzz_" "" short ${F_NAME})
  add_test(NAME fuzz.${short}
    COMMAND ${bin} -max_total_time=${AMC_FUZZ_SECONDS} -rss_limit_mb=1024
            -timeout=10 -artifact_prefix=${CMAKE_CURRENT_BINARY_DIR}/${F_NAME}-
            ${CMAKE_CURRENT_BINARY_DIR}/${F_NAME}_corpus ${F_SEEDS})
  file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/${F_NAME}_corpus)
  set_tests_properties(fuzz.${short} PROPERTIES LABELS "fuzz" TIMEOUT 300)
endfunction()

if(AMC_CLANG AND amc_fuzz_probe_rc EQUAL 0)
  set(rt ${PROJECT_SOURCE_DIR}/runtime)
  amc_fuzz(NAME fuzz_mcp SEEDS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus
    SOURCES ${rt}/grpc.c ${rt}/mcp/pb_lua.c ${rt}/mcp/mcp_common.c
            ${rt}/util/buf.c ${rt}/util/log.c ${rt}/json.c
            ${PROJECT_SOURCE_DIR}/proto/proto_registry.c ${AMC_PROTO_SOURCES}
    INCLUDES ${PROJECT_SOURCE_DIR}/proto ${AMC_PROTO_INCLUDE}
             ${LUA_INCLUDE_DIRS} ${UV_INCLUDE_DIRS} ${NGHTTP2_INCLUDE_DIRS}
             ${OPENSSL_INCLUDE_DIRS} ${PROTOBUFC_INCLUDE_DIRS}
    LIBS ${LUA_LINK_LIBRARIES} ${UV_LINK_LIBRARIES} ${NGHTTP2_LINK_LIBRARIES}
         ${OPENSSL_LINK_LIBRARIES} ${PROTOBUFC_LINK_LIBRARIES}
    DEPENDS amc_proto)
  amc_fuzz(NAME fuzz_yaml SEEDS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus_yaml
    SOURCES ${rt}/yaml_fast.c ${rt}/loader.c ${rt}/json.c ${rt}/canon.c
            ${rt}/util/buf.c ${rt}/util/log.c
    INCLUDES ${LUA_INCLUDE_DIRS} ${YAML_INCLUDE_DIRS}
    LIBS ${LUA_LINK_LIBRARIES} ${YAML_LINK_LIBRARIES})
  amc_fuzz(NAME fuzz_json SEEDS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus_json
    SOURCES ${rt}/json.c ${rt}/loader.c ${rt}/yaml_fast.c ${rt}/canon.c
            ${rt}/util/buf.c ${rt}/util/log.c
    INCLUDES ${LUA_INCLUDE_DIRS} ${YAML_INCLUDE_DIRS}
    LIBS ${LUA_LINK_LIBRARIES} ${YAML_LINK_LIBRARIES})
  amc_fuzz(NAME fuzz_kube SEEDS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus_kube
    SOURCES ${rt}/kube/kjson.c ${rt}/kube/watchparse.c ${rt}/json.c
            ${rt}/util/buf.c ${rt}/util/log.c
    INCLUDES ${LUA_INCLUDE_DIRS}
    LIBS ${LUA_LINK_LIBRARIES})
else()
  message(STATUS "clang with libFuzzer not found: no fuzz targets built")
endif()
