package arc

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sealgate/internal/dkimcore"
	"sealgate/internal/resolver/resolvertest"
	"sealgate/sign"
)

// The chains under testdata/chains are file-driven cases: NN-name.eml is a message with an
// ARC chain, NN-name.result the first line `sealgate arc verify` must print for it, and
// NN-name.readme what the case is about. The chains carry real signatures made with
// testdata/chains/sealer.key, whose public key chains.zone publishes; the interop tests check
// that dkimpy validates each the same way.
//
// `go test ./arc -run TestChainCases -update-chains` rewrites the .eml files from
// chainCases below (RSA PKCS#1 v1.5 signing is deterministic, so unchanged cases come out
// byte for byte the same). The .result files are written by hand.
var updateChains = flag.Bool("update-chains", false, "rewrite arc/testdata/chains/*.eml from chainCases")

const chainMessage = "From: Ana <ana@corp.example>\r\n" +
	"To: list@list.example\r\n" +
	"Subject: ARC conformance\r\n" +
	"Date: Tue, 06 Oct 2026 09:15:00 +0000\r\n" +
	"Message-ID: <conformance-1@corp.example>\r\n" +
	"\r\n" +
	"Hello,  world.\r\n"

// chainCases say how each chain was made: the tags of its one ARC set, as written, with
// "bh=" (the AMS body hash) and "b=" (the signature) filled in when the files are written.
var chainCases = map[string]struct{ ams, as string }{
	"01-baseline": {
		ams: "i=1; a=rsa-sha256; c=relaxed/relaxed; d=sealer.example; s=arc; t=1791278100; h=from:to:subject:date:message-id; bh=; b=",
		as:  "i=1; a=rsa-sha256; t=1791278100; cv=none; d=sealer.example; s=arc; b=",
	},
	"02-ams-without-c": {
		ams: "i=1; a=rsa-sha256; d=sealer.example; s=arc; t=1791278100; h=from:to:subject:date:message-id; bh=; b=",
		as:  "i=1; a=rsa-sha256; t=1791278100; cv=none; d=sealer.example; s=arc; b=",
	},
	"03-ams-empty-h": {
		ams: "i=1; a=rsa-sha256; c=relaxed/relaxed; d=sealer.example; s=arc; t=1791278100; h=; bh=; b=",
		as:  "i=1; a=rsa-sha256; t=1791278100; cv=none; d=sealer.example; s=arc; b=",
	},
	"04-ams-empty-name-in-h": {
		ams: "i=1; a=rsa-sha256; c=relaxed/relaxed; d=sealer.example; s=arc; t=1791278100; h=from:to::date; bh=; b=",
		as:  "i=1; a=rsa-sha256; t=1791278100; cv=none; d=sealer.example; s=arc; b=",
	},
	"05-as-empty-tag-spec": {
		ams: "i=1; a=rsa-sha256; c=relaxed/relaxed; d=sealer.example; s=arc; t=1791278100; h=from:to:subject:date:message-id; bh=; b=",
		as:  "i=1; a=rsa-sha256; t=1791278100; cv=none; d=sealer.example; s=arc;; b=",
	},
	"06-trailing-semicolon": {
		ams: "i=1; a=rsa-sha256; c=relaxed/relaxed; d=sealer.example; s=arc; t=1791278100; h=from:to:subject:date:message-id; bh=; b=;",
		as:  "i=1; a=rsa-sha256; t=1791278100; cv=none; d=sealer.example; s=arc; b=;",
	},
}

func TestChainCases(t *testing.T) {
	if *updateChains {
		writeChains(t)
	}
	zone, err := os.ReadFile("testdata/chains/chains.zone")
	if err != nil {
		t.Fatal(err)
	}
	r := resolvertest.NewZone(t, string(zone))
	files, err := filepath.Glob("testdata/chains/*.eml")
	if err != nil || len(files) < len(chainCases) {
		t.Fatalf("%d chain files (%v), want %d", len(files), err, len(chainCases))
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".eml")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(path, ".eml") + ".result")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(strings.TrimSuffix(path, ".eml") + ".readme"); err != nil {
				t.Error(err)
			}
			msg, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := validate(t, r, msg)
			if got.String() != strings.TrimSpace(string(want)) {
				t.Errorf("got  %s\nwant %s", got, strings.TrimSpace(string(want)))
			}
		})
	}
}

// writeChains makes the .eml files of chainCases.
func writeChains(t *testing.T) {
	pemBytes, err := os.ReadFile("testdata/chains/sealer.key")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := k.(*rsa.PrivateKey)
	hdr, body, err := sign.ReadMessage(strings.NewReader(chainMessage))
	if err != nil {
		t.Fatal(err)
	}
	bh := base64.StdEncoding.EncodeToString(dkimcore.HashBody(body, dkimcore.Relaxed)[dkimcore.Relaxed])
	for name, c := range chainCases {
		aar := dkimcore.Field("ARC-Authentication-Results: i=1; sealer.example;\r\n auth=pass smtp.auth=ana@corp.example\r\n")
		var names []string
		if _, h, ok := strings.Cut(c.ams, "; h="); ok {
			h, _, _ = strings.Cut(h, ";")
			names = strings.Split(h, ":")
		}
		ams := signRaw(t, AMSField, strings.Replace(c.ams, "bh=", "bh="+bh, 1), dkimcore.AppendHeaderHashInput(nil, hdr, names, dkimcore.Relaxed), key)
		sealInput := dkimcore.AppendCanonicalField(nil, aar, dkimcore.Relaxed)
		sealInput = dkimcore.AppendCanonicalField(sealInput, ams, dkimcore.Relaxed)
		as := signRaw(t, ASField, c.as, sealInput, key)
		var out bytes.Buffer
		sign.WriteMessage(&out, append(dkimcore.Header{as, ams, aar}, hdr...), body)
		if err := os.WriteFile("testdata/chains/"+name+".eml", out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// signRaw completes the field "name: tags", whose last "b=" is empty, whatever the tag list's
// syntax: the digest covers hashInput and the field canonicalised relaxed without its CRLF
// (RFC 6376 §3.7), and the signature goes after "b=", folded.
func signRaw(t *testing.T, name, tags string, hashInput []byte, key *rsa.PrivateKey) dkimcore.Field {
	t.Helper()
	unsigned := dkimcore.Field(name + ": " + tags + "\r\n")
	h := sha256.New()
	h.Write(hashInput)
	h.Write(bytes.TrimSuffix(dkimcore.AppendCanonicalField(nil, unsigned, dkimcore.Relaxed), []byte("\r\n")))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	b := base64.StdEncoding.EncodeToString(sig)
	var folded strings.Builder
	for len(b) > 0 {
		n := min(72, len(b))
		folded.WriteString("\r\n " + b[:n])
		b = b[n:]
	}
	at := strings.LastIndex(tags, "b=") + 2
	return dkimcore.Field(name + ": " + tags[:at] + folded.String() + tags[at:] + "\r\n")
}
