/* proto_registry.c - anchor translation unit for the amc_proto library.
 *
 * The library holds the protobuf-c code generated from proto/*.proto. This
 * file keeps the library non-empty before any .proto exists. */
int amc_proto_anchor;
