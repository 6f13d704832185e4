package dkim

import (
	"strings"
	"testing"
)

func TestFromDomain(t *testing.T) {
	t.Parallel()
	cases := []struct {
		header string
		want   string // "" means an error is expected
	}{
		{"From: alice@Example.COM\r\n", "example.com"},
		{"From: \"Alice\" <alice@Mail.Example.com>\r\nTo: b@example.net\r\n\r\nbody", "mail.example.com"},
		{"From: alice@example.com.\r\n", ""}, // not an RFC 5322 address
		{"To: b@example.net\r\nFrom: Alice <alice@example.org>, Bob <bob@example.net>\r\n", "example.org"},
		{"From: =?windows-1252?Q?Jos=E9?= <jose@example.com>\r\n", "example.com"},
		{"From: =?utf-8?B?QmrDtnJu?= <bjorn@example.se>\r\n", "example.se"},
		{"From: Printer\r\n <printer@example.com>\r\n", "example.com"},
		{"from: x@example.com", "example.com"},
		{"Subject: no sender\r\n\r\n", ""},
		{"From: \r\n", ""},
		{"From: not an address\r\n", ""},
		{"From: undisclosed-senders:;\r\n", ""},
		{"From: a@[192.0.2.1]\r\n", ""},
		{"From: a@exa_mple.com\r\n", ""},
		{"\r\nFrom: a@example.com\r\n", ""}, // that From is in the body
		{"", ""},
	}
	for _, c := range cases {
		got, err := FromDomain([]byte(c.header))
		if c.want == "" {
			if err == nil {
				t.Errorf("FromDomain(%q) = %q, want an error", c.header, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("FromDomain(%q) = %q, %v; want %q", c.header, got, err, c.want)
		}
	}
}

// FuzzFromDomain checks that any header either fails cleanly or yields a
// domain that is already normalised and safe to use as a d= tag.
func FuzzFromDomain(f *testing.F) {
	for _, seed := range []string{
		"From: alice@example.com\r\n",
		"From: \"A, B\" <a@b.example>, c@d.example\r\n\r\nbody",
		"From: =?iso-8859-1?q?J=F6rg?= <j@example.de>\r\n",
		"From: (comment) a@example.com (more)\r\n",
		"From: a@example.com\nFrom: b@example.net\n",
		"Received: x\r\n\tcontinued\r\nFrom:\r\n a@example.com\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		domain, err := FromDomain(header)
		if err != nil {
			return
		}
		again, err := NormaliseDomain(domain)
		if err != nil || again != domain {
			t.Fatalf("FromDomain(%q) = %q, which is not normalised (%q, %v)", header, domain, again, err)
		}
		if strings.ContainsAny(domain, "; \t\r\n=") {
			t.Fatalf("FromDomain(%q) = %q, which could break a tag list", header, domain)
		}
	})
}
