// {{name}}: counts a meeting's transcript lines and words in session state, posts the counts
// to a notes service when the session ends, and emits what the service answered.
//
// The counts live in the host (`state`), not in module variables: a reload or a restart
// after a trap mid-meeting starts a fresh instance, and it goes on counting where the last
// one stopped. Imports name their interface ('rtms:plugin/host@0.2.0'); enums are strings,
// u64 and s64 values are BigInts, and throwing a string returns result::err to the host.
import { log, emit } from 'rtms:plugin/host@0.2.0';
import { increment } from 'rtms:plugin/state@0.2.0';
import { get as secret } from 'rtms:plugin/secrets@0.2.0';
import { request } from './http.js';

let notesUrl = ''; // set by init; one instance serves one session

// Adds delta to the session's counter `key` and returns the new value (a Number).
function count(key, delta) {
  try {
    return Number(increment('session', key, BigInt(delta)));
  } catch (e) {
    // A state error arrives as an exception whose payload is { tag: 'full', val: '...' }, ...
    throw `state ${key}: ${e.payload?.tag ?? e}: ${e.payload?.val ?? ''}`;
  }
}

export const handler = {
  init(config) {
    for (const [key, value] of config) {
      if (key !== 'notes_url') throw `unknown config key "${key}"; expected "notes_url"`;
      notesUrl = value;
    }
    if (!/^https?:\/\//.test(notesUrl)) {
      throw `"notes_url" must be the notes service's http:// or https:// URL`;
    }
  },

  onSessionStart(info) {
    log('info', `session ${info.streamId} started (resumed: ${info.resumed})`);
  },

  onFrames(session, frames) {
    const texts = frames.filter((f) => f.kind === 'transcript').map((f) => f.text ?? '');
    if (texts.length > 0) {
      count('lines', texts.length);
      count('words', texts.reduce((n, t) => n + t.split(/\s+/).filter((w) => w).length, 0));
    }
  },

  onSessionEnd(session, reason) {
    const lines = count('lines', 0);
    const words = count('words', 0);
    const { status, body } = request('POST', notesUrl, {
      'content-type': 'application/json',
      authorization: `Bearer ${secret('NOTES_API_KEY') ?? ''}`,
    }, JSON.stringify({ lines, words }));
    if (status < 200 || status > 299) {
      throw `the notes service answered ${status}: ${body.slice(0, 200)}`;
    }
    emit({
      kind: 'words',
      severity: 'info',
      message: `${lines} transcript lines, ${words} words (notes service: ${status})`,
      data: JSON.stringify({ lines, words, note: JSON.parse(body) }),
    });
  },

  // WebSocket messages and events (none here: this plugin opens no WebSocket).
  onWsMessage(conn, message) {},
  onWsEvent(conn, event) {},
};
