// Package zonedb holds the records of one RFC 1035 master file in memory and answers
// questions from them the way an authoritative server would: exact names, CNAME chains
// followed inside the data, NXDOMAIN for names that do not exist and NODATA for names that
// exist with other types (including empty non-terminals).
//
// It is shared by the zone-backed resolver and the test DNS server so that both give the same
// answers. It does not do wildcards, delegations, DNSSEC or $INCLUDE.
package zonedb

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/miekg/dns"
)

// maxCNAMEHops bounds CNAME chains; a longer chain is treated as a loop.
const maxCNAMEHops = 16

// DB is a parsed zone. It is read-only after Parse and safe for concurrent use.
type DB struct {
	records map[string][]dns.RR // lower-case FQDN -> records in file order
	names   map[string]bool     // every owner name and all their ancestors (for NODATA)
}

// miekg's ParseError reads "file: dns: msg: "token" at line: L:C"; we present it as
// "file:L:C: msg: "token"", the form editors and admins expect.
var parseErrorRE = regexp.MustCompile(`^(?:(.*): )?dns: (.*) at line: (\d+):(\d+)$`)

// Parse reads a master file. origin is the initial $ORIGIN ("" = none, so relative names are
// an error unless the file sets $ORIGIN); filename is used in error messages only.
// $INCLUDE is refused so that a zone given to a test or a debugging command cannot read other
// files.
func Parse(r io.Reader, origin, filename string) (*DB, error) {
	db := &DB{records: map[string][]dns.RR{}, names: map[string]bool{}}
	zp := dns.NewZoneParser(r, origin, filename)
	zp.SetIncludeAllowed(false)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		db.records[name] = append(db.records[name], rr)
		for n := name; ; {
			db.names[n] = true
			i, end := dns.NextLabel(n, 0)
			if end {
				break
			}
			n = n[i:]
		}
	}
	if err := zp.Err(); err != nil {
		if filename == "" {
			filename = "zone"
		}
		if m := parseErrorRE.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("%s:%s:%s: %s", filename, m[3], m[4], m[2])
		}
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	return db, nil
}

// Lookup answers a question for name and qtype. It returns the answer section (CNAME records
// of the chain first, then the records of the final name) and the response code:
// dns.RcodeSuccess with records, dns.RcodeSuccess with none (NODATA), dns.RcodeNameError
// (NXDOMAIN), or dns.RcodeServerFailure for a CNAME loop.
func (db *DB) Lookup(name string, qtype uint16) ([]dns.RR, int) {
	var answer []dns.RR
	target := strings.ToLower(dns.Fqdn(name))
	for hop := 0; hop <= maxCNAMEHops; hop++ {
		rrs := db.records[target]
		if len(rrs) == 0 {
			if db.names[target] {
				return answer, dns.RcodeSuccess // empty non-terminal: NODATA
			}
			return answer, dns.RcodeNameError
		}
		var cname *dns.CNAME
		var found []dns.RR
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == qtype || qtype == dns.TypeANY:
				found = append(found, dns.Copy(rr))
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			}
		}
		if len(found) > 0 || cname == nil {
			return append(answer, found...), dns.RcodeSuccess
		}
		answer = append(answer, dns.Copy(cname))
		target = strings.ToLower(cname.Target)
	}
	return nil, dns.RcodeServerFailure
}
