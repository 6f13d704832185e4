package dsn

import (
	"errors"
	"strings"
	"testing"
)

func FuzzBuild(f *testing.F) {
	f.Add("01HQ7ZK3", "scanner@example.com", "bob@example.net", "failed", "5.1.1", "mx.example.net",
		"550 5.1.1 no such user", "Refused.", originalASCII)
	f.Add("Q1", "jörg@bücher.example", "dave@x", "delayed", "4.2.2", "", "452-a\r\n452 b", "", "Subject: Grüße\n\nbody")
	f.Add("=_postroom-dsn-Q", "a@b", "c+d=e\\f@g", "", "", "[192.0.2.1]", strings.Repeat("x", 3000), "\x00\x1b",
		"X: --=_postroom-dsn-Q\r\n")
	f.Fuzz(func(t *testing.T, queueID, to, address, action, status, remote, diagnostic, reason, original string) {
		r := baseReport()
		r.QueueID = queueID
		r.To = to
		r.OriginalHeaders = []byte(original)
		r.Recipients = []Recipient{
			{Address: address, Action: action, Status: status, RemoteMTA: remote, Diagnostic: diagnostic, Reason: reason},
			{Address: "fixed@example.com", Diagnostic: diagnostic},
		}
		raw, err := Build(r)
		if err != nil {
			if !errors.Is(err, ErrInvalidReport) {
				t.Fatalf("Build failed with an unexpected error: %v", err)
			}
			return
		}
		checkWellFormed(t, raw)
		p := parseDSN(t, raw)
		want := map[string]bool{"From": true, "To": true, "Subject": true, "Date": true, "Message-Id": true,
			"Mime-Version": true, "Auto-Submitted": true, "Content-Type": true}
		for name := range p.header {
			if !want[name] {
				t.Fatalf("unexpected header field %q", name)
			}
		}
		if len(p.header) != len(want) {
			t.Fatalf("header fields %v, want %d", p.header, len(want))
		}
		if len(p.perRecipient) != 2 || p.perRecipient[1].Get("Final-Recipient") != "rfc822; fixed@example.com" {
			t.Fatalf("recipient groups %v", p.perRecipient)
		}
		for _, g := range p.perRecipient {
			for name, values := range g {
				for _, v := range values {
					for _, c := range []byte(v) {
						if c < ' ' || c >= 0x7f {
							t.Fatalf("delivery-status field %s = %q is not printable ASCII", name, v)
						}
					}
				}
			}
		}
		if p.perMessage.Get("Reporting-MTA") != "dns; relay.example.com" {
			t.Fatalf("per-message fields %v", p.perMessage)
		}
	})
}
