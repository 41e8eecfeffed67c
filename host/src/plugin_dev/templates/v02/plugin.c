// {{name}}: counts a meeting's transcript lines and words in session state, posts the counts
// to a notes service when the session ends, and emits what the service answered.
//
// The counts live in the host (`state`), not in globals: a reload or a restart after a trap
// mid-meeting starts a fresh instance, and it goes on counting where the last one stopped.
//
// plugin.h is generated from the contract by `rtms-host plugin build`. Ownership: every
// argument the host passes is yours and must be freed (the *_free functions); strings you
// hand back (an error, an output) are taken over by the host.

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "plugin.h"

static char notes_url[512] = ""; // set by init; one instance serves one session

static bool fail(plugin_string_t *err, const char *msg) {
  plugin_string_dup(err, msg);
  return false;
}

// Adds delta to the session's counter `key`; the new value goes to *value.
static bool count(const char *key, int64_t delta, int64_t *value, plugin_string_t *err) {
  plugin_string_t k;
  plugin_string_set(&k, key);
  rtms_plugin_state_error_t state_err;
  if (!rtms_plugin_state_increment(RTMS_PLUGIN_STATE_SCOPE_SESSION, &k, delta, value,
                                   &state_err)) {
    // full, invalid-key, not-a-number or other: each carries the host's explanation.
    char msg[300];
    snprintf(msg, sizeof msg, "state %s: %.*s", key, (int)state_err.val.full.len,
             (const char *)state_err.val.full.ptr);
    rtms_plugin_state_error_free(&state_err);
    return fail(err, msg);
  }
  return true;
}

bool exports_rtms_plugin_handler_init(plugin_list_tuple2_string_string_t *config,
                                      plugin_string_t *err) {
  bool ok = true;
  for (size_t i = 0; ok && i < config->len; i++) {
    plugin_string_t *key = &config->ptr[i].f0, *value = &config->ptr[i].f1;
    if (key->len == 9 && memcmp(key->ptr, "notes_url", 9) == 0 && value->len < sizeof notes_url) {
      memcpy(notes_url, value->ptr, value->len);
      notes_url[value->len] = 0;
    } else {
      ok = fail(err, "unknown config key; expected \"notes_url\" (a URL under 512 bytes)");
    }
  }
  plugin_list_tuple2_string_string_free(config);
  if (ok && strncmp(notes_url, "http://", 7) != 0 && strncmp(notes_url, "https://", 8) != 0) {
    ok = fail(err, "\"notes_url\" must be the notes service's http:// or https:// URL");
  }
  return ok;
}

bool exports_rtms_plugin_handler_on_session_start(exports_rtms_plugin_handler_session_info_t *info,
                                                  plugin_string_t *err) {
  (void)err;
  char line[300];
  snprintf(line, sizeof line, "session %.*s started (resumed: %s)", (int)info->stream_id.len,
           (const char *)info->stream_id.ptr, info->resumed ? "true" : "false");
  plugin_string_t msg;
  plugin_string_set(&msg, line);
  rtms_plugin_host_log(RTMS_PLUGIN_TYPES_LEVEL_INFO, &msg);
  exports_rtms_plugin_handler_session_info_free(info);
  return true;
}

bool exports_rtms_plugin_handler_on_frames(uint64_t session,
                                           exports_rtms_plugin_handler_list_frame_t *frames,
                                           plugin_string_t *err) {
  (void)session;
  int64_t lines = 0, words = 0, total;
  for (size_t i = 0; i < frames->len; i++) {
    exports_rtms_plugin_handler_frame_t *f = &frames->ptr[i];
    if (f->kind != RTMS_PLUGIN_TYPES_MEDIA_KIND_TRANSCRIPT || !f->text.is_some) {
      continue;
    }
    lines++;
    bool in_word = false;
    for (size_t j = 0; j < f->text.val.len; j++) {
      bool space = isspace(f->text.val.ptr[j]);
      words += !space && !in_word;
      in_word = !space;
    }
  }
  exports_rtms_plugin_handler_list_frame_free(frames);
  return lines == 0 || (count("lines", lines, &total, err) && count("words", words, &total, err));
}

bool exports_rtms_plugin_handler_on_session_end(uint64_t session,
                                                exports_rtms_plugin_handler_end_reason_t *reason,
                                                plugin_string_t *err) {
  (void)session;
  exports_rtms_plugin_handler_end_reason_free(reason);
  int64_t lines, words;
  if (!count("lines", 0, &lines, err) || !count("words", 0, &words, err)) {
    return false;
  }
  plugin_string_t name, key = {0};
  plugin_string_set(&name, "NOTES_API_KEY");
  bool has_key = rtms_plugin_secrets_get(&name, &key);
  char auth[300], body[100], why[300];
  snprintf(auth, sizeof auth, "Bearer %.*s", (int)key.len, has_key ? (const char *)key.ptr : "");
  if (has_key) {
    plugin_string_free(&key);
  }
  int n = snprintf(body, sizeof body, "{\"lines\":%lld,\"words\":%lld}", (long long)lines,
                   (long long)words);
  http_header_t headers[] = {{"content-type", "application/json"}, {"authorization", auth}};
  http_response_t res;
  if (!http_request("POST", notes_url, headers, 2, body, (size_t)n, &res, why, sizeof why)) {
    return fail(err, why);
  }
  if (res.status / 100 != 2) {
    snprintf(why, sizeof why, "the notes service answered %u: %.200s", res.status, res.body);
    free(res.body);
    return fail(err, why);
  }
  // The answer is JSON: it goes into `data` as it came.
  char message[200], *data = malloc(res.len + 100);
  snprintf(message, sizeof message, "%lld transcript lines, %lld words (notes service: %u)",
           (long long)lines, (long long)words, res.status);
  sprintf(data, "{\"lines\":%lld,\"words\":%lld,\"note\":%s}", (long long)lines, (long long)words,
          res.body);
  free(res.body);
  rtms_plugin_host_output_t out;
  plugin_string_dup(&out.kind, "words");
  out.severity = RTMS_PLUGIN_TYPES_SEVERITY_INFO;
  plugin_string_dup(&out.message, message);
  out.data.is_some = true;
  plugin_string_dup(&out.data.val, data);
  free(data);
  rtms_plugin_host_emit(&out);
  rtms_plugin_host_output_free(&out);
  return true;
}

// WebSocket messages and events (none here: this plugin opens no WebSocket).
bool exports_rtms_plugin_handler_on_ws_message(uint64_t conn,
                                               exports_rtms_plugin_handler_ws_message_t *message,
                                               plugin_string_t *err) {
  (void)conn, (void)err;
  exports_rtms_plugin_handler_ws_message_free(message);
  return true;
}

bool exports_rtms_plugin_handler_on_ws_event(uint64_t conn,
                                             exports_rtms_plugin_handler_ws_event_t *event,
                                             plugin_string_t *err) {
  (void)conn, (void)err;
  exports_rtms_plugin_handler_ws_event_free(event);
  return true;
}
