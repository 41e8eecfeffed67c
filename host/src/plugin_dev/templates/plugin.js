// {{name}}: counts the transcript lines and words of a meeting. Each line is emitted as it
// comes (`#<seq> <speaker>: <n> words`; JavaScript has no files: a JSON Lines sink writes
// the outputs to one), and the counts when the session ends.
//
// The host's functions come from the interface 'rtms:plugin/host@0.1.0'; the module exports
// `handler` with the four calls in camelCase. Enums are strings ('transcript', 'info'),
// u64 values are BigInts, and throwing a string returns result::err to the host.
import { log, emit } from 'rtms:plugin/host@0.1.0';

// One instance serves one session and calls never overlap: module state is per-meeting.
let lines = 0;
let words = 0;

export const handler = {
  init(config) {
    for (const [key] of config) {
      // Refusing a key nobody reads catches typos in pipeline.toml.
      throw `unknown config key "${key}"; this plugin takes none`;
    }
  },

  onSessionStart(info) {
    log('info', `session ${info.streamId} started`);
  },

  onFrames(session, frames) {
    for (const f of frames) {
      if (f.kind === 'transcript') {
        const n = (f.text ?? '').split(/\s+/).filter((w) => w.length > 0).length;
        lines += 1;
        words += n;
        emit({ kind: 'line', severity: 'info', message: `#${f.seq} ${f.userName}: ${n} words` });
      }
    }
  },

  onSessionEnd(session, reason) {
    // The counts of what this instance saw (after a reload, a new instance counts anew).
    emit({
      kind: 'words',
      severity: 'info',
      message: `${lines} transcript lines, ${words} words`,
      data: JSON.stringify({ lines, words }),
    });
  },
};
