package smtpclient_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"strings"
	"time"

	"sealgate/internal/smtpclient"
)

// Deliver one message with opportunistic TLS, and see what each recipient got.
func Example() {
	ctx := context.Background()
	d := smtpclient.Dialer{HeloName: "relay.example", Timeout: time.Minute}
	c, err := d.Dial(ctx, "mx.example.net:25")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Quit()
	if _, ok := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
			log.Fatal(err)
		}
		info, _ := c.TLS()
		log.Printf("TLS verified=%v (%v)", info.Verified, info.VerifyError)
	}
	msg := "From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
	res, err := c.Send(&smtpclient.Transaction{
		From:  "a@example.org",
		Rcpts: []smtpclient.Recipient{{Addr: "b@example.net", Notify: "FAILURE"}},
		Size:  int64(len(msg)),
	}, strings.NewReader(msg))
	if err != nil {
		log.Fatal(err)
	}
	for i, err := range res.Rcpts {
		log.Printf("recipient %d: %v", i, err)
	}
}

// Callback verification: would the server take mail for this address? MAIL
// FROM:<>, RCPT, QUIT; never DATA.
func ExampleClient_Verify() {
	d := smtpclient.Dialer{HeloName: "relay.example", Timeout: 30 * time.Second}
	c, err := d.Dial(context.Background(), "mx.example.net:25")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Quit()
	results, err := c.Verify("", "someone@example.net")
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("someone@example.net: %v", results[0]) // nil: accepted
}

// An ORCPT of type utf-8 (RFC 6533 §3): non-ASCII characters and '+', '=' and
// backslash become \x{HEX}.
func ExampleUTF8AddrXText() {
	fmt.Println(smtpclient.UTF8AddrXText("jörg+tag@例子.广告"))
	// Output: j\x{F6}rg\x{2B}tag@\x{4F8B}\x{5B50}.\x{5E7F}\x{544A}
}
