// {{name}}: counts the transcript lines and words of a meeting. Each line goes to
// <dir>/words-<stream id>.txt as it comes ("#<seq> <speaker>: <n> words"), and the counts
// are emitted when the session ends.
//
// plugin.h is generated from the contract by `rtms-host plugin build`. Ownership: every
// argument the host passes is yours and must be freed (the *_free functions); strings you
// hand back (an error, an output) are taken over by the host.

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

// One instance serves one session and calls never overlap: globals are per-meeting state.
static char out_dir[256] = "/out";
// The session's file, named after the stream (one file per meeting).
static char path[512] = "";
static unsigned long long lines = 0;
static unsigned long long words = 0;

static void set_error(plugin_string_t *err, const char *msg) {
  plugin_string_dup(err, msg);
}

bool exports_rtms_plugin_handler_init(plugin_list_tuple2_string_string_t *config,
                                      plugin_string_t *err) {
  bool ok = true;
  for (size_t i = 0; i < config->len; i++) {
    plugin_string_t *key = &config->ptr[i].f0;
    plugin_string_t *value = &config->ptr[i].f1;
    if (key->len == 3 && memcmp(key->ptr, "dir", 3) == 0 && value->len < sizeof out_dir) {
      memcpy(out_dir, value->ptr, value->len);
      out_dir[value->len] = 0;
    } else {
      set_error(err, "unknown config key; expected \"dir\"");
      ok = false;
      break;
    }
  }
  plugin_list_tuple2_string_string_free(config);
  return ok;
}

bool exports_rtms_plugin_handler_on_session_start(exports_rtms_plugin_handler_session_info_t *info,
                                                  plugin_string_t *err) {
  char line[300];
  snprintf(line, sizeof line, "session %.*s started", (int)info->stream_id.len,
           (const char *)info->stream_id.ptr);
  plugin_string_t msg;
  plugin_string_dup(&msg, line);
  rtms_plugin_host_log(RTMS_PLUGIN_TYPES_LEVEL_INFO, &msg);
  plugin_string_free(&msg);
  snprintf(path, sizeof path, "%s/words-%.*s.txt", out_dir, (int)info->stream_id.len,
           (const char *)info->stream_id.ptr);
  // A resumed session (after a reload or a trap) continues the file an earlier instance
  // wrote: append. A new one starts it afresh.
  FILE *fp = fopen(path, info->resumed ? "a" : "w");
  exports_rtms_plugin_handler_session_info_free(info);
  if (!fp) {
    set_error(err, "cannot open the words file in the granted directory");
    return false;
  }
  fclose(fp);
  return true;
}

bool exports_rtms_plugin_handler_on_frames(uint64_t session,
                                           exports_rtms_plugin_handler_list_frame_t *frames,
                                           plugin_string_t *err) {
  (void)session;
  bool ok = true;
  for (size_t i = 0; i < frames->len && ok; i++) {
    exports_rtms_plugin_handler_frame_t *f = &frames->ptr[i];
    if (f->kind != RTMS_PLUGIN_TYPES_MEDIA_KIND_TRANSCRIPT || !f->text.is_some) {
      continue;
    }
    unsigned long long n = 0;
    bool in_word = false;
    for (size_t j = 0; j < f->text.val.len; j++) {
      bool space = isspace(f->text.val.ptr[j]);
      if (!space && !in_word) {
        n++;
      }
      in_word = !space;
    }
    lines++;
    words += n;
    FILE *fp = fopen(path, "a");
    if (!fp) {
      set_error(err, "cannot append to the words file");
      ok = false;
      break;
    }
    fprintf(fp, "#%llu %.*s: %llu words\n", (unsigned long long)f->seq, (int)f->user_name.len,
            (const char *)f->user_name.ptr, n);
    fclose(fp);
  }
  exports_rtms_plugin_handler_list_frame_free(frames);
  return ok;
}

bool exports_rtms_plugin_handler_on_session_end(uint64_t session,
                                                exports_rtms_plugin_handler_end_reason_t *reason,
                                                plugin_string_t *err) {
  (void)session;
  (void)err;
  exports_rtms_plugin_handler_end_reason_free(reason);
  // The counts of what this instance saw (a resumed session's file holds every line).
  char message[128], data[128];
  snprintf(message, sizeof message, "%llu transcript lines, %llu words", lines, words);
  snprintf(data, sizeof data, "{\"lines\":%llu,\"words\":%llu}", lines, words);
  rtms_plugin_host_output_t out;
  plugin_string_dup(&out.kind, "words");
  out.severity = RTMS_PLUGIN_TYPES_SEVERITY_INFO;
  plugin_string_dup(&out.message, message);
  out.data.is_some = true;
  plugin_string_dup(&out.data.val, data);
  rtms_plugin_host_emit(&out);
  rtms_plugin_host_output_free(&out);
  return true;
}
