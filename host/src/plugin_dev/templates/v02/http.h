// One HTTP request through wasi:http/outgoing-handler, synchronously: build the request,
// send it, block on the future response, read the body (http.c).
//
// The host sends it only if the operator's [plugin.net] http list allows the URL; a refusal,
// a timeout or a network failure is an error naming wasi:http's error-code case (the
// WASI_HTTP_TYPES_ERROR_CODE_* numbers in plugin.h).

#ifndef HTTP_H
#define HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *name;
  const char *value;
} http_header_t;

typedef struct {
  uint16_t status;
  char *body; // malloc'd and NUL-terminated: free it
  size_t len;
} http_response_t;

// Sends `method url` with the headers and body. Returns true and fills *res, or returns false
// with why in err.
bool http_request(const char *method, const char *url, const http_header_t *headers,
                  size_t n_headers, const char *body, size_t body_len, http_response_t *res,
                  char *err, size_t errlen);

#endif
