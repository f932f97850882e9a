#!/usr/bin/python3
"""Verify DKIM signatures and ARC chains with dkimpy, for sealgate's interop test.

Usage: verify.py JOB.json

JOB is {"dns": "dns.json", "messages": ["a.eml", ...]}; dns.json maps a lower-case DNS
name without the trailing dot to the text of its TXT record. Prints one JSON object:
{"a.eml": {"dkim": [...], "arc": {...}}, ...}, with one "dkim" entry per DKIM-Signature
in header order (the top one first).
"""
import json
import logging
import sys

import dkim
from dkim.util import parse_tag_value


class Collect(logging.Handler):
    """Keeps what dkimpy logs, so a failure can say why."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        if record.levelno >= logging.INFO:
            self.lines.append(record.getMessage())


def new_logger():
    lg = logging.getLogger("interop-%d" % id(object()))
    lg.propagate = False
    lg.setLevel(logging.INFO)
    h = Collect()
    lg.addHandler(h)
    return lg, h


def dnsfunc_for(path):
    with open(path) as f:
        zone = {k.lower().rstrip("."): v for k, v in json.load(f).items()}

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        txt = zone.get(name.lower().rstrip("."))
        return None if txt is None else txt.encode("ascii")

    return dnsfunc


def s(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def verify_dkim(msg, dnsfunc):
    """Verifies every DKIM-Signature of msg, top first."""
    out = []
    parsed = dkim.DKIM(msg)
    sigs = [v for k, v in parsed.headers if k.lower() == b"dkim-signature"]
    for idx, value in enumerate(sigs):
        entry = {"d": "", "s": "", "a": ""}
        try:
            tags = parse_tag_value(value)
            entry.update(d=s(tags.get(b"d", b"")).lower(), s=s(tags.get(b"s", b"")), a=s(tags.get(b"a", b"")))
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            entry["error"] = "unparsable signature: %s" % e
        lg, h = new_logger()
        try:
            ok = dkim.DKIM(msg, logger=lg, minkey=1024).verify(idx=idx, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            ok = False
            h.lines.append("%s: %s" % (type(e).__name__, e))
        entry["result"] = "pass" if ok else "fail"
        if not ok:
            entry["error"] = "; ".join(h.lines) or entry.get("error", "verify returned False")
        out.append(entry)
    return out


def verify_arc(msg, dnsfunc):
    lg, h = new_logger()
    cv, results, reason = dkim.arc_verify(msg, logger=lg, dnsfunc=dnsfunc)
    reason = s(reason) or "; ".join(h.lines)
    if cv is None:
        # dkimpy's way of saying that a seal has cv=fail, "the chain is terminated": for
        # RFC 8617 §5.2 that chain fails.
        cv, reason = b"fail", "dkimpy returned None: " + reason
    sets = [{"i": r.get("instance"), "as_valid": bool(r.get("as-valid")), "ams_valid": bool(r.get("ams-valid"))}
            for r in results or []]
    return {"cv": s(cv), "reason": reason, "sets": sets}


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    dnsfunc = dnsfunc_for(job["dns"])
    out = {}
    for path in job["messages"]:
        with open(path, "rb") as f:
            msg = f.read()
        out[path] = {"dkim": verify_dkim(msg, dnsfunc), "arc": verify_arc(msg, dnsfunc)}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
