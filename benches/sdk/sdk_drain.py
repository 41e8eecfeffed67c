"""Drains one simulated meeting into Zoom's official RTMS SDK (PyPI `rtms`) and reports
its rate. Run by rtms-bench (benches/src/sdk.rs).

The SDK's webhook receiver is bound to 127.0.0.1 on a free port (printed first as
{"webhook_port": N}). On `*.rtms_started` the script joins with the webhook payload, as
Zoom's examples do, with L16 16 kHz mono audio of SDK_FRAME_MS per message, and counts
audio callbacks (the callback does nothing else). When SDK_FRAMES frames have arrived, or
the SDK leaves, or SDK_TIMEOUT seconds pass, it prints one line:
{"frames": N, "wall_s": first..last callback, "cpu_s": this process's CPU over that time}
and exits. Credentials and the CA come from ZM_RTMS_CLIENT / ZM_RTMS_SECRET / ZM_RTMS_CA.
"""

import http.server
import json
import os
import sys
import threading
import time

import rtms

TARGET = int(os.environ.get("SDK_FRAMES", "1000"))
FRAME_MS = int(os.environ.get("SDK_FRAME_MS", "20"))
state = {"n": 0, "t0": None, "c0": None, "t1": None, "c1": None, "done": False}
lock = threading.Lock()


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


def report(reason):
    with lock:
        if state["done"]:
            return
        state["done"] = True
        if state["t0"] is not None and state["t1"] is None:
            state["t1"] = time.perf_counter()
            state["c1"] = time.process_time()
    wall = (state["t1"] - state["t0"]) if state["t0"] is not None else 0.0
    cpu = (state["c1"] - state["c0"]) if state["c0"] is not None else 0.0
    emit({"frames": state["n"], "wall_s": wall, "cpu_s": cpu, "reason": reason})
    threading.Timer(0.1, rtms.stop).start()


def on_audio(data, size, timestamp, md):
    n = state["n"] + 1
    state["n"] = n
    if n == 1:
        state["t0"] = time.perf_counter()
        state["c0"] = time.process_time()
    if n == TARGET:
        state["t1"] = time.perf_counter()
        state["c1"] = time.process_time()
        report("target")


@rtms.on_webhook_event
def on_webhook(payload):
    if not payload.get("event", "").endswith("rtms_started"):
        return
    client = rtms.Client()
    clients.append(client)
    client.set_audio_params(
        rtms.AudioParams(
            content_type=2, codec=1, sample_rate=1, channel=1, data_opt=1,
            duration=FRAME_MS, frame_size=16 * FRAME_MS,
        )
    )
    client.on_audio_data(on_audio)
    client.on_leave(lambda reason: report("leave %s" % reason))
    client.join(payload["payload"])


threading.Timer(float(os.environ.get("SDK_TIMEOUT", "120")), lambda: report("timeout")).start()
rtms.run()
