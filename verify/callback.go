package verify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"sealgate/internal/addr"
	"sealgate/internal/resolver"
	"sealgate/internal/smtpclient"
)

// DefaultCallbackTimeout bounds a whole callback verification when
// Options.CallbackTimeout is zero.
const DefaultCallbackTimeout = 30 * time.Second

// maxCallbackHosts is how many MX hosts a callback tries before giving up as unknown.
const maxCallbackHosts = 3

// CallbackResult is the callback verification of the return path: does the return path's
// mail server accept mail for it? Callback verification is not standardised; this is the
// usual probe: MX of the return-path domain, EHLO, MAIL FROM:<>, RCPT TO:<return path>,
// RCPT TO a random address at the same domain (to tell a server that accepts anything),
// QUIT, never DATA.
type CallbackResult struct {
	// Result is "pass" (250 to RCPT), "fail" (550, 551 or 553 to RCPT, or a null MX: the
	// address cannot receive mail, so bounces are lost), or "unknown" (4xx, timeout,
	// refusal of MAIL FROM:<>, no server reached).
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
	// Host is the MX host that answered.
	Host string `json:"host,omitempty"`
	// AcceptsAll is set when the server also accepted a random address at the domain.
	AcceptsAll bool `json:"accepts_all,omitempty"`
}

// callback probes the return path rp (not the null path).
func callback(ctx context.Context, o *Options, rp addr.Address) *CallbackResult {
	timeout := o.CallbackTimeout
	if timeout <= 0 {
		timeout = DefaultCallbackTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if rp.Domain == "" {
		return &CallbackResult{Result: "unknown", Reason: "the return path has an address literal, not a domain"}
	}
	hosts, res := callbackHosts(ctx, o.Resolver, rp.Domain)
	if res != nil {
		return res
	}
	port := o.CallbackPort
	if port == "" {
		port = "25"
	}
	helo := o.CallbackHELO
	if helo == "" {
		helo = o.AuthServID
	}
	var tried []string
	for _, h := range hosts[:min(maxCallbackHosts, len(hosts))] {
		ips, err := o.Resolver.LookupIP(ctx, h)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", h, err))
			continue
		}
		for _, ip := range ips {
			d := &smtpclient.Dialer{HeloName: helo, Timeout: timeout}
			c, err := d.Dial(ctx, net.JoinHostPort(ip.String(), port))
			if err != nil {
				tried = append(tried, fmt.Sprintf("%s [%s]: %v", h, ip, err))
				continue
			}
			stop := c.CloseOnDone(ctx)
			// A second recipient that cannot exist tells a server that accepts any
			// address, whose 250 proves nothing.
			rcpt, err := c.Verify("", rp.String(), probeAddress(rp))
			if err == nil {
				c.Quit()
			}
			stop()
			c.Close()
			return callbackOutcome(h, rp, rcpt, err)
		}
	}
	return &CallbackResult{Result: "unknown", Reason: "no mail server answered: " + strings.Join(tried, "; ")}
}

// callbackHosts returns the hosts to ask for d: its MX hosts, or d itself when it has no MX
// but has addresses (the implicit MX, RFC 5321 §5.1).
func callbackHosts(ctx context.Context, r resolver.Resolver, d addr.Domain) ([]string, *CallbackResult) {
	mxs, err := r.LookupMX(ctx, string(d))
	switch {
	case resolver.IsNotFound(err):
		if _, err := r.LookupIP(ctx, string(d)); err != nil {
			return nil, &CallbackResult{Result: "fail", Reason: fmt.Sprintf("%s has no MX and no address: bounces to it cannot be delivered", d)}
		}
		return []string{string(d)}, nil
	case err != nil:
		return nil, &CallbackResult{Result: "unknown", Reason: err.Error()}
	}
	if len(mxs) == 1 && mxs[0].Host == "." {
		return nil, &CallbackResult{Result: "fail", Reason: fmt.Sprintf("%s has a null MX (RFC 7505): it accepts no mail, so bounces are lost", d)}
	}
	var hosts []string
	for _, mx := range mxs {
		if mx.Host != "." {
			hosts = append(hosts, mx.Host)
		}
	}
	return hosts, nil
}

func callbackOutcome(host string, rp addr.Address, rcpt []error, err error) *CallbackResult {
	host = strings.TrimSuffix(host, ".")
	res := &CallbackResult{Host: host}
	var re *smtpclient.ReplyError
	switch {
	case err != nil && errors.As(err, &re):
		res.Result, res.Reason = "unknown", fmt.Sprintf("%s refused the probe: %d %s", host, re.Code, re.Message)
	case err != nil:
		res.Result, res.Reason = "unknown", fmt.Sprintf("%s: %v", host, err)
	case len(rcpt) == 0:
		res.Result, res.Reason = "unknown", fmt.Sprintf("%s gave no reply to RCPT", host)
	case rcpt[0] == nil:
		res.Result, res.Reason = "pass", fmt.Sprintf("%s accepts RCPT TO:<%s> from MAIL FROM:<>", host, rp)
		if len(rcpt) > 1 && rcpt[1] == nil {
			res.AcceptsAll = true
			res.Reason += ", but also an address that cannot exist: it accepts any recipient, so this proves little"
		}
	case errors.As(rcpt[0], &re) && (re.Code == 550 || re.Code == 551 || re.Code == 553):
		res.Result, res.Reason = "fail", fmt.Sprintf("%s refuses RCPT TO:<%s>: %d %s", host, rp, re.Code, re.Message)
	default:
		res.Result, res.Reason = "unknown", fmt.Sprintf("%s answered RCPT TO:<%s> with %v", host, rp, rcpt[0])
	}
	return res
}

// probeAddress is an address at rp's domain that no one has: a random local part.
func probeAddress(rp addr.Address) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "sealgate-probe-" + hex.EncodeToString(b) + "@" + string(rp.Domain)
}
