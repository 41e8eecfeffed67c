"""{{name}}: counts the transcript lines and words of a meeting, writes the counts to
<dir>/words.txt and emits them when the session ends."""

import json
from typing import List, Tuple

from wit_world import exports
from componentize_py_types import Err
from wit_world.imports import host, types

# One instance serves one session and calls never overlap: module globals are per-meeting state.
state = {"dir": "/out", "lines": 0, "words": 0}


class Handler(exports.Handler):
    def init(self, config: List[Tuple[str, str]]) -> None:
        for key, value in config:
            if key == "dir":
                state["dir"] = value
            else:
                # Raising Err returns result::err to the host; any other exception traps.
                raise Err(f'unknown config key "{key}"; expected "dir"')

    def on_session_start(self, info: types.SessionInfo) -> None:
        host.log(types.Level.INFO, f"session {info.stream_id} started")

    def on_frames(self, session: int, frames: List[types.Frame]) -> None:
        for f in frames:
            if f.kind == types.MediaKind.TRANSCRIPT:
                state["lines"] += 1
                state["words"] += len((f.text or "").split())

    def on_session_end(self, session: int, reason: types.EndReason) -> None:
        lines, words = state["lines"], state["words"]
        with open(f"{state['dir']}/words.txt", "w") as out:
            out.write(f"lines {lines}\nwords {words}\n")
        host.emit(
            types.Output(
                kind="words",
                severity=types.Severity.INFO,
                message=f"{lines} transcript lines, {words} words",
                data=json.dumps({"lines": lines, "words": words}),
            )
        )
