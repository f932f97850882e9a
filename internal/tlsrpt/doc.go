// Package tlsrpt counts the outcome of outbound TLS sessions for SMTP TLS Reporting (RFC 8460):
// per UTC day, per policy domain (the recipient domain) and policy (an MTA-STS policy, the TLSA
// records of DANE, or none found), the sessions that succeeded and those that failed, with the
// result types of RFC 8460 §4.3 and the MX host, its address and ours.
//
// A Recorder keeps what was recorded since its last Flush in memory and adds it to the day's
// file in its directory (one JSON file per day, written atomically through internal/atomicfile),
// so that counts survive restarts; serve flushes it periodically and at shutdown. ReadDay and
// Day.Reports turn a day's file into the JSON reports of RFC 8460 §4, one per policy domain,
// as a domain's rua (its _smtp._tls TXT record, §3) would receive them.
//
// It does not send reports (by mail or HTTPS, RFC 8460 §3), look up rua records, or compress
// reports; it keeps at most MaxPoliciesPerDay policies and MaxFailuresPerPolicy distinct
// failure details per day, counting further failures in the summary only.
package tlsrpt
