package engine

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"postroom/engine/config"
	"postroom/storage"
)

func TestPreviewTextFindsWhatAPersonReads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"plain", "Subject: x\r\n\r\nHello Ann,\r\nyour invoice is attached.\r\n", "Hello Ann,\nyour invoice is attached."},
		{"quoted-printable latin1", "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe aus K=F6ln=\r\n, 5 =80\r\n",
			"Grüße aus Köln, 5 €"},
		{"base64 utf-8", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSBhdXMg\r\nS8O2bG4=\r\n", "Grüße aus Köln"},
		{"alternative prefers plain", "Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>HTML</p>\r\n--b\r\nContent-Type: text/plain\r\n\r\nPlain text\r\n--b--\r\n", "Plain text"},
		{"html only", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<html><head><style>p{}</style></head><body><p>Dear&nbsp;Bob</p><p>Order <b>42</b> shipped.</p></body></html>\r\n--b--\r\n",
			"Dear Bob\nOrder 42 shipped."},
		{"attachment only", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nJVBERi0=\r\n--b--\r\n",
			"(This message has no text to show; it holds only attachments or other content.)"},
		{"text attachment skipped", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nsecret log\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee the log.\r\n--b--\r\n", "See the log."},
	} {
		if got := previewText([]byte(tc.msg), 0); got != tc.want {
			t.Errorf("%s: preview %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := previewText([]byte("\r\n"+strings.Repeat("ab", 50)), 10); got != "ababababab\n…" {
		t.Errorf("a long text cut to 10 characters reads %q", got)
	}
}

func TestBodyPreviewAndDestinationsFromTheQueue(t *testing.T) {
	t.Parallel()
	// Mail for example.net goes to a port where nothing listens, so it
	// is deferred with an error; example.com goes to a working next hop.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	hop := newNextHop(t)
	s := testSettings(nil)
	s.Delivery.Routes = []config.Route{{Domain: "example.net", Host: closed}, {Domain: "example.com", Host: hop.addr()}}
	r := startRelay(t, s, Options{}, "")
	since := time.Now().Add(-time.Minute)

	r.mustSend("shop@example.org", []string{"ann@example.net", "bob@example.net"},
		"Subject: Invoice 7\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease find invoice 7 attached.\r\n")
	r.mustSend("shop@example.org", []string{"cy@example.com"}, "Subject: Hello\r\n\r\nHi Cy\r\n")
	hop.wait()
	rows := r.waitFor("example.net deferred and example.com sent", func(rows []storage.Row) bool {
		n := 0
		for _, row := range rows {
			if row.State == StateDeferred || row.State == StateSent {
				n++
			}
		}
		return n == 3
	})

	var invoice int64
	for _, row := range rows {
		if row.Subject == "Invoice 7" {
			invoice = row.MessageID
		}
	}
	ctx := context.Background()
	got, err := r.e.BodyPreview(ctx, invoice, 200)
	if err != nil || got != "Please find invoice 7 attached." {
		t.Errorf("BodyPreview = %q, %v", got, err)
	}
	if _, err := r.e.BodyPreview(ctx, 9999, 200); err == nil {
		t.Error("BodyPreview of a message that does not exist succeeded")
	}

	dests, err := r.e.Destinations(ctx, since, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dests) != 2 {
		t.Fatalf("Destinations = %+v, want example.net and example.com", dests)
	}
	net0, com := dests[0], dests[1]
	if net0.Domain != "example.net" || net0.Retrying != 2 || net0.LastError == "" || net0.LastErrorFinal {
		t.Errorf("first destination %+v, want example.net with 2 retrying and its error", net0)
	}
	if com.Domain != "example.com" || com.Sent != 1 || com.Total() != 1 || com.LastError != "" {
		t.Errorf("second destination %+v, want example.com with 1 sent", com)
	}
	if later, _ := r.e.Destinations(ctx, time.Now().Add(time.Hour), 10); len(later) != 1 || later[0].Domain != "example.net" {
		t.Errorf("Destinations since a later time = %+v, want only the unsent example.net", later)
	}
}
