// Written by `rtms-host plugin build` for each build (do not edit, do not commit): the
// module's `handler`, with whatever one of its calls throws turned into the error string the
// host reports, naming the error, its message and where it was thrown in the source.
import { handler as inner } from '{{import}}';

const SELF = '{{self}}';

// The frames of the author's code: innermost first, up to this wrapper's own.
function where(e) {
  const frames = String(e.stack ?? '')
    .split('\n')
    .filter((l) => l.length > 0);
  const own = frames.findIndex((l) => l.includes(SELF));
  const author = own >= 0 ? frames.slice(0, own) : frames;
  return author.length > 0 ? ` (at ${author.join(' < ')})` : '';
}

function describe(e) {
  if (typeof e === 'string') return e;
  if (e instanceof Error) {
    let payload = '';
    if (e.payload !== undefined) {
      try {
        payload = ` [payload ${JSON.stringify(e.payload, (_, v) => (typeof v === 'bigint' ? `${v}` : v))}]`;
      } catch {
        payload = '';
      }
    }
    return `${e.name}: ${e.message}${payload}${where(e)}`;
  }
  try {
    return `thrown ${typeof e}: ${JSON.stringify(e)}`;
  } catch {
    return `thrown ${typeof e}: ${String(e)}`;
  }
}

function wrap(name) {
  const f = inner?.[name];
  if (typeof f !== 'function') return f;
  return function (...args) {
    try {
      return f.apply(inner, args);
    } catch (e) {
      throw describe(e);
    }
  };
}

export const handler = {};
for (const name of ['init', 'onSessionStart', 'onFrames', 'onSessionEnd', 'onWsMessage', 'onWsEvent']) {
  const f = wrap(name);
  if (f !== undefined) handler[name] = f;
}
