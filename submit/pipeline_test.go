package submit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/internal/dkimcore"
	"sealgate/relay"
	"sealgate/sign"
)

// mustKeyRing builds a key ring for the tests of this package.
func mustKeyRing(domains ...sign.DomainKeys) *sign.KeyRing {
	r, err := sign.NewKeyRing(domains...)
	if err != nil {
		panic(err)
	}
	return r
}

func TestSubmissionStepOrder(t *testing.T) {
	var names []string
	for _, st := range submissionSteps {
		names = append(names, st.name)
	}
	want := "policy, verify client signatures, strip forged results, trace, sign, seal, spool"
	if got := strings.Join(names, ", "); got != want {
		t.Errorf("submission steps: %s; want %s", got, want)
	}
}

// pipelineRun accepts msg (LF line ends) from id through a pipeline with ring, and returns
// the queue id and the spooled message's header, or the refusal.
func pipelineRun(t *testing.T, ring *sign.KeyRing, id *Identity, msg string) (string, string, error) {
	t.Helper()
	spool, err := relay.OpenSpool(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	p := &Pipeline{Hostname: "relay.example.test", AuthServID: "relay.example.test", KeyRing: ring, Spool: spool,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	raw := strings.ReplaceAll(msg, "\n", "\r\n")
	hdr, err := dkimcore.ReadHeader(bufioReader(raw), false)
	if err != nil {
		t.Fatal(err)
	}
	body := raw[len(hdr.Bytes())+2:]
	in, err := spool.Create()
	if err != nil {
		t.Fatal(err)
	}
	in.Write([]byte(body))
	qid, err := p.Accept(context.Background(), &Submission{
		Identity: id, From: "x@client.example", To: []string{"rcpt@example.net"}, ClientIP: net.IPv4(127, 0, 0, 1),
		Header: hdr, Body: in, Bodies: dkimcore.HashBody([]byte(body), dkimcore.Relaxed),
	})
	ids, lerr := spool.List()
	if lerr != nil {
		t.Fatal(lerr)
	}
	if err != nil {
		if len(ids) != 0 {
			t.Errorf("refused message left in the spool: %v", ids)
		}
		return "", "", err
	}
	_, rc, err := spool.Open(qid)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	head, _, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	return qid, string(head), nil
}

// The key ring decides the signing domain: a From at news.client.example is signed
// d=client.example when client.example signs for its subdomains, and refused when not.
func TestPipelineSignsWithKeyRing(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	keys := []sign.Key{{Selector: "ed", Signer: edKey}}
	id := NewIdentity("mta", KindClientNetwork, MustParsePatterns("*@client.example", "*@*.client.example", "*@legacy.example"))
	msg := "From: a@news.client.example\nTo: rcpt@example.net\nSubject: hi\n\nhello\n"

	_, head, err := pipelineRun(t, mustKeyRing(sign.DomainKeys{Domain: "client.example", Keys: keys, SignSubdomains: true}), id, msg)
	if err != nil || strings.Count(head, "DKIM-Signature:") != 1 || !strings.Contains(head, "d=client.example;") {
		t.Fatalf("sign_subdomains: %v\n%s", err, head)
	}

	_, _, err = pipelineRun(t, mustKeyRing(sign.DomainKeys{Domain: "client.example", Keys: keys}), id, msg)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.Message != "From domain news.client.example is not configured for DKIM signing on this relay" {
		t.Fatalf("without sign_subdomains: %v", err)
	}

	// Two From domains with one signing domain are signed once per key.
	two := "From: a@news.client.example, b@client.example\nSender: a@news.client.example\nSubject: hi\n\nhello\n"
	_, head, err = pipelineRun(t, mustKeyRing(sign.DomainKeys{Domain: "client.example", Keys: keys, SignSubdomains: true}), id, two)
	if err != nil || strings.Count(head, "DKIM-Signature:") != 1 {
		t.Fatalf("two From domains, one d=: %v\n%s", err, head)
	}

	// A domain without keys is relayed unsigned only for an identity that allows it.
	legacy := mustKeyRing(sign.DomainKeys{Domain: "legacy.example", RelayUnsigned: true})
	unsignedMsg := strings.Replace(msg, "a@news.client.example", "a@legacy.example", 1)
	if _, _, err := pipelineRun(t, legacy, id, unsignedMsg); !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("unsigned without allow_unsigned: %v", err)
	}
	id.AllowUnsigned = true
	if _, head, err := pipelineRun(t, legacy, id, unsignedMsg); err != nil || strings.Contains(head, "DKIM-Signature:") || !strings.HasPrefix(head, "Received: ") {
		t.Fatalf("unsigned with allow_unsigned: %v\n%s", err, head)
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
