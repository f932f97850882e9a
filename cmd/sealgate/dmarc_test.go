package main

import (
	"path/filepath"
	"testing"
	"time"

	"sealgate/internal/dmarcreport"
	"sealgate/relay"
)

// Only messages that went out over the network are in the send log; every event still
// reaches the next hook.
func TestRecordSends(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sendlog")
	l := dmarcreport.NewSendLog(dir)
	var next int
	hook := recordSends(l, func(relay.AttemptEvent) { next++ })
	sigs := []relay.DKIMSignature{{Domain: "example.test", Selector: "rsa2026"}}
	for _, ev := range []relay.AttemptEvent{
		{Status: relay.StatusSent, SourceIP: "192.0.2.10", HeaderFrom: "example.test", DKIM: sigs, Domain: "partner.example"},
		{Status: relay.StatusSent, SourceIP: "192.0.2.10", HeaderFrom: "example.test", DKIM: sigs, Domain: "partner.example"},
		{Status: relay.StatusDeferred, SourceIP: "192.0.2.10", HeaderFrom: "example.test", DKIM: sigs, Domain: "partner.example"},
		{Status: relay.StatusSent, HeaderFrom: "example.test", Domain: "outbox.example"}, // no connection: the outbox
	} {
		hook(ev)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	days, err := dmarcreport.ReadSendLog(dir, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var entries []dmarcreport.SendEntry
	for _, es := range days {
		entries = append(entries, es...)
	}
	if len(entries) != 1 || entries[0].Count != 2 || entries[0].SourceIP != "192.0.2.10" || entries[0].RcptDomain != "partner.example" ||
		len(entries[0].DKIM) != 1 || entries[0].DKIM[0] != "d=example.test s=rsa2026" {
		t.Errorf("send log %+v; want one entry counting the 2 sent messages", entries)
	}
	if next != 4 {
		t.Errorf("next hook saw %d events, want 4", next)
	}
}
