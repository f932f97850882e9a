#!/usr/bin/python3
"""Verify a message's DKIM signatures and ARC chain with dkimpy, for sealgate's e2e tests.

Usage: dkimverify.py ZONEFILE MESSAGE

Keys come from ZONEFILE (the master file `sealgate serve --dev` writes), not from DNS.
Prints one JSON object:
  {"dkim": [{"d": ..., "s": ..., "a": ..., "pass": bool, "log": [...]}, ...],   # header order
   "arc": {"cv": "pass"|"fail"|"none", "reason": ...}}
"""
import json
import logging
import re
import sys

import dkim
from dkim.util import parse_tag_value


def load_zone(path):
    """Returns {lower-case name without trailing dot: TXT text} for the zone's TXT RRs.
    The strings of one RR (parenthesised on one line) are joined with nothing between."""
    origin = ""
    txt = {}
    rr = re.compile(r'^(\S+)\s+(?:\d+\s+)?(?:IN\s+)?TXT\s+(.*)$', re.I)
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith(";") or not line.strip():
            continue
        if line.startswith("$ORIGIN"):
            origin = line.split()[1].rstrip(".").lower()
            continue
        m = rr.match(line)
        if not m:
            continue
        name, rest = m.group(1), m.group(2)
        if name == "@":
            name = origin
        elif name.endswith("."):
            name = name[:-1]
        else:
            name = name + "." + origin
        strings = re.findall(r'"((?:[^"\\]|\\.)*)"', rest)
        if name.lower() in txt:
            raise SystemExit("zone has several TXT RRs at %s" % name)
        txt[name.lower()] = "".join(strings)
    return txt


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def main():
    zone = load_zone(sys.argv[1])

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        v = zone.get(name.rstrip(".").lower())
        return v.encode("ascii") if v is not None else None

    msg = open(sys.argv[2], "rb").read()
    head = msg.split(b"\r\n\r\n", 1)[0]
    unfolded = re.sub(rb"\r\n[ \t]", b" ", head).split(b"\r\n")
    sigs = [l.split(b":", 1)[1] for l in unfolded if l.lower().startswith(b"dkim-signature:")]
    out = {"dkim": [], "arc": {}}
    for i, value in enumerate(sigs):
        tags = parse_tag_value(re.sub(rb"\s+", b"", value))
        log = logging.getLogger("dkim-%d" % i)
        log.propagate = False
        log.setLevel(logging.DEBUG)
        h = Collect()
        log.addHandler(h)
        try:
            ok = bool(dkim.DKIM(msg, logger=log).verify(idx=i, dnsfunc=dnsfunc))
        except Exception as e:  # report, do not crash: the Go side explains
            ok = False
            h.lines.append("exception: %r" % e)
        out["dkim"].append({
            "d": tags.get(b"d", b"").decode(), "s": tags.get(b"s", b"").decode(),
            "a": tags.get(b"a", b"").decode(), "pass": ok, "log": h.lines[-5:]})
    cv, results, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    out["arc"] = {"cv": cv.decode() if isinstance(cv, bytes) else str(cv), "reason": str(reason)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
