"""talk-time: who spoke how long, how often and how much in a meeting.

Per speaker it counts the talk time (the sum of the transcript segments' durations), the
turns (a turn is a run of consecutive transcript segments by one speaker) and the words.
When the session ends it writes the table to <dir>/talk-time-<stream id>.txt (when `dir`
is set) and emits one `talk-time` output with every figure as JSON.

Config (every key optional):
    dir         the guest path of a granted directory to write the summary to ("" = none)
    min_words   segments with fewer words are not counted as a turn (default 1)
"""

import json
from typing import Dict, List, Optional, Tuple

from wit_world import exports
from componentize_py_types import Err
from wit_world.imports import host, types


class Speaker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.talk_ms = 0
        self.turns = 0
        self.words = 0
        self.segments = 0


# One instance serves one session and calls never overlap: module globals are per-meeting state.
config = {"dir": "", "min_words": 1}
speakers: Dict[str, Speaker] = {}
last_speaker: Optional[str] = None
stream_id = "meeting"
resumed = False


class Handler(exports.Handler):
    def init(self, pairs: List[Tuple[str, str]]) -> None:
        for key, value in pairs:
            if key == "dir":
                config["dir"] = value.rstrip("/")
            elif key == "min_words":
                try:
                    config["min_words"] = int(json.loads(value))
                except (ValueError, TypeError):
                    raise Err(f"min_words = {value}: expected a whole number such as 1")
            else:
                # A key nobody reads is most likely a typo in pipeline.toml: refuse it.
                raise Err(f'unknown config key "{key}"; expected "dir" or "min_words"')

    def on_session_start(self, info: types.SessionInfo) -> None:
        global stream_id, resumed
        stream_id = info.stream_id
        resumed = info.resumed
        if resumed:
            host.log(
                types.Level.WARN,
                "resumed after a restart: the summary covers only what this instance saw",
            )

    def on_frames(self, session: int, frames: List[types.Frame]) -> None:
        global last_speaker
        for f in frames:
            if f.kind != types.MediaKind.TRANSCRIPT or f.transcript is None:
                continue
            key = f.user_id or f.user_name
            s = speakers.get(key)
            if s is None:
                s = speakers[key] = Speaker(f.user_name or f.user_id)
            words = len((f.text or "").split())
            s.segments += 1
            s.words += words
            s.talk_ms += max(0, f.transcript.end_ms - f.transcript.start_ms)
            if key != last_speaker and words >= config["min_words"]:
                s.turns += 1
                last_speaker = key

    def on_session_end(self, session: int, reason: types.EndReason) -> None:
        total_ms = sum(s.talk_ms for s in speakers.values())
        ranked = sorted(speakers.values(), key=lambda s: (-s.talk_ms, s.name))
        rows = [
            {
                "speaker": s.name,
                "talk_ms": s.talk_ms,
                "share_percent": round(100 * s.talk_ms / total_ms, 1) if total_ms else 0.0,
                "turns": s.turns,
                "words": s.words,
            }
            for s in ranked
        ]
        if config["dir"]:
            path = f"{config['dir']}/talk-time-{stream_id}.txt"
            try:
                with open(path, "w") as out:
                    out.write(table(rows, total_ms))
            except OSError as e:
                raise Err(f"cannot write {path}: {e}")
        top = rows[0] if rows else None
        message = (
            f"{len(rows)} speakers, {total_ms / 1000:.1f} s of speech; most: "
            f"{top['speaker']} ({top['talk_ms'] / 1000:.1f} s, {top['turns']} turns, {top['words']} words)"
            if top
            else "nobody spoke"
        )
        host.emit(
            types.Output(
                kind="talk-time",
                severity=types.Severity.INFO,
                message=message,
                data=json.dumps({"total_ms": total_ms, "resumed": resumed, "speakers": rows}),
            )
        )


def table(rows: List[dict], total_ms: int) -> str:
    lines = [f"{'speaker':<24} {'talk':>8} {'share':>6} {'turns':>5} {'words':>6}"]
    for r in rows:
        lines.append(
            f"{r['speaker'][:24]:<24} {r['talk_ms'] / 1000:>7.1f}s {r['share_percent']:>5.1f}% "
            f"{r['turns']:>5} {r['words']:>6}"
        )
    lines.append(f"{'total':<24} {total_ms / 1000:>7.1f}s")
    return "\n".join(lines) + "\n"
