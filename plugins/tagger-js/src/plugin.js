// tagger: matches every transcript and chat line against regular expressions and emits one
// tagged output per rule that matches: action items, questions, dates, or whatever the
// operator configures.
//
// Config (every key optional):
//   rules     an array of { tag, pattern, flags?, severity? } (TOML array of tables, passed
//             as JSON); replaces the built-in rules below
//   chat      also tag chat messages (default true)
//
// Module layout for componentize-js: the host's functions are imported from the interface
// 'rtms:plugin/host@0.1.0', the module exports `handler`, enums are strings, u64 values are
// BigInts, and throwing a string returns result::err to the host.
import { log, emit } from 'rtms:plugin/host@0.1.0';

const DEFAULT_RULES = [
  {
    tag: 'action-item',
    pattern:
      "\\b(I'll|I will|we'll|we will|we need to|let's|action item|to-?do|follow up|can you|could you|please)\\b",
    flags: 'i',
    severity: 'notice',
  },
  {
    tag: 'question',
    pattern: '\\?\\s*$|^(who|what|when|where|why|how|do|does|did|can|could|should|is|are)\\b',
    flags: 'i',
    severity: 'info',
  },
  {
    tag: 'date',
    pattern:
      '\\b(today|tomorrow|tonight|yesterday|next (week|month|quarter)|end of (the )?(day|week|month|quarter)|(mon|tues|wednes|thurs|fri|satur|sun)day|(jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]* \\d{1,2}|\\d{1,2}/\\d{1,2}(/\\d{2,4})?|\\d{4}-\\d{2}-\\d{2}|eod|eow)\\b',
    flags: 'i',
    severity: 'info',
  },
];

const SEVERITIES = ['info', 'notice', 'warning', 'critical'];

let rules = [];
let tagChat = true;
const counts = new Map();

function compile(list) {
  if (!Array.isArray(list) || list.length === 0) {
    throw 'rules: expected a non-empty array of { tag, pattern, flags, severity } tables';
  }
  return list.map((r, i) => {
    if (typeof r.tag !== 'string' || r.tag === '' || typeof r.pattern !== 'string') {
      throw `rules[${i}]: needs a "tag" and a "pattern" (strings)`;
    }
    const severity = r.severity ?? 'info';
    if (!SEVERITIES.includes(severity)) {
      throw `rules[${i}] (${r.tag}): severity "${severity}"; expected one of ${SEVERITIES.join(', ')}`;
    }
    let re;
    try {
      re = new RegExp(r.pattern, (r.flags ?? '').replace('g', ''));
    } catch (e) {
      throw `rules[${i}] (${r.tag}): the pattern does not compile: ${e.message}`;
    }
    return { tag: r.tag, re, severity };
  });
}

export const handler = {
  init(config) {
    rules = compile(DEFAULT_RULES);
    for (const [key, value] of config) {
      if (key === 'rules') {
        let list;
        try {
          list = JSON.parse(value);
        } catch (e) {
          throw `rules: not JSON (${e.message})`;
        }
        rules = compile(list);
      } else if (key === 'chat') {
        tagChat = value === 'true';
      } else {
        throw `unknown config key "${key}"; expected "rules" or "chat"`;
      }
    }
  },

  onSessionStart(info) {
    log('debug', `tagging ${info.streamId} with ${rules.length} rules`);
  },

  onFrames(session, frames) {
    for (const f of frames) {
      if (f.kind !== 'transcript' && !(f.kind === 'chat' && tagChat)) {
        continue;
      }
      const text = (f.text ?? '').trim();
      if (text === '') {
        continue;
      }
      for (const rule of rules) {
        const m = rule.re.exec(text);
        if (m === null) {
          continue;
        }
        counts.set(rule.tag, (counts.get(rule.tag) ?? 0) + 1);
        emit({
          kind: rule.tag,
          severity: rule.severity,
          message: `${f.userName}${f.kind === 'chat' ? ' (chat)' : ''}: ${text}`,
          data: JSON.stringify({
            tag: rule.tag,
            source: f.kind,
            speaker: f.userName,
            text,
            match: m[0],
          }),
        });
      }
    }
  },

  onSessionEnd(session, reason) {
    const summary = Object.fromEntries([...counts.entries()].sort());
    const parts = [...counts.entries()].sort().map(([t, n]) => `${n} ${t}`);
    emit({
      kind: 'tag-summary',
      severity: 'info',
      message: parts.length > 0 ? parts.join(', ') : 'nothing tagged',
      data: JSON.stringify(summary),
    });
  },
};
