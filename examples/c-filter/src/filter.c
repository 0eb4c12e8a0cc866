/* A proxy-wasm filter in C against the raw ABI (0.2.1): no SDK, wasi-libc's malloc only.
 * Plugin configuration: {"deny_header": NAME}, a request header that makes the filter deny (403).
 * Every request it lets through gets `x-c-filter: seen` (the upstream sees it), every response `x-c-filter: c`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))
enum { LOG_INFO = 2, LOG_WARN = 3, REQUEST_HEADERS = 0, RESPONSE_HEADERS = 2, PLUGIN_CONFIGURATION = 7 };
enum { CONTINUE = 0, STOP = 1, OK = 0 };

IMPORT(proxy_log) int proxy_log(int level, const char *msg, size_t len);
IMPORT(proxy_get_buffer_bytes) int proxy_get_buffer_bytes(int type, size_t start, size_t max, char **ptr, size_t *len);
IMPORT(proxy_get_header_map_value)
int proxy_get_header_map_value(int map, const char *key, size_t key_len, char **value, size_t *value_len);
IMPORT(proxy_add_header_map_value)
int proxy_add_header_map_value(int map, const char *key, size_t key_len, const char *value, size_t value_len);
IMPORT(proxy_send_local_response)
int proxy_send_local_response(int status, const char *details, size_t details_len, const char *body, size_t body_len,
                              const char *headers, size_t headers_len, int grpc_status);

static char deny_header[128];
static size_t deny_len;

static void log_str(int level, const char *msg) { proxy_log(level, msg, strlen(msg)); }

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}
EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }
EXPORT(proxy_on_context_create) void proxy_on_context_create(int context, int root) { (void)context, (void)root; }
EXPORT(proxy_on_vm_start) int proxy_on_vm_start(int root, size_t size) { (void)root, (void)size; return 1; }

/* The configuration: a JSON object {"deny_header": "NAME"} (how Istio's pluginConfig arrives too). A small reader,
 * not a JSON parser: the key, a colon, a string of 1..127 characters without escapes; anything else is refused. */
static int read_deny_header(const char *json, size_t len) {
  static const char key[] = "\"deny_header\"";
  const char *end = json + len, *p = json;
  while (p + sizeof key - 1 <= end && memcmp(p, key, sizeof key - 1) != 0) p++;
  if (p + sizeof key - 1 > end) return 0;
  for (p += sizeof key - 1; p < end && (*p == ' ' || *p == ':' || *p == '\n' || *p == '\t'); p++) {}
  if (p >= end || *p++ != '"') return 0;
  const char *close = memchr(p, '"', (size_t)(end - p));
  if (close == NULL || close == p || (size_t)(close - p) >= sizeof deny_header || memchr(p, '\\', (size_t)(close - p)))
    return 0;
  deny_len = (size_t)(close - p);
  memcpy(deny_header, p, deny_len);
  return 1;
}

EXPORT(proxy_on_configure) int proxy_on_configure(int root, size_t size) {
  char *config = NULL;
  size_t len = 0;
  (void)root;
  int ok = proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &config, &len) == OK && config != NULL &&
           read_deny_header(config, len);
  free(config);
  log_str(ok ? LOG_INFO : LOG_WARN, ok ? "c-filter: configured"
                                       : "c-filter: field `deny_header` must be a header name (a JSON string)");
  return ok;
}

EXPORT(proxy_on_request_headers) int proxy_on_request_headers(int context, size_t headers, int end_of_stream) {
  char *value = NULL;
  size_t len = 0;
  (void)context, (void)headers, (void)end_of_stream;
  if (proxy_get_header_map_value(REQUEST_HEADERS, deny_header, deny_len, &value, &len) == OK && value != NULL) {
    free(value);
    static const char body[] = "denied by c-filter\n";
    proxy_send_local_response(403, "c_filter_denied", 15, body, sizeof body - 1, NULL, 0, -1);
    return STOP;
  }
  proxy_add_header_map_value(REQUEST_HEADERS, "x-c-filter", 10, "seen", 4);
  return CONTINUE;
}

EXPORT(proxy_on_response_headers) int proxy_on_response_headers(int context, size_t headers, int end_of_stream) {
  (void)context, (void)headers, (void)end_of_stream;
  proxy_add_header_map_value(RESPONSE_HEADERS, "x-c-filter", 10, "c", 1);
  return CONTINUE;
}
