"""{{name}}: counts the transcript lines and words of a meeting. Each line goes to
<dir>/words-<stream id>.txt as it comes ("#<seq> <speaker>: <n> words"), and the counts are
emitted when the session ends."""

import json
from typing import List, Tuple

from wit_world import exports
from componentize_py_types import Err
from wit_world.imports import host, types

# One instance serves one session and calls never overlap: module globals are per-meeting state.
state = {"dir": "/out", "path": "", "lines": 0, "words": 0}


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
        # One file per meeting, named after the stream. A resumed session (after a reload or
        # a trap) continues the file an earlier instance wrote: append. A new one starts it.
        state["path"] = f"{state['dir']}/words-{info.stream_id}.txt"
        open(state["path"], "a" if info.resumed else "w").close()

    def on_frames(self, session: int, frames: List[types.Frame]) -> None:
        for f in frames:
            if f.kind == types.MediaKind.TRANSCRIPT:
                n = len((f.text or "").split())
                state["lines"] += 1
                state["words"] += n
                with open(state["path"], "a") as out:
                    out.write(f"#{f.seq} {f.user_name}: {n} words\n")

    def on_session_end(self, session: int, reason: types.EndReason) -> None:
        # The counts of what this instance saw (a resumed session's file holds every line).
        lines, words = state["lines"], state["words"]
        host.emit(
            types.Output(
                kind="words",
                severity=types.Severity.INFO,
                message=f"{lines} transcript lines, {words} words",
                data=json.dumps({"lines": lines, "words": words}),
            )
        )
