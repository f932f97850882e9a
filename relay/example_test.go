package relay_test

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"sealgate/relay"
)

// The submission side streams the body into the spool during DATA and answers
// 250 only after Commit; the delivery side runs a Runner over the same spool.
func Example() {
	spool, err := relay.OpenSpool("/var/spool/sealgate")
	if err != nil {
		log.Fatal(err)
	}
	defer spool.Close()

	// Submission: one message.
	in, err := spool.Create()
	if err != nil {
		log.Fatal(err)
	}
	defer in.Abort() // no-op once committed
	if _, err := io.Copy(in, strings.NewReader("Hello.\r\n")); err != nil {
		log.Fatal(err) // answer 4yz
	}
	header := []byte("DKIM-Signature: v=1; ...\r\nFrom: alice@example.com\r\n")
	env := &relay.Envelope{From: "alice@example.com", To: []string{"bob@example.net"}, Identity: "alice"}
	id, err := in.Commit(env, header)
	if err != nil {
		log.Fatal(err) // answer 4yz
	}
	slog.Info("queued", "queue_id", id) // now answer 250

	// Delivery (dev mode): write every message to an outbox directory.
	r := &relay.Runner{Spool: spool, Deliverer: relay.OutboxSink{Dir: "/tmp/outbox"}}
	if err := r.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}
