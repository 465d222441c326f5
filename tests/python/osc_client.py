#!/usr/bin/env python3
"""python-osc (PyPI) against a running `stagebox run`: UDP and TCP (OSC 1.1, SLIP). Run by
tests/tests/osc.rs with the test venv (.cache/test-venv, made by scripts/setup.sh).

    osc_client.py PORT    -> exit 0 and a JSON summary on stdout, or exit 1 saying what failed
"""
import json
import sys

from pythonosc import tcp_client, udp_client


def main():
    port = int(sys.argv[1])
    out = {}
    # UDP: set the gain, read it back, ask for the status.
    u = udp_client.SimpleUDPClient("127.0.0.1", port)
    u.send_message("/stagebox/node/vol/gain_db", -12.0)
    u.send_message("/stagebox/node/vol/gain_db", [])
    u.send_message("/stagebox/status", [])
    got = {}
    for m in u.get_messages(2.0):
        got[m.address] = list(m.params)
        if len(got) >= 2:
            break
    out["udp"] = got
    assert got.get("/stagebox/node/vol/gain_db") == [-12.0], got
    assert got["/stagebox/status.reply"][3] == 48000, got
    # TCP with SLIP framing (OSC 1.1): a pattern, a read-back, sync.
    t = tcp_client.SimpleTCPClient("127.0.0.1", port, mode="1.1")
    t.send_message("/stagebox/node/{vol,tone}/gain_db", -3.0)
    t.send_message("/stagebox/node/tone/gain_db", [])
    t.send_message("/stagebox/sync", 5)
    got = {}
    for m in t.get_messages(2.0):
        got[m.address] = list(m.params)
        if "/stagebox/synced" in got:
            break
    out["tcp"] = got
    assert got.get("/stagebox/node/tone/gain_db") == [-3.0], got
    assert got.get("/stagebox/synced") == [5], got
    # A wrong type gets an error reply.
    t.send_message("/stagebox/node/vol/gain_db", "loud")
    err = next(iter(t.get_messages(2.0)))
    out["error"] = [err.address] + list(err.params)
    assert err.address == "/stagebox/error" and "expects a number" in err.params[1], out
    t.close()
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"python-osc check failed: {e}", file=sys.stderr)
        sys.exit(1)
