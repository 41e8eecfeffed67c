// audio-levels: per-frame audio levels, with an alert after a stretch of silence and when
// the audio clips.
//
// For every audio frame (16-bit PCM, `l16`) it measures the RMS and peak level in dBFS. It
// emits:
//   silence       (warning) once per stretch of at least `silence_secs` with no voice: frames
//                 quieter than `silence_dbfs`, or no audio at all (Zoom sends none while
//                 nobody speaks, so such a stretch is reported when the audio resumes);
//   clipping      (warning) when a frame has `clip_samples` samples at or above `clip_dbfs`,
//                 at most once per `clip_cooldown_secs`;
//   audio-levels  (info) at session end: frames, seconds, average and peak level, counts.
// Times in outputs are milliseconds from the session's first audio frame.
//
// Config (numbers; every key optional): silence_secs 5, silence_dbfs -50, clip_dbfs -0.1,
// clip_samples 3, clip_cooldown_secs 5.
//
// Ownership: every argument the host passes belongs to this code and is freed here with
// the generated *_free functions; strings handed to the host are duplicated first and freed
// after the call (imports borrow their arguments).

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

typedef struct {
  double silence_ms;
  double silence_dbfs;
  double clip_dbfs;
  unsigned clip_samples;
  double clip_cooldown_ms;
} config_t;

static config_t cfg = {5000, -50, -0.1, 3, 5000};

// One instance serves one session and calls never overlap: globals are per-meeting state.
static struct {
  bool pcm;            // l16 audio: levels can be measured
  uint32_t frame_ms;   // length of one frame
  bool started;        // a frame has been seen
  uint64_t t0;         // timestamp of the first frame
  uint64_t last_voice; // end of the last voiced frame
  bool silence_reported;
  uint64_t last_clip_alert;
  bool clip_alerted;
  uint64_t frames, voiced_frames, clipped_frames, silences, clip_alerts, clip_suppressed;
  double energy;      // sum of mean squares over measured frames
  uint64_t measured;  // frames measured
  double peak;        // highest |sample| seen, 0..32768
} st = {.frame_ms = 20};

static void emit(const char *kind, rtms_plugin_types_severity_t sev, const char *message,
                 const char *data) {
  rtms_plugin_host_output_t out;
  plugin_string_dup(&out.kind, kind);
  out.severity = sev;
  plugin_string_dup(&out.message, message);
  out.data.is_some = data != NULL;
  if (data) plugin_string_dup(&out.data.val, data);
  rtms_plugin_host_emit(&out);
  rtms_plugin_host_output_free(&out);
}

static void log_line(rtms_plugin_host_level_t level, const char *text) {
  plugin_string_t msg;
  plugin_string_dup(&msg, text);
  rtms_plugin_host_log(level, &msg);
  plugin_string_free(&msg);
}

static double dbfs(double amplitude) {
  return amplitude <= 0 ? -120.0 : 20.0 * log10(amplitude / 32768.0);
}

// Parses a number from the config's JSON text; false when it is not one.
static bool number(const plugin_string_t *v, double *out) {
  char buf[64];
  if (v->len == 0 || v->len >= sizeof buf) return false;
  memcpy(buf, v->ptr, v->len);
  buf[v->len] = 0;
  char *end;
  *out = strtod(buf, &end);
  return *end == 0;
}

static bool key_is(const plugin_string_t *k, const char *name) {
  return k->len == strlen(name) && memcmp(k->ptr, name, k->len) == 0;
}

