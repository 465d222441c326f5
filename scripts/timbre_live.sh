#!/usr/bin/env bash
# The `timbre` node live with four MIDI voices: a dummy JACK server at 48 kHz and PERIOD frames,
# `stagebox run --backend jack --patch patches/timbre-midi.toml`, and jack_midiseq looping a
# four-note chord into stagebox:midi_in (each note held 1.9 s of every 2 s, entries staggered,
# so four voices sound nearly all the time and each restarts every 2 s). Prints late callbacks,
# callback times against the period, late model frames, and the cycles the server's log blames
# on Stagebox (see BENCHMARKS.md for why xruns alone cannot reach 0 here), and the CPU time the
# hypervisor stole from this VM meanwhile (/proc/stat's steal, all CPUs: stalls no client controls).
# A PATCH without a `midi_in` node runs without the chord (a baseline: patches/passthrough.toml).
# Usage: scripts/timbre_live.sh [SECONDS] [PERIOD] [PATCH]   (builds release)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
period=${2:-128}
patch=${3:-patches/timbre-midi.toml}
cargo build --release -q -p stagebox
tmp=$(mktemp -d)
name="timbre-live-$$"
JACK_NO_AUDIO_RESERVATION=1 jackd -n "$name" -d dummy -r 48000 -p "$period" >/dev/null 2>"$tmp/server.log" &
jp=$!
sleep 1
export JACK_DEFAULT_SERVER=$name
steal0=$(awk '/^cpu /{print $9}' /proc/stat)
./target/release/stagebox run --backend jack --duration "$secs" --no-watch --no-osc --no-oscquery \
    --patch "$patch" --stats-json "$tmp/s.json" 2>"$tmp/run.log" &
sp=$!
mp=
if grep -q 'type = "midi_in"' "$patch"; then
    for _ in $(seq 50); do jack_lsp 2>/dev/null | grep -q '^stagebox:midi_in$' && break; sleep 0.2; done
    jack_midiseq chord 96000 0 48 91200 1200 55 91200 2400 60 91200 3600 64 91200 >/dev/null 2>&1 &
    mp=$!
    sleep 0.5
    jack_connect chord:out stagebox:midi_in
fi
wait "$sp" || { cat "$tmp/run.log"; kill $mp "$jp"; exit 1; }
steal1=$(awk '/^cpu /{print $9}' /proc/stat)
kill $mp "$jp"; wait "$jp" 2>/dev/null || true
python3 - "$tmp/s.json" "$(grep -c 'client = stagebox was not finished' "$tmp/server.log" || true)" "$period" "$((steal1 - steal0))" <<'PY'
import json, os, sys
s = json.load(open(sys.argv[1]))
cb, period_us = s["callback_us"], int(sys.argv[3]) / 48000 * 1e6
late = sum(i.get("late", 0) for i in s.get("inference", []))
frames = sum(i.get("windows", 0) for i in s.get("inference", []))
print(f"| {s['patch']} | {s['late_callbacks']} | {cb['median']:.0f} / {cb['p99']:.0f} / {cb['max']:.0f} "
      f"({100 * cb['p99'] / period_us:.0f}% of the period at p99) | {late} of {frames} | {sys.argv[2]} | "
      f"{int(sys.argv[4]) * 1000 // os.sysconf('SC_CLK_TCK')} |")
PY
