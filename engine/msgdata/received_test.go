package msgdata

import (
	"net/mail"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var receivedTime = time.Date(2024, 1, 2, 10, 0, 0, 0, time.FixedZone("", 3600))

func TestReceived(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   ReceivedFields
		want string
	}{
		{"plain single recipient", ReceivedFields{
			FromHelo: "printer.lan", ClientIP: netip.MustParseAddr("192.0.2.7"), ClientHost: "scan.example.com",
			ByHost: "relay.example.com", Protocol: "ESMTP", ID: "01J7X", For: "bob@example.net", Time: receivedTime,
		}, "Received: from printer.lan (scan.example.com [192.0.2.7])\r\n" +
			"\tby relay.example.com with ESMTP id 01J7X for <bob@example.net>;\r\n" +
			"\tTue, 02 Jan 2024 10:00:00 +0100\r\n"},
		{"TLS, AUTH, IPv6, several recipients", ReceivedFields{
			FromHelo: "[IPv6:2001:db8::1]", ClientIP: netip.MustParseAddr("2001:db8::1"),
			ByHost: "relay.example.com", Protocol: "ESMTPSA", ID: "Q1", TLS: "TLS1.3 TLS_AES_128_GCM_SHA256", Time: receivedTime,
		}, "Received: from [IPv6:2001:db8::1] ([IPv6:2001:db8::1]) by relay.example.com\r\n" +
			"\twith ESMTPSA (TLS1.3 TLS_AES_128_GCM_SHA256) id Q1;\r\n" +
			"\tTue, 02 Jan 2024 10:00:00 +0100\r\n"},
		{"IPv4-mapped address and literal HELO", ReceivedFields{
			FromHelo: "[192.0.2.1]", ClientIP: netip.MustParseAddr("::ffff:192.0.2.1"), ByHost: "relay", Time: receivedTime,
		}, "Received: from [192.0.2.1] ([192.0.2.1]) by relay with ESMTP;\r\n" +
			"\tTue, 02 Jan 2024 10:00:00 +0100\r\n"},
		{"hostile HELO", ReceivedFields{
			FromHelo: "evil (x)\r\nX-Injected: yes; [1.2.3.4] <a>", ByHost: "relay", Time: receivedTime,
		}, "Received: from evilxX-Injected:yes1.2.3.4a by relay with ESMTP;\r\n" +
			"\tTue, 02 Jan 2024 10:00:00 +0100\r\n"},
		{"bogus address literal", ReceivedFields{FromHelo: "[999.1.1.1]", ByHost: "relay", Time: receivedTime},
			"Received: from 999.1.1.1 by relay with ESMTP; Tue, 02 Jan 2024 10:00:00 +0100\r\n"},
		{"empty HELO, odd recipient left out", ReceivedFields{
			ByHost: "relay", For: "\"john smith\"@example.com", Protocol: "ESMTP\r\nX: y", Time: receivedTime,
		}, "Received: from unknown by relay with ESMTPXy; Tue, 02 Jan 2024 10:00:00 +0100\r\n"},
		{"non-ASCII recipient left out", ReceivedFields{ByHost: "relay", For: "jörg@example.de", Time: receivedTime},
			"Received: from unknown by relay with ESMTP; Tue, 02 Jan 2024 10:00:00 +0100\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Received(tt.in)
			if got != tt.want {
				t.Errorf("Received =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestReceivedIsOneValidField parses the field like a mail reader would and
// checks it stays one field with short lines and a readable date.
func TestReceivedIsOneValidField(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 300)
	for _, f := range []ReceivedFields{
		{FromHelo: "mail.example.com", ClientIP: netip.MustParseAddr("198.51.100.9"), ClientHost: "mail.example.com",
			ByHost: "relay.example.com", Protocol: "ESMTPS", ID: "01HZZZZZZZZZZZZZZZZZZZZZZZ", For: "someone.long@subdomain.example.org",
			TLS: "TLS1.2 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", Time: receivedTime},
		{FromHelo: long + "\n" + long, ClientHost: long, ByHost: long, ID: long, TLS: long + "(" + long, For: long + "@x", Time: receivedTime},
	} {
		got := Received(f)
		msg, err := mail.ReadMessage(strings.NewReader(got + "\r\nbody"))
		if err != nil {
			t.Fatalf("parsing %q: %v", got, err)
		}
		if len(msg.Header) != 1 || len(msg.Header["Received"]) != 1 {
			t.Errorf("got fields %v, want exactly one Received", msg.Header)
		}
		value := msg.Header.Get("Received")
		date, err := mail.ParseDate(strings.TrimSpace(value[strings.LastIndex(value, ";")+1:]))
		if err != nil || !date.Equal(receivedTime) {
			t.Errorf("date after the last ';' = %v, %v; want %v", date, err, receivedTime)
		}
		for line := range strings.SplitSeq(strings.TrimSuffix(got, "\r\n"), "\r\n") {
			if len(line) > 998 {
				t.Errorf("line of %d octets", len(line))
			}
			if f.FromHelo == "mail.example.com" && len(line) >= 78 {
				t.Errorf("line %q is %d characters, want under 78", line, len(line))
			}
		}
	}
}
