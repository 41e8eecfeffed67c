#!/usr/bin/env bash
# Three rtms-host processes sharing one NATS JetStream engine on this machine, the Zoom
# simulator playing meetings whose webhooks go to host a, and host c killed with kill -9 in the
# middle: its meetings go on at a and b. Everything listens on 127.0.0.1 only.
#
#   examples/cluster/run.sh                    # 12 meetings, host c killed after 25 s
#   MEETINGS=30 KILL_AFTER=40 examples/cluster/run.sh
#
# Needs Debian's nats-server (scripts/install-nats). Uses target/release/rtms-host (built if
# missing) or $RTMS_HOST_BIN. Ports: NATS_PORT (4222), webhooks 8081-8083, admin 9465-9467
# (BASE_PORT / ADMIN_BASE to move them). Prometheus, when installed, scrapes the three admin
# listeners with prometheus.yml here; point Grafana at it and import
# examples/grafana/rtms-host.json. The working directory (logs, transcripts) is kept and named at
# the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

meetings=${MEETINGS:-12}
kill_after=${KILL_AFTER:-25}
nats_port=${NATS_PORT:-4222}
base=${BASE_PORT:-8080}
admin_base=${ADMIN_BASE:-9464}

if ! command -v nats-server >/dev/null; then
    echo "nats-server is not installed: run scripts/install-nats (apt-get install nats-server)" >&2
    exit 1
fi
bin=${RTMS_HOST_BIN:-target/release/rtms-host}
if [ ! -x "$bin" ]; then
    echo "building rtms-host (release; the first build takes a few minutes)"
    cargo build --release --quiet
fi

work=$(mktemp -d -t rtms-cluster.XXXXXX)
mkdir -p "$work/out"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "logs and transcripts kept in $work"
}
trap cleanup EXIT

# Waits until "$1" holds "$2" (at most 60 s).
wait_for() {
    for _ in $(seq 600); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$2' in $1" >&2
    exit 1
}

echo "== engine: nats-server -js on 127.0.0.1:$nats_port, data in $work/nats"
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
wait_for "$work/nats.log" "Server is ready"

export ZM_RTMS_CLIENT=test_client_id ZM_RTMS_SECRET=test_client_secret
export ZOOM_SECRET_TOKEN=test_webhook_secret
export RTMS_ALLOWED_HOSTS=127.0.0.1 RTMS_ALLOW_INSECURE_WS=true RTMS_LOG_FORMAT=json

declare -A host_pid
i=0
for h in a b c; do
    i=$((i + 1))
    mkdir -p "$work/$h"
    sed -e "s|@LISTEN@|127.0.0.1:$((base + i))|" \
        -e "s|@ADMIN@|127.0.0.1:$((admin_base + i))|" \
        -e "s|@NATS@|nats://127.0.0.1:$nats_port|" \
        -e "s|@HOST@|host-$h|" \
        -e "s|@OUT@|$work/out|" \
        examples/cluster/pipeline.toml.in >"$work/$h/pipeline.toml"
    "$bin" run --config "$work/$h/pipeline.toml" >"$work/$h/outputs.log" 2>"$work/$h/host.log" &
    host_pid[$h]=$!
    pids+=($!)
    wait_for "$work/$h/host.log" "rtms-host ready"
    echo "== host-$h: webhooks on 127.0.0.1:$((base + i)), admin on 127.0.0.1:$((admin_base + i))"
done

if command -v prometheus >/dev/null; then
    prometheus --config.file=examples/cluster/prometheus.yml --storage.tsdb.path="$work/prometheus" \
        --web.listen-address=127.0.0.1:9090 >"$work/prometheus.log" 2>&1 &
    pids+=($!)
    echo "== prometheus on 127.0.0.1:9090"
fi

echo "== simulator: $meetings meetings, webhooks to host-a"
"$bin" simulate --count "$meetings" --webhook-url "http://127.0.0.1:$((base + 1))/webhook" \
    >"$work/simulator.log" 2>&1 &
sim=$!
pids+=($sim)

sleep "$kill_after"
echo "== kill -9 host-c after ${kill_after}s"
kill -9 "${host_pid[c]}"
wait "${host_pid[c]}" 2>/dev/null || true

wait "$sim" || true
echo "== meetings done"
for h in a b; do
    n=$(grep -c '"cluster: stream taken"' "$work/$h/host.log" || true)
    over=$(grep '"cluster: stream taken"' "$work/$h/host.log" | grep -c Takeover || true)
    echo "host-$h took $n streams, $over of them from host-c"
done
lines=$(cat "$work"/out/* 2>/dev/null | wc -l)
echo "$lines transcript lines written to $work/out by the three hosts"
