#!/usr/bin/python3
"""Sign and ARC-seal messages with dkimpy, for sealgate's interop test.

Usage: sign.py JOB.json

JOB is {"dns": "dns.json", "outdir": DIR, "keys": {...}, "messages": [{"name": N,
"path": P, "prep": [step, ...]}, ...]}.

For every message it first runs the prep steps, which play the hops before us:
  "dkim"          dkim.sign as author.test, RSA, c=relaxed/simple
  "dkim-ed25519"  dkim.sign as author.test, Ed25519, c=relaxed/relaxed
  "arc:DOMAIN"    add "Authentication-Results: DOMAIN; ...; arc=<dkimpy's arc_verify>" and
                  dkim.arc_sign as DOMAIN (what a relay in the path does)
  "tamper-body"   append a line to the body (breaks earlier body hashes)
and writes DIR/prepared/N. Then, as the signer under test, it signs the prepared message
as dkimpy.test with RSA (c=relaxed/simple) and Ed25519 (c=simple/simple), adds an
Authentication-Results for dkimpy.test with its own arc_verify result, ARC-seals it and
writes DIR/dkimpy/N, and verifies that with dkimpy itself as the reference.
Prints {N: {"prepared": ..., "prep_arc": ..., "signed": ..., "ref": ...}, ...}.
"""
import json
import os
import sys

import dkim

sys.dont_write_bytecode = True  # leave no __pycache__ in testdata
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from verify import dnsfunc_for, verify_arc, verify_dkim  # noqa: E402


def linesep_of(msg):
    return b"\r\n" if b"\r\n" in msg else b"\n"


def fix_eol(field, eol):
    return field if eol == b"\r\n" else field.replace(b"\r\n", b"\n")


def split_message(msg):
    eol = linesep_of(msg)
    i = msg.find(eol + eol)
    if i < 0:
        return msg, b""
    return msg[: i + len(eol)], msg[i + len(eol):]


def arc_seal(msg, domain, keypem, dnsfunc, selector=b"ext", results=b"spf=pass smtp.mailfrom=author.test"):
    """Seals msg as a relay for domain would: its A-R, with arc=, then arc_sign."""
    eol = linesep_of(msg)
    cv = verify_arc(msg, dnsfunc)["cv"]
    ar = b"Authentication-Results: " + domain + b"; " + results
    if cv != "none":
        ar += b";" + eol + b"\tarc=" + cv.encode("ascii")
    msg = ar + eol + msg
    # dkimpy 1.1.4's arc_sign with linesep=b"\n" makes seals that its own arc_verify rejects
    # ("ARC-Seal[1] did not validate"), so it always folds with CRLF here and the fields are
    # turned to the message's line ends afterwards (relaxed canonicalisation ignores that).
    fields = dkim.arc_sign(msg, selector, domain, keypem, domain, linesep=b"\r\n")
    if not fields:
        raise RuntimeError("arc_sign returned no ARC set")
    return b"".join(fix_eol(f, eol) for f in fields) + msg


def dkim_sign(msg, selector, domain, key, alg, canon):
    eol = linesep_of(msg)
    sig = dkim.sign(msg, selector, domain, key, signature_algorithm=alg,
                    canonicalize=canon, linesep=eol)
    return fix_eol(sig, eol) + msg


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    dnsfunc = dnsfunc_for(job["dns"])
    keys = {}
    for k, path in job["keys"].items():
        with open(path, "rb") as f:
            keys[k] = f.read().strip()
    outdir = job["outdir"]
    for sub in ("prepared", "dkimpy"):
        os.makedirs(os.path.join(outdir, sub), exist_ok=True)
    out = {}
    for m in job["messages"]:
        name = m["name"]
        with open(m["path"], "rb") as f:
            msg = f.read()
        res = {}
        try:
            for step in m["prep"]:
                if step == "dkim":
                    msg = dkim_sign(msg, b"ext", b"author.test", keys["ext_rsa"], b"rsa-sha256", (b"relaxed", b"simple"))
                elif step == "dkim-ed25519":
                    msg = dkim_sign(msg, b"ext-ed", b"author.test", keys["ext_ed25519"], b"ed25519-sha256", (b"relaxed", b"relaxed"))
                elif step.startswith("arc:"):
                    msg = arc_seal(msg, step[4:].encode("ascii"), keys["ext_rsa"], dnsfunc)
                elif step == "tamper-body":
                    head, body = split_message(msg)
                    msg = head + body + b"Changed after signing." + linesep_of(msg)
                else:
                    raise ValueError("unknown prep step %r" % step)
        except Exception as e:  # noqa: BLE001 - reported to the test
            res["prep_error"] = "%s: %s" % (type(e).__name__, e)
            out[name] = res
            continue
        prepared = os.path.join(outdir, "prepared", name)
        with open(prepared, "wb") as f:
            f.write(msg)
        res["prepared"] = prepared
        res["prep_arc"] = verify_arc(msg, dnsfunc)
        try:
            signed = dkim_sign(msg, b"py-ed", b"dkimpy.test", keys["ext_ed25519"], b"ed25519-sha256", (b"simple", b"simple"))
            signed = dkim_sign(signed, b"py-rsa", b"dkimpy.test", keys["ext_rsa"], b"rsa-sha256", (b"relaxed", b"simple"))
            signed = arc_seal(signed, b"dkimpy.test", keys["ext_rsa"], dnsfunc, selector=b"py-arc",
                              results=b"dkim=pass header.d=author.test")
        except Exception as e:  # noqa: BLE001 - reported to the test
            res["sign_error"] = "%s: %s" % (type(e).__name__, e)
            out[name] = res
            continue
        path = os.path.join(outdir, "dkimpy", name)
        with open(path, "wb") as f:
            f.write(signed)
        res["signed"] = path
        res["ref"] = {"dkim": verify_dkim(signed, dnsfunc), "arc": verify_arc(signed, dnsfunc)}
        out[name] = res
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
