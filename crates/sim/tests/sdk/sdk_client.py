"""Drives Zoom's official RTMS SDK (PyPI `rtms`) against the simulator.

Run by crates/sim/tests/official_sdk.rs. The SDK's webhook receiver is bound to
127.0.0.1 on a free port (printed as {"webhook_port": N}); on `*.rtms_started` the script
joins with the webhook payload, as Zoom's examples do, and prints one JSON line per
callback. It exits after the SDK reports leaving the stream (or after a timeout).
Credentials and the CA come from ZM_RTMS_CLIENT / ZM_RTMS_SECRET / ZM_RTMS_CA.
"""

import http.server
import json
import os
import sys
import threading

import rtms


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class LocalHTTPServer(http.server.HTTPServer):
    """The SDK's receiver binds 0.0.0.0; keep it on loopback and a free port."""

    def __init__(self, server_address, handler, *args, **kwargs):
        super().__init__(("127.0.0.1", 0), handler, *args, **kwargs)
        emit({"webhook_port": self.server_address[1]})


rtms.HTTPServer = LocalHTTPServer
clients = []


def finish(reason):
    emit({"kind": "leave", "reason": reason})
    threading.Timer(0.2, rtms.stop).start()


@rtms.on_webhook_event
def on_webhook(payload):
    event = payload.get("event", "")
    emit({"kind": "webhook", "event": event})
    if not event.endswith("rtms_started"):
        return
    client = rtms.Client()
    clients.append(client)
    try:
        client.set_audio_params(
            rtms.AudioParams(
                content_type=2, codec=1, sample_rate=1, channel=1, data_opt=1,
                duration=20, frame_size=320,
            )
        )
    except Exception as e:  # keep going with the SDK's defaults
        emit({"kind": "warning", "text": "set_audio_params failed: %s" % e})

    def on_audio(data, size, timestamp, md):
        emit({"kind": "audio", "len": len(data), "timestamp": timestamp,
              "user_id": md.userId, "user_name": md.userName})

    def on_transcript(data, size, timestamp, md):
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else str(data)
        emit({"kind": "transcript", "text": text, "timestamp": timestamp,
              "user_id": md.userId, "user_name": md.userName})

    if os.environ.get("SDK_VIDEO") == "individual":
        # Individual video as Zoom's SDK 1.1 does it: data_opt 4 on the video socket, and a
        # subscription for each participant whose video turns on.
        client.set_video_params(
            rtms.VideoParams(content_type=3, codec=7, resolution=2,
                             data_opt=rtms.DataOption.VIDEO_SINGLE_INDIVIDUAL_STREAM, fps=10)
        )

        def on_participant_video(users, is_on):
            emit({"kind": "participant_video", "users": list(users), "on": is_on})
            if is_on:
                for u in users:
                    client.subscribe_video(u, True)

        def on_video(data, size, timestamp, md):
            emit({"kind": "video", "len": len(data), "user_id": md.userId,
                  "user_name": md.userName})

        client.on_participant_video(on_participant_video)
        client.on_video_subscribed(lambda user_id, status, error: emit(
            {"kind": "video_subscribed", "user_id": user_id, "status": status}))
        client.on_video_data(on_video)

    client.on_audio_data(on_audio)
    client.on_transcript_data(on_transcript)
    client.on_join_confirm(lambda reason: emit({"kind": "join_confirm", "reason": reason}))
    client.on_session_update(lambda op, s: emit({"kind": "session_update", "op": op}))
    # As an application that wants participants does: the SDK then subscribes to event
    # types 2, 3 and 4 (msg 5) once its join is confirmed, and names mixed audio from the
    # active-speaker events it gets.
    client.on_user_update(lambda op, p: emit({"kind": "user_update", "op": op}))
    client.on_leave(finish)
    client.join(payload["payload"])


threading.Timer(float(os.environ.get("SDK_TEST_TIMEOUT", "40")), lambda: finish(-1)).start()
rtms.run()
