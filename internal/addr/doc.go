// Package addr holds sealgate's one normalised form of domain names and mailbox
// addresses. Every comparison of a domain or address in sealgate goes through the
// types defined here, never through raw strings taken from SMTP commands or header
// fields.
//
// It implements:
//   - domain names as lower-case A-labels (IDNA 2008 through golang.org/x/net/idna,
//     RFC 5890/5891): U-labels and A-labels of one domain are one Domain; names are
//     checked as written (Registration profile, non-transitional, no UTS #46
//     mapping, plus the RFC 5892 derived property and CONTEXTO rules that idna
//     leaves out: idna2008.go) and a name that only looks like a valid one
//     (fullwidth, invisible characters, ...) is refused as a LookalikeError; with
//     the length limits of RFC 1035 §2.3.4;
//   - RFC 5321 §4.1.2 mailboxes (Local-part "@" Domain / address-literal), with the
//     length limits of RFC 5321 §4.5.3.1, and RFC 6531 UTF-8 local parts;
//   - envelope paths as emersion/go-smtp hands them to a session (ParsePath);
//   - RFC 5322 §3.4 mailbox lists in header fields, including RFC 6854 group syntax in
//     From/Sender, with RFC 2047 encoded-word display names in the charsets of the
//     WHATWG Encoding Standard (ParseHeaderMailboxes);
//   - detection of display names that pretend to be addresses;
//   - may_send_as patterns (Pattern: an address, "*@domain", "*@*.domain");
//   - the Public Suffix List (IsPublicSuffix) and organisational domains (OrgDomain,
//     RFC 7489 §3.2), through golang.org/x/net/publicsuffix;
//   - the one rule for DKIM and ARC selectors (CheckSelector, RFC 6376 §3.1).
//
// Local parts: RFC 5321 §2.4 says local parts are case-sensitive, but nearly every
// provider treats them case-insensitively. sealgate applies one rule everywhere:
// local parts compare ASCII case-insensitively after Unicode NFC (RFC 6532 §3.1)
// (A-Z equals a-z; no other folding, no Unicode case folding, no removal of dots or
// "+tag" sub-addresses). A local part is
// stored without its quoting: "bob"@example.com and bob@example.com are the same
// mailbox (RFC 5322 §3.4.1).
//
// It deliberately does not: resolve or verify that domains exist, fetch a newer Public
// Suffix List than the one compiled in, know about aliases or sub-addressing, or accept
// obsolete RFC 822 syntax beyond what net/mail accepts.
package addr
