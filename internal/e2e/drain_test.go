package e2e

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// TestDrain: `sealgate drain` takes the node out of service (idle sessions told 421
// 4.3.2, new connections too, /readyz 503) while it keeps running; --wait returns once
// nothing is left; --resume takes sessions again.
func TestDrain(t *testing.T) {
	r := startRelay(t, "")
	drain := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(binary, append([]string{"drain", "--dir", r.dir}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("sealgate drain %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ready := func() (int, string) {
		resp, err := http.Get("http://" + r.AdminAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := ready(); code != 200 {
		t.Fatalf("/readyz before draining: %d %s", code, body)
	}
	idle := dial(t, r.SmartHost, dialOpts{})
	idle.ehlo()

	if out := drain(); !strings.HasPrefix(out, "draining: sessions=") {
		t.Errorf("drain printed %q", out)
	}
	if rp, err := idle.readReply(); err != nil || !rp.is(421, "4.3.2") {
		t.Errorf("idle session after drain: %v %v, want 421 4.3.2", rp, err)
	}
	if _, err := dialErr(t, r.SmartHost, dialOpts{}); err == nil || !strings.Contains(err.Error(), "421 4.3.2") {
		t.Errorf("new connection while draining: %v, want 421 4.3.2", err)
	}
	if code, body := ready(); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %q, want 503 naming the drain", code, body)
	}
	if out := drain("--wait", "--timeout", "20s"); !strings.HasPrefix(out, "draining: sessions=0 due=0 in_flight=0") {
		t.Errorf("drain --wait printed %q", out)
	}
	if !strings.Contains(r.Logs(), "reason=draining") {
		t.Error("the refused connection is not logged with reason=draining")
	}

	if out := drain("--resume"); !strings.HasPrefix(out, "serving: ") {
		t.Errorf("drain --resume printed %q", out)
	}
	c := dialAuth(t, r)
	defer c.quit()
	stage, rp := c.send(devLogin, []string{"ops@partner.example"}, msg("From: demo@example.test\n"+stdTail, "After the drain.\n"))
	if stage != "END" || rp.Code != 250 {
		t.Fatalf("after resume: %s at %s", rp, stage)
	}
	if code, body := ready(); code != 200 {
		t.Errorf("/readyz after resume: %d %s", code, body)
	}
}
