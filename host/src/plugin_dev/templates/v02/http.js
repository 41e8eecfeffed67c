// One HTTP request through wasi:http/outgoing-handler, synchronously: build the request,
// send it, block on the future response, read the body.
//
// The host sends it only if the operator's [plugin.net] http list allows the URL; a refusal,
// a timeout or a network failure throws, naming wasi:http's error code. (The engine's own
// `fetch` is switched off in these builds: see docs/plugin-guide/javascript.md.)
import { handle } from 'wasi:http/outgoing-handler@0.2.12';
import { Fields, OutgoingBody, OutgoingRequest } from 'wasi:http/types@0.2.12';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Sends the request and returns { status, body } (the body as text).
export function request(method, url, headers, body = '') {
  const u = new URL(url);
  const fields = Fields.fromList(
    Object.entries(headers).map(([k, v]) => [k, encoder.encode(v)]),
  );
  const req = new OutgoingRequest(fields);
  const known = ['get', 'post', 'put', 'delete', 'patch'];
  const m = method.toLowerCase();
  req.setMethod(known.includes(m) ? { tag: m } : { tag: 'other', val: method });
  req.setScheme({ tag: u.protocol === 'https:' ? 'HTTPS' : 'HTTP' }); // wasi:http spells these in capitals
  req.setAuthority(u.host);
  req.setPathWithQuery(u.pathname + u.search);

  const outgoing = req.body();
  const out = outgoing.write();
  const bytes = encoder.encode(body);
  for (let i = 0; i < bytes.length; i += 4096) {
    out.blockingWriteAndFlush(bytes.subarray(i, i + 4096)); // at most 4096 bytes a call
  }
  out[Symbol.dispose]();
  OutgoingBody.finish(outgoing, undefined);

  const future = handle(req, undefined); // throws when refused at once
  future.subscribe().block(); // the plugin waits here; the host does the I/O
  const result = future.get(); // { tag: 'ok', val: { tag: 'ok', val: response } }, or an error code
  if (result?.tag !== 'ok' || result.val.tag !== 'ok') {
    throw `${method} ${url}: ${JSON.stringify(result?.val?.val ?? 'no response')}`;
  }
  const response = result.val.val;

  const incoming = response.consume();
  const stream = incoming.stream();
  const chunks = [];
  for (;;) {
    try {
      chunks.push(stream.blockingRead(65536n));
    } catch (e) {
      if (e.payload?.tag === 'closed') break; // the end of the body
      throw `${method} ${url}: reading the body: ${e.payload?.tag ?? e}`;
    }
  }
  stream[Symbol.dispose]();
  return { status: response.status(), body: decoder.decode(concat(chunks)) };
}

function concat(chunks) {
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}
