// Package dmarcreport ingests DMARC aggregate reports, keeps them in an embedded
// database, joins them with our own send log and says what they mean for a domain on its
// way to p=reject.
//
// Reports are the XML of RFC 7489 §7.2 and Appendix C and of its successor, the DMARCbis
// aggregate reporting format (RFC 9990, namespace urn:ietf:params:xml:ns:dmarc-2.0),
// parsed namespace-agnostically: unknown elements are ignored, as RFC 9990 asks. They
// arrive plain, gzip'ed or zipped (RFC 7489 §7.2.1.1), as a file, attached to a whole
// message (a MIME part of type application/gzip, application/zip, text/xml ...), or as the
// messages of a Maildir (cur/ and new/). Import refuses, and stores nothing of, a report
// that is malformed, larger than its limits before or after decompression (the bytes
// actually read are capped, never the size an archive declares), carries a DOCTYPE (no
// entity of any kind is expanded: XXE), has more rows than allowed, or is about a domain
// we do not serve. Reports are deduplicated by (org_name, report_id) (RFC 7489 §7.2.1.1).
//
// The send log (sendlog.go) is a compact per-day count of what we delivered: our source
// IP, the header From domain, our DKIM d= and selectors, the recipient domain. Summarize
// matches each report row to it by source IP, header From domain and the report's
// date_range, so each source is "ours" or not; Readiness turns a summary into a verdict
// and the next DMARC record to publish.
//
// It deliberately does not: fetch reports by IMAP, send reports of its own, verify the
// external-destination authorisation of RFC 7489 §7.1 (the receiver did that before
// sending), or parse failure reports (RFC 9991).
package dmarcreport
