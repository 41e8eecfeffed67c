"""One HTTP request through wasi:http/outgoing-handler, synchronously: build the request,
send it, block on the future response, read the body.

The host sends it only if the operator's [plugin.net] http list allows the URL; a refusal,
a timeout or a network failure raises Err with wasi:http's error code."""

from typing import Dict, Tuple
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as http

METHODS = {"GET": http.Method_Get(), "POST": http.Method_Post(), "PUT": http.Method_Put(),
           "DELETE": http.Method_Delete(), "PATCH": http.Method_Patch()}


def request(method: str, url: str, headers: Dict[str, str], body: bytes = b"") -> Tuple[int, bytes]:
    """Sends the request and returns (status, body)."""
    u = urlsplit(url)
    fields = http.Fields.from_list([(k, v.encode()) for k, v in headers.items()])
    req = http.OutgoingRequest(fields)
    req.set_method(METHODS.get(method, http.Method_Other(method)))
    req.set_scheme(http.Scheme_Https() if u.scheme == "https" else http.Scheme_Http())
    req.set_authority(u.netloc)
    req.set_path_with_query((u.path or "/") + (f"?{u.query}" if u.query else ""))

    outgoing = req.body()
    with outgoing.write() as out:
        for i in range(0, len(body), 4096):  # at most 4096 bytes per blocking write
            out.blocking_write_and_flush(body[i:i + 4096])
    http.OutgoingBody.finish(outgoing, None)

    future = outgoing_handler.handle(req, None)  # raises Err(error code) when refused at once
    with future.subscribe() as ready:
        ready.block()  # the plugin waits here; the host does the I/O
    result = future.get()  # Ok(Ok(response)), or Ok(Err(error code)) when it failed
    if not isinstance(result, Ok) or not isinstance(result.value, Ok):
        why = result.value.value if isinstance(result, Ok) else "no response"
        raise Err(f"{method} {url}: {why}")
    response = result.value.value
    status = response.status()

    chunks = []
    with response.consume() as incoming:
        with incoming.stream() as stream:
            while True:
                try:
                    chunks.append(stream.blocking_read(65536))
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break  # the end of the body
                    raise Err(f"{method} {url}: reading the body: {e.value}")
    return status, b"".join(chunks)
