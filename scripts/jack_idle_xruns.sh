#!/usr/bin/env bash
# Baseline for the real-time test: how many xruns a dummy JACK server reports with no client at
# all. Usage: scripts/jack_idle_xruns.sh [SECONDS] [PERIOD]
set -euo pipefail
secs=${1:-60}
period=${2:-128}
name="stagebox-idle-$$"
log=$(mktemp)
JACK_NO_AUDIO_RESERVATION=1 jackd -n "$name" -d dummy -r 48000 -p "$period" >/dev/null 2>"$log" &
pid=$!
sleep "$secs"
kill "$pid"
wait "$pid" 2>/dev/null || true
echo "idle dummy JACK server, 48000 Hz, $period frames, $secs s: $(grep -c 'JackTimedDriver::Process XRun' "$log") xruns"
rm -f "$log"
