// {{name}}: counts the transcript lines and words of a meeting, writes the counts to
// <dir>/words.txt and emits them when the session ends.
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
  (void)err;
  plugin_string_t msg;
  plugin_string_dup(&msg, "session started");
  rtms_plugin_host_log(RTMS_PLUGIN_TYPES_LEVEL_INFO, &msg);
  plugin_string_free(&msg);
  exports_rtms_plugin_handler_session_info_free(info);
  return true;
}

bool exports_rtms_plugin_handler_on_frames(uint64_t session,
                                           exports_rtms_plugin_handler_list_frame_t *frames,
                                           plugin_string_t *err) {
  (void)session;
  (void)err;
  for (size_t i = 0; i < frames->len; i++) {
    exports_rtms_plugin_handler_frame_t *f = &frames->ptr[i];
    if (f->kind != RTMS_PLUGIN_TYPES_MEDIA_KIND_TRANSCRIPT || !f->text.is_some) {
      continue;
    }
    lines++;
    bool in_word = false;
    for (size_t j = 0; j < f->text.val.len; j++) {
      bool space = isspace(f->text.val.ptr[j]);
      if (!space && !in_word) {
        words++;
      }
      in_word = !space;
    }
  }
  exports_rtms_plugin_handler_list_frame_free(frames);
  return true;
}

bool exports_rtms_plugin_handler_on_session_end(uint64_t session,
                                                exports_rtms_plugin_handler_end_reason_t *reason,
                                                plugin_string_t *err) {
  (void)session;
  exports_rtms_plugin_handler_end_reason_free(reason);
  char path[300];
  snprintf(path, sizeof path, "%s/words.txt", out_dir);
  FILE *fp = fopen(path, "w");
  if (!fp) {
    set_error(err, "cannot write words.txt in the granted directory");
    return false;
  }
  fprintf(fp, "lines %llu\nwords %llu\n", lines, words);
  fclose(fp);

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
