package addr

import (
	"strings"
	"testing"
	"unicode"
)

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return strings.ContainsFunc(s, unicode.IsControl)
}

// FuzzParse checks the invariants the SMTP layer relies on: no panic, no
// control characters in an accepted address or in an error message, and a
// parsed address written out (both forms) parses back to itself.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"", "user@example.com", `"a b"@example.com`, "a b@example.com", "a@b@example.com",
		"@a,@b:user@c", "u@[192.0.2.1]", "u@[IPv6:2001:db8::1]", "u@xn--bcher-kva.example",
		"ü@bücher.example", "u@exa\x00mple.com", `"\"x\""@example.com`, "u%v@w", "u@ｅｘａｍｐｌｅ.com",
	} {
		f.Add(seed, false, true, false)
		f.Add(seed, true, false, true)
	}
	f.Fuzz(func(t *testing.T, in string, smtputf8, allowNull, requireQuoting bool) {
		opts := ParseOptions{SMTPUTF8: smtputf8, AllowNullSender: allowNull, RequireQuoting: requireQuoting}
		a, err := Parse(in, opts)
		if err != nil {
			if hasControl(err.Error()) {
				t.Fatalf("error message %q has a control character", err.Error())
			}
			return
		}
		if hasControl(in) || hasControl(a.Local) || hasControl(a.Domain) {
			t.Fatalf("Parse(%q) accepted a control character: %#v", in, a)
		}
		s := a.String()
		if len(s) > MaxPathLen || len(encodeLocal(a.Local)) > MaxLocalLen {
			t.Fatalf("Parse(%q) = %q is over a length limit", in, s)
		}
		// String is in the strict form people write, whatever the input.
		again, err := Parse(s, ParseOptions{SMTPUTF8: true, AllowNullSender: allowNull, RequireQuoting: true})
		if err != nil || again != a {
			t.Fatalf("Parse(%q) = %#v; its String %q re-parses to %#v, %v", in, a, s, again, err)
		}
		// The ASCII form needs SMTPUTF8 only when the local part does.
		again, err = Parse(a.ASCIIString(), ParseOptions{SMTPUTF8: a.NeedsSMTPUTF8(), AllowNullSender: allowNull, RequireQuoting: true})
		if err != nil || again != a {
			t.Fatalf("Parse(%q) = %#v; its ASCIIString %q re-parses to %#v, %v", in, a, a.ASCIIString(), again, err)
		}
	})
}
