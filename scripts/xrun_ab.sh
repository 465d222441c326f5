#!/usr/bin/env bash
# Xruns on a dummy JACK server (48 kHz, 128 frames) with and without Stagebox's CPU wake-up hold
# (PM QoS on /dev/cpu_dma_latency; `stagebox run --no-cpu-wake-hold` turns it off), in
# alternating pairs so that the VM's changing noise falls on both alike; then the server alone,
# idle, with no request and with a 0-µs request held by a helper.
# Usage: scripts/xrun_ab.sh [PAIRS] [SECONDS]   (needs root for the hold; builds release)
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}
secs=${2:-60}
cargo build --release -q
bin=./target/release/stagebox
tmp=$(mktemp -d)
one() { # $1 = label, rest = extra stagebox args
    local label=$1; shift
    local name="stagebox-ab-$$-$RANDOM"
    JACK_NO_AUDIO_RESERVATION=1 jackd -n "$name" -d dummy -r 48000 -p 128 >/dev/null 2>"$tmp/jackd.log" &
    local jp=$!
    sleep 1
    JACK_DEFAULT_SERVER=$name "$bin" run --backend jack --duration "$secs" --no-watch --no-osc --no-oscquery \
        --stats-json "$tmp/s.json" "$@" 2>"$tmp/run.log" || { cat "$tmp/run.log"; exit 1; }
    kill "$jp"; wait "$jp" 2>/dev/null || true
    python3 - "$label" "$tmp/s.json" "$tmp/jackd.log" <<'PY'
import json, sys
s = json.load(open(sys.argv[2]))
timer = open(sys.argv[3], errors="replace").read().count("JackTimedDriver::Process XRun")
cb = s["callback_us"]
print(f"| {sys.argv[1]} | {s['cpu_wake_us'] if s['cpu_wake_us'] is not None else 'off'} | {s['callbacks']} | {s['xruns']} | {timer} | {s['late_callbacks']} | {cb['median']:.0f} / {cb['p99']:.0f} / {cb['max']:.0f} |")
PY
}
idle() { # $1 = label, $2 = hold (0/1)
    local name="stagebox-idle-$$-$RANDOM" hp=""
    if [ "$2" = 1 ]; then
        python3 -c 'import os,struct,time; f=os.open("/dev/cpu_dma_latency",os.O_WRONLY); os.write(f,struct.pack("i",0)); time.sleep(1e6)' &
        hp=$!
    fi
    JACK_NO_AUDIO_RESERVATION=1 jackd -n "$name" -d dummy -r 48000 -p 128 >/dev/null 2>"$tmp/idle.log" &
    local jp=$!
    sleep "$secs"
    kill "$jp"; wait "$jp" 2>/dev/null || true
    [ -n "$hp" ] && { kill "$hp"; wait "$hp" 2>/dev/null || true; }
    echo "| $1 | $([ "$2" = 1 ] && echo 0 || echo none) | | | $(grep -c 'JackTimedDriver::Process XRun' "$tmp/idle.log") | | |"
}
echo "| run ($secs s, patches/default.toml) | wake bound (us) | callbacks | xruns (client notifications) | server timer xruns | late callbacks | callback median / p99 / max (us) |"
echo "|---|---:|---:|---:|---:|---:|---|"
for k in $(seq "$pairs"); do
    one "stagebox, hold" 
    one "stagebox, --no-cpu-wake-hold" --no-cpu-wake-hold
done
idle "server alone, idle" 0
idle "server alone, idle, 0-us request held" 1
rm -rf "$tmp"