bool exports_rtms_plugin_handler_init(plugin_list_tuple2_string_string_t *config,
                                      plugin_string_t *err) {
  char msg[200] = "";
  for (size_t i = 0; i < config->len && !msg[0]; i++) {
    plugin_string_t *k = &config->ptr[i].f0;
    double v;
    if (!number(&config->ptr[i].f1, &v)) {
      snprintf(msg, sizeof msg, "%.*s: expected a number", (int)k->len, (const char *)k->ptr);
    } else if (key_is(k, "silence_secs") && v > 0) {
      cfg.silence_ms = v * 1000;
    } else if (key_is(k, "silence_dbfs") && v <= 0) {
      cfg.silence_dbfs = v;
    } else if (key_is(k, "clip_dbfs") && v <= 0) {
      cfg.clip_dbfs = v;
    } else if (key_is(k, "clip_samples") && v >= 1) {
      cfg.clip_samples = (unsigned)v;
    } else if (key_is(k, "clip_cooldown_secs") && v >= 0) {
      cfg.clip_cooldown_ms = v * 1000;
    } else {
      snprintf(msg, sizeof msg,
               "%.*s: unknown key or value out of range (silence_secs > 0, silence_dbfs <= 0, "
               "clip_dbfs <= 0, clip_samples >= 1, clip_cooldown_secs >= 0)",
               (int)k->len, (const char *)k->ptr);
    }
  }
  plugin_list_tuple2_string_string_free(config);
  if (msg[0]) {
    plugin_string_dup(err, msg);
    return false;
  }
  return true;
}

bool exports_rtms_plugin_handler_on_session_start(exports_rtms_plugin_handler_session_info_t *info,
                                                  plugin_string_t *err) {
  (void)err;
  if (info->audio.is_some) {
    st.pcm = info->audio.val.codec == RTMS_PLUGIN_TYPES_AUDIO_CODEC_L16;
    st.frame_ms = info->audio.val.frame_ms ? info->audio.val.frame_ms : 20;
  }
  if (!st.pcm) {
    log_line(RTMS_PLUGIN_TYPES_LEVEL_WARN,
             "audio is not l16: levels are not measured, only silences (gaps) are reported");
  }
  exports_rtms_plugin_handler_session_info_free(info);
  return true;
}

static void report_silence(uint64_t from, uint64_t to, bool ongoing) {
  char message[160], data[160];
  st.silences++;
  snprintf(message, sizeof message, "%s%.1f s without voice (from %.1f s)",
           ongoing ? "silent for " : "", (double)(to - from) / 1000.0,
           (double)(from - st.t0) / 1000.0);
  snprintf(data, sizeof data, "{\"from_ms\":%llu,\"to_ms\":%llu,\"ongoing\":%s}",
           (unsigned long long)(from - st.t0), (unsigned long long)(to - st.t0),
           ongoing ? "true" : "false");
  emit("silence", RTMS_PLUGIN_TYPES_SEVERITY_WARNING, message, data);
}

