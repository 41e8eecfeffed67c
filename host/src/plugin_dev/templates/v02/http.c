// One HTTP request through wasi:http/outgoing-handler, synchronously (see http.h).
// Resources are handles: every `own` one is dropped (`*_drop_own`) once, children (a body's
// stream) before their parents.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "plugin.h"

static const char *METHODS[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                "CONNECT", "OPTIONS", "TRACE", "PATCH"};

// The request, its headers set, its body not yet written.
static bool new_request(const char *method, const char *url, const http_header_t *headers,
                        size_t n, wasi_http_types_own_outgoing_request_t *req, char *err,
                        size_t errlen) {
  bool https = strncmp(url, "https://", 8) == 0;
  if (!https && strncmp(url, "http://", 7) != 0) {
    snprintf(err, errlen, "%s is not an http:// or https:// URL", url);
    return false;
  }
  const char *authority = url + (https ? 8 : 7);
  const char *path = authority + strcspn(authority, "/?");

  // Import arguments are borrowed: they may point at our own strings.
  wasi_http_types_list_tuple2_field_name_field_value_t list = {calloc(n, sizeof *list.ptr), n};
  for (size_t i = 0; i < n; i++) {
    plugin_string_set(&list.ptr[i].f0, headers[i].name);
    list.ptr[i].f1.ptr = (uint8_t *)headers[i].value;
    list.ptr[i].f1.len = strlen(headers[i].value);
  }
  wasi_http_types_own_fields_t fields;
  wasi_http_types_header_error_t header_err;
  bool ok = wasi_http_types_static_fields_from_list(&list, &fields, &header_err);
  free(list.ptr);
  if (!ok) {
    snprintf(err, errlen, "a header is refused (header-error case %d)", header_err.tag);
    return false;
  }
  *req = wasi_http_types_constructor_outgoing_request(fields);
  wasi_http_types_borrow_outgoing_request_t r = wasi_http_types_borrow_outgoing_request(*req);
  wasi_http_types_method_t m = {.tag = WASI_HTTP_TYPES_METHOD_OTHER};
  plugin_string_set(&m.val.other, method);
  for (uint8_t i = 0; i < sizeof METHODS / sizeof *METHODS; i++) {
    if (strcmp(method, METHODS[i]) == 0) {
      m.tag = i;
    }
  }
  wasi_http_types_method_outgoing_request_set_method(r, &m);
  wasi_http_types_scheme_t scheme = {
      .tag = https ? WASI_HTTP_TYPES_SCHEME_HTTPS : WASI_HTTP_TYPES_SCHEME_HTTP};
  wasi_http_types_method_outgoing_request_set_scheme(r, &scheme);
  plugin_string_t auth = {(uint8_t *)authority, (size_t)(path - authority)};
  wasi_http_types_method_outgoing_request_set_authority(r, &auth);
  plugin_string_t path_query;
  plugin_string_set(&path_query, *path == '/' ? path : "/");
  wasi_http_types_method_outgoing_request_set_path_with_query(r, &path_query);
  return true;
}

// Writes the body, at most 4096 bytes per blocking write, and finishes it.
static bool write_body(wasi_http_types_own_outgoing_request_t req, const char *body, size_t len) {
  wasi_http_types_own_outgoing_body_t outgoing;
  wasi_http_types_own_output_stream_t out;
  wasi_http_types_method_outgoing_request_body(wasi_http_types_borrow_outgoing_request(req),
                                               &outgoing);
  wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(outgoing), &out);
  bool ok = true;
  for (size_t at = 0; ok && at < len; at += 4096) {
    plugin_list_u8_t chunk = {(uint8_t *)body + at, len - at < 4096 ? len - at : 4096};
    wasi_io_streams_stream_error_t stream_err;
    ok = wasi_io_streams_method_output_stream_blocking_write_and_flush(
        wasi_io_streams_borrow_output_stream(out), &chunk, &stream_err);
    if (!ok) {
      wasi_io_streams_stream_error_free(&stream_err);
    }
  }
  wasi_io_streams_output_stream_drop_own(out);
  wasi_http_types_error_code_t code;
  if (!wasi_http_types_static_outgoing_body_finish(outgoing, NULL, &code)) {
    wasi_http_types_error_code_free(&code);
    ok = false;
  }
  return ok;
}

