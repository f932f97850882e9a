#!/usr/bin/python3
"""SPF results by pyspf (Debian python3-spf), the oracle of verify's oracle_test.go.

Usage: spf_check.py HOST PORT < cases. Each input line is "IP SENDER HELO"; each output
line is the check_host() result. DNS goes to HOST:PORT only.
"""
import sys

import dns.resolver
import spf

r = dns.resolver.Resolver(configure=False)
r.nameservers = [sys.argv[1]]
r.port = int(sys.argv[2])
r.lifetime = 5
dns.resolver.default_resolver = r

for line in sys.stdin:
    ip, sender, helo = line.split()
    result, _ = spf.check2(i=ip, s=sender, h=helo)
    print(result, flush=True)
