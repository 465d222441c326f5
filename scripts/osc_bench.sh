#!/usr/bin/env bash
# OSC control benchmark on a dummy JACK server (48 kHz, 128 frames): for each rate, Stagebox
# runs a tone -> gain -> output patch for SECONDS while scripts/osc_bench.py floods the gain;
# prints the rate, xruns (with the idle server's own count over the same time beside it), late
# callbacks, OSC received/dropped and arrival-to-dispatch times from the stats JSON.
# Usage: scripts/osc_bench.sh [SECONDS] [RATES...]   (release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; shift || true
rates=${*:-"1000 5000 20000 50000"}
tmp=$(mktemp -d)
cat > "$tmp/p.toml" <<'TOML'
[[node]]
id = "tone"
type = "osc"
[[node]]
id = "vol"
type = "gain"
channels = 1
[[node]]
id = "out"
type = "output"
channels = 1
[[connect]]
from = "tone"
to = "vol"
[[connect]]
from = "vol"
to = "out"
TOML
name="oscbench-$$"
JACK_NO_AUDIO_RESERVATION=1 jackd -n "$name" -d dummy -r 48000 -p 128 >/dev/null 2>"$tmp/jackd.log" &
jpid=$!
trap 'kill $jpid 2>/dev/null || true; rm -rf "$tmp"' EXIT
sleep 2
port=47130
for rate in $rates; do
  before=$(grep -c 'JackTimedDriver::Process XRun' "$tmp/jackd.log" || true)
  JACK_DEFAULT_SERVER=$name ./target/release/stagebox run --backend jack --no-watch --no-midi-out \
    --patch "$tmp/p.toml" --duration $((secs + 2)) --osc-port $port --no-oscquery \
    --stats-json "$tmp/s.json" </dev/null >/dev/null 2>"$tmp/run.log" &
  spid=$!
  sleep 1
  python3 scripts/osc_bench.py $port "$rate" "$secs"
  wait $spid
  after=$(grep -c 'JackTimedDriver::Process XRun' "$tmp/jackd.log" || true)
  python3 - "$tmp/s.json" "$((after - before))" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
d = s["osc_dispatch_us"]
print(f"  xruns {s['xruns']} (server timer xruns meanwhile {sys.argv[2]}), late callbacks {s['late_callbacks']}, "
      f"callbacks {s['callbacks']}, callback p99 {s['callback_us']['p99']:.0f} us, "
      f"OSC received {s['osc_received']} dropped {s['osc_dropped']}, "
      f"arrival->dispatch median {d['median']} us p99 {d['p99']} us max {d['max']} us, events dropped {s['events_dropped']}")
PY
  port=$((port + 2))
done