// Reads the whole body of a response into res.
static bool read_body(wasi_http_types_own_incoming_response_t resp, http_response_t *res) {
  wasi_http_types_own_incoming_body_t incoming;
  wasi_http_types_own_input_stream_t in;
  wasi_http_types_method_incoming_response_consume(wasi_http_types_borrow_incoming_response(resp),
                                                   &incoming);
  wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(incoming), &in);
  res->body = calloc(1, 1);
  res->len = 0;
  bool ok = true;
  for (;;) {
    plugin_list_u8_t chunk;
    wasi_io_streams_stream_error_t stream_err;
    if (!wasi_io_streams_method_input_stream_blocking_read(
            wasi_io_streams_borrow_input_stream(in), 65536, &chunk, &stream_err)) {
      ok = stream_err.tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED; // closed: the end
      wasi_io_streams_stream_error_free(&stream_err);
      break;
    }
    res->body = realloc(res->body, res->len + chunk.len + 1);
    memcpy(res->body + res->len, chunk.ptr, chunk.len);
    res->len += chunk.len;
    res->body[res->len] = 0;
    plugin_list_u8_free(&chunk);
  }
  wasi_io_streams_input_stream_drop_own(in);
  wasi_http_types_incoming_body_drop_own(incoming);
  return ok;
}

bool http_request(const char *method, const char *url, const http_header_t *headers,
                  size_t n_headers, const char *body, size_t body_len, http_response_t *res,
                  char *err, size_t errlen) {
  wasi_http_types_own_outgoing_request_t req;
  if (!new_request(method, url, headers, n_headers, &req, err, errlen)) {
    return false;
  }
  if (!write_body(req, body, body_len)) {
    wasi_http_types_outgoing_request_drop_own(req);
    snprintf(err, errlen, "%s %s: writing the body failed", method, url);
    return false;
  }
  wasi_http_outgoing_handler_own_future_incoming_response_t future;
  wasi_http_types_error_code_t code;
  if (!wasi_http_outgoing_handler_handle(req, NULL, &future, &code)) { // refused at once
    snprintf(err, errlen, "%s %s: error-code case %d", method, url, code.tag);
    wasi_http_types_error_code_free(&code);
    return false;
  }
  // The plugin waits here; the host does the I/O.
  wasi_http_types_own_pollable_t ready = wasi_http_types_method_future_incoming_response_subscribe(
      wasi_http_types_borrow_future_incoming_response(future));
  wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
  wasi_io_poll_pollable_drop_own(ready);
  wasi_http_types_result_result_own_incoming_response_error_code_void_t got;
  bool some = wasi_http_types_method_future_incoming_response_get(
      wasi_http_types_borrow_future_incoming_response(future), &got);
  wasi_http_types_future_incoming_response_drop_own(future);
  if (!some || got.is_err || got.val.ok.is_err) {
    int tag = some && !got.is_err ? got.val.ok.val.err.tag : -1;
    snprintf(err, errlen, "%s %s: error-code case %d", method, url, tag);
    if (some) {
      wasi_http_types_result_result_own_incoming_response_error_code_void_free(&got);
    }
    return false;
  }
  wasi_http_types_own_incoming_response_t resp = got.val.ok.val.ok;
  res->status = wasi_http_types_method_incoming_response_status(
      wasi_http_types_borrow_incoming_response(resp));
  bool ok = read_body(resp, res);
  wasi_http_types_incoming_response_drop_own(resp);
  if (!ok) {
    snprintf(err, errlen, "%s %s: reading the body failed", method, url);
    free(res->body);
  }
  return ok;
}
