# Helpers shared by the subdirectories.

# amc_embed_files(OUT_C VAR_PREFIX FILES...): generate a C file holding the
# given files' bytes, and a table mapping relative names to contents:
#   const amc_embedded_file_t amc_embedded_lua[]; (NULL-terminated)
function(amc_embed_files out_c base_dir)
  set(files ${ARGN})
  add_custom_command(
    OUTPUT ${out_c}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out_c} -DBASE=${base_dir}
            "-DFILES=${files}" -P ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
    DEPENDS ${files} ${PROJECT_SOURCE_DIR}/cmake/embed.cmake
    COMMENT "Embedding runtime Lua library"
    VERBATIM)
endfunction()

# amc_target_sanitize(TARGET): compile and link with ASan+UBSan.
function(amc_target_sanitize tgt)
  target_compile_options(${tgt} PRIVATE ${AMC_SAN_FLAGS} -O1)
  target_link_options(${tgt} PRIVATE ${AMC_SAN_FLAGS})
endfunction()
