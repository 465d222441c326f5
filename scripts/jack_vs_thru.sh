#!/usr/bin/env bash
# Stagebox's native JACK client against the minimal C client jack_thru, on the same kind of
# dummy server (48 kHz, PERIOD frames), in alternating runs so that the VM's changing noise falls
# on both alike. Each run gets a fresh server; the CPU wake-up hold (0 us) is held for both
# (Stagebox holds it itself; a helper holds it for jack_thru). Counted from the server's log:
# the cycles in which JACK reports the client "was not finished", and the server's own late
# timer wake-ups; from Stagebox's stats: late callbacks and callback times.
# Usage: scripts/jack_vs_thru.sh [PAIRS] [SECONDS] [PATCH] [PERIOD]   (builds release;
# STAGEBOX_ARGS adds flags to stagebox run)
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-5}
secs=${2:-120}
patch=${3:-patches/default.toml}
period=${4:-128}
cargo build --release -q -p stagebox
bin=./target/release/stagebox
tmp=$(mktemp -d)
server() { # $1 = name; the log goes to $tmp/$1.log
    JACK_NO_AUDIO_RESERVATION=1 jackd -n "$1" -d dummy -r 48000 -p "$period" >/dev/null 2>"$tmp/$1.log" &
    echo $!
}
count() { # $1 = log, $2 = client
    echo "$(grep -c "client = $2 was not finished" "$1" || true) $(grep -c 'JackTimedDriver::Process XRun' "$1" || true)"
}
echo "| run ($secs s, $period frames) | not finished (JACK blames the client) | server timer xruns | late callbacks | callback median / p99 / max (us) |"
echo "|---|---:|---:|---:|---|"
for k in $(seq "$pairs"); do
    name="sbx-vs-$$-$k-a"
    jp=$(server "$name"); sleep 1
    JACK_DEFAULT_SERVER=$name "$bin" run --backend jack --duration "$secs" --no-watch --no-osc --no-oscquery \
        --patch "$patch" --stats-json "$tmp/s.json" ${STAGEBOX_ARGS:-} 2>"$tmp/run.log" || { cat "$tmp/run.log"; exit 1; }
    kill "$jp"; wait "$jp" 2>/dev/null || true
    read -r nf timer <<<"$(count "$tmp/$name.log" stagebox)"
    python3 - "$nf" "$timer" "$tmp/s.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[3]))
cb = s["callback_us"]
print(f"| stagebox {s['patch']} | {sys.argv[1]} | {sys.argv[2]} | {s['late_callbacks']} | {cb['median']:.0f} / {cb['p99']:.0f} / {cb['max']:.0f} |")
PY
    name="sbx-vs-$$-$k-b"
    python3 -c 'import os,struct,time; f=os.open("/dev/cpu_dma_latency",os.O_WRONLY); os.write(f,struct.pack("i",0)); time.sleep(1e6)' 2>/dev/null &
    hp=$!
    jp=$(server "$name"); sleep 1
    JACK_DEFAULT_SERVER=$name jack_thru >/dev/null 2>&1 &
    tp=$!
    sleep 1; JACK_DEFAULT_SERVER=$name jack_connect system:capture_1 jack_thru:input_1 || true
    JACK_DEFAULT_SERVER=$name jack_connect jack_thru:output_1 system:playback_1 || true
    sleep "$secs"
    kill "$tp" "$jp" "$hp" 2>/dev/null; wait "$tp" "$jp" "$hp" 2>/dev/null || true
    read -r nf timer <<<"$(count "$tmp/$name.log" jack_thru)"
    echo "| jack_thru | $nf | $timer | | |"
done
rm -rf "$tmp"
