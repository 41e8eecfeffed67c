"""{{name}}: counts a meeting's transcript lines and words in session state, posts the
counts to a notes service when the session ends, and emits what the service answered.

The counts live in the host (`state`), not in Python globals: a reload or a restart after a
trap mid-meeting starts a fresh instance, and it goes on counting where the last one stopped.
"""

import json
from typing import List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, secrets, state, websocket
from wit_world.imports import rtms_plugin_types as types

from http_call import request

# Set by init; one instance serves one session.
settings = {"notes_url": ""}


def count(key: str, delta: int) -> int:
    """Adds delta to the session's counter `key` and returns the new value."""
    try:
        return state.increment(state.Scope.SESSION, key, delta)
    except Err as e:  # state.Error_Full, ...: say which, as the call's error
        raise Err(f"state {key}: {e.value}")


class Handler(exports.Handler):
    def init(self, config: List[Tuple[str, str]]) -> None:
        for key, value in config:
            if key == "notes_url":
                settings["notes_url"] = value
            else:
                # Raising Err returns result::err to the host; any other exception traps.
                raise Err(f'unknown config key "{key}"; expected "notes_url"')
        if not settings["notes_url"].startswith(("http://", "https://")):
            raise Err('"notes_url" must be the notes service\'s http:// or https:// URL')

    def on_session_start(self, info: types.SessionInfo) -> None:
        host.log(types.Level.INFO, f"session {info.stream_id} started (resumed: {info.resumed})")

    def on_frames(self, session: int, frames: List[types.Frame]) -> None:
        texts = [f.text or "" for f in frames if f.kind == types.MediaKind.TRANSCRIPT]
        if texts:
            count("lines", len(texts))
            count("words", sum(len(t.split()) for t in texts))

    def on_session_end(self, session: int, reason: types.EndReason) -> None:
        lines, words = count("lines", 0), count("words", 0)
        key = secrets.get("NOTES_API_KEY") or ""
        status, body = request(
            "POST",
            settings["notes_url"],
            {"content-type": "application/json", "authorization": f"Bearer {key}"},
            json.dumps({"lines": lines, "words": words}).encode(),
        )
        if status // 100 != 2:
            raise Err(f"the notes service answered {status}: {body[:200]!r}")
        host.emit(
            types.Output(
                kind="words",
                severity=types.Severity.INFO,
                message=f"{lines} transcript lines, {words} words (notes service: {status})",
                data=json.dumps({"lines": lines, "words": words, "note": json.loads(body)}),
            )
        )

    # WebSocket messages and events (none here: this plugin opens no WebSocket).
    def on_ws_message(self, conn: int, message: websocket.WsMessage) -> None:
        pass

    def on_ws_event(self, conn: int, event: websocket.WsEvent) -> None:
        pass