static void frame(const rtms_plugin_types_frame_t *f) {
  uint64_t ts = f->timestamp_ms;
  if (!st.started) {
    st.started = true;
    st.t0 = ts;
    st.last_voice = ts;
  }
  st.frames++;
  size_t n = f->payload.len / 2;
  double level = 0;  // dBFS
  unsigned clipped = 0;
  double peak = 0;
  if (st.pcm && n > 0) {
    double clip_at = 32768.0 * pow(10.0, cfg.clip_dbfs / 20.0);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
      int16_t s = (int16_t)(f->payload.ptr[2 * i] | (f->payload.ptr[2 * i + 1] << 8));
      double a = fabs((double)s);
      sum += a * a;
      if (a > peak) peak = a;
      if (a >= clip_at) clipped++;
    }
    double ms = sum / (double)n;
    st.energy += ms;
    st.measured++;
    if (peak > st.peak) st.peak = peak;
    level = dbfs(sqrt(ms));
  }
  bool voiced = !st.pcm || level >= cfg.silence_dbfs;
  if (voiced) {
    st.voiced_frames++;
    // No audio at all for a while (nobody spoke): reported now that it resumes.
    if (!st.silence_reported && ts > st.last_voice && (double)(ts - st.last_voice) >= cfg.silence_ms) {
      report_silence(st.last_voice, ts, false);
    }
    st.silence_reported = false;
    st.last_voice = ts + st.frame_ms;
  } else if (!st.silence_reported && (double)(ts + st.frame_ms - st.last_voice) >= cfg.silence_ms) {
    // Quiet frames keep coming (a muted or silent microphone): reported as it happens.
    report_silence(st.last_voice, ts + st.frame_ms, true);
    st.silence_reported = true;
  }
  if (clipped >= cfg.clip_samples) {
    st.clipped_frames++;
    if (st.clip_alerted && (double)(ts - st.last_clip_alert) < cfg.clip_cooldown_ms) {
      st.clip_suppressed++;
      return;
    }
    st.clip_alerted = true;
    st.last_clip_alert = ts;
    st.clip_alerts++;
    char message[300], data[200];
    // Mixed audio (Zoom's default) names nobody: user id -1, an empty name.
    const char *who = (const char *)f->user_name.ptr;
    int who_len = (int)f->user_name.len;
    if (who_len == 0) {
      who = "The meeting's audio";
      who_len = (int)strlen(who);
    }
    snprintf(message, sizeof message, "%.*s is clipping: %u samples at or above %.1f dBFS (peak %.1f dBFS) at %.1f s",
             who_len, who, clipped, cfg.clip_dbfs, dbfs(peak), (double)(ts - st.t0) / 1000.0);
    snprintf(data, sizeof data, "{\"at_ms\":%llu,\"clipped_samples\":%u,\"peak_dbfs\":%.1f,\"user_id\":\"%.*s\"}",
             (unsigned long long)(ts - st.t0), clipped, dbfs(peak), (int)f->user_id.len,
             (const char *)f->user_id.ptr);
    emit("clipping", RTMS_PLUGIN_TYPES_SEVERITY_WARNING, message, data);
  }
}

bool exports_rtms_plugin_handler_on_frames(uint64_t session,
                                           exports_rtms_plugin_handler_list_frame_t *frames,
                                           plugin_string_t *err) {
  (void)session;
  (void)err;
  for (size_t i = 0; i < frames->len; i++) {
    if (frames->ptr[i].kind == RTMS_PLUGIN_TYPES_MEDIA_KIND_AUDIO) frame(&frames->ptr[i]);
  }
  exports_rtms_plugin_handler_list_frame_free(frames);
  return true;
}

bool exports_rtms_plugin_handler_on_session_end(uint64_t session,
                                                exports_rtms_plugin_handler_end_reason_t *reason,
                                                plugin_string_t *err) {
  (void)session;
  (void)err;
  exports_rtms_plugin_handler_end_reason_free(reason);
  double seconds = (double)(st.frames * st.frame_ms) / 1000.0;
  double avg = st.measured ? dbfs(sqrt(st.energy / (double)st.measured)) : -120.0;
  char message[300], data[400];
  snprintf(message, sizeof message,
           "%.1f s of audio in %llu frames: average %.1f dBFS, peak %.1f dBFS; %llu silences, "
           "%llu clipped frames",
           seconds, (unsigned long long)st.frames, avg, dbfs(st.peak),
           (unsigned long long)st.silences, (unsigned long long)st.clipped_frames);
  snprintf(data, sizeof data,
           "{\"frames\":%llu,\"voiced_frames\":%llu,\"seconds\":%.2f,\"average_dbfs\":%.1f,"
           "\"peak_dbfs\":%.1f,\"silences\":%llu,\"clipped_frames\":%llu,\"clipping_alerts\":%llu,"
           "\"clipping_alerts_suppressed\":%llu}",
           (unsigned long long)st.frames, (unsigned long long)st.voiced_frames, seconds, avg,
           dbfs(st.peak), (unsigned long long)st.silences, (unsigned long long)st.clipped_frames,
           (unsigned long long)st.clip_alerts, (unsigned long long)st.clip_suppressed);
  emit("audio-levels", RTMS_PLUGIN_TYPES_SEVERITY_INFO, message, data);
  return true;
}
