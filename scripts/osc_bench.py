#!/usr/bin/env python3
"""OSC control benchmark: floods a running `stagebox run` with parameter messages at a given
rate (loopback UDP), then reads /stagebox/status.reply. Python's standard library only.

    scripts/osc_bench.py PORT RATE SECONDS
"""
import socket
import struct
import sys
import time


def pad(b):
    return b + b"\0" * (4 - len(b) % 4)


def msg(addr, tags, *args):
    out = pad(addr.encode()) + pad(("," + tags).encode())
    for t, a in zip(tags, args):
        out += struct.pack(">f", a) if t == "f" else struct.pack(">i", a)
    return out


def main():
    port, rate, secs = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    m = msg("/stagebox/node/vol/gain_db", "f", -3.0)
    t0 = time.perf_counter()
    sent = 0
    while (now := time.perf_counter() - t0) < secs:
        due = int(now * rate)
        while sent < due:
            s.sendto(m, ("127.0.0.1", port))
            sent += 1
        time.sleep(0.002)
    s.sendto(msg("/stagebox/status", ""), ("127.0.0.1", port))
    answered = False
    try:
        while True:
            data, _ = s.recvfrom(65536)
            if data.startswith(b"/stagebox/status.reply"):
                answered = True
                break
    except socket.timeout:
        pass
    print(f"rate {rate:.0f}/s for {secs:.0f} s: sent {sent}, status answered after: {answered}")


if __name__ == "__main__":
    main()
