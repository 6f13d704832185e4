package addr

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

var (
	plain    = ParseOptions{}
	withUTF8 = ParseOptions{SMTPUTF8: true}
	mail     = ParseOptions{AllowNullSender: true}
	human    = ParseOptions{SMTPUTF8: true, RequireQuoting: true}
)

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		opts ParseOptions
		want Address
		str  string // String(); "" means in
	}{
		{"simple", "user@example.com", plain, Address{"user", "example.com"}, ""},
		{"domain case and trailing dot", "User@Example.COM.", plain, Address{"User", "example.com"}, "User@example.com"},
		{"local case kept", "John.Doe@example.com", plain, Address{"John.Doe", "example.com"}, ""},
		{"atext specials", "a!b#c$d%e&f'g*h+i-j/k=l?m^n_o`p{q|r}s~t@example.com", plain,
			Address{"a!b#c$d%e&f'g*h+i-j/k=l?m^n_o`p{q|r}s~t", "example.com"}, ""},
		{"null sender", "", mail, Address{}, ""},
		{"single label domain", "root@localhost", plain, Address{"root", "localhost"}, ""},
		{"hyphens inside label", "a@r3---sn-abc.example", plain, Address{"a", "r3---sn-abc.example"}, ""},
		{"punycode domain becomes unicode", "a@xn--bcher-kva.example", plain, Address{"a", "bücher.example"}, "a@bücher.example"},
		{"unicode domain with SMTPUTF8", "a@BÜCHER.example", withUTF8, Address{"a", "bücher.example"}, "a@bücher.example"},
		{"unicode local with SMTPUTF8", "用户@例子.广告", withUTF8, Address{"用户", "例子.广告"}, ""},
		{"fullwidth domain mapped", "a@ｅｘａｍｐｌｅ.com", withUTF8, Address{"a", "example.com"}, "a@example.com"},
		{"IPv4 literal", "a@[192.0.2.1]", plain, Address{"a", "[192.0.2.1]"}, ""},
		{"IPv6 literal canonical", "a@[ipv6:2001:DB8:0:0::1]", plain, Address{"a", "[IPv6:2001:db8::1]"}, "a@[IPv6:2001:db8::1]"},
		{"quoted string unquoted", `"john"@example.com`, plain, Address{"john", "example.com"}, "john@example.com"},
		{"quoted with space", `"john smith"@example.com`, plain, Address{"john smith", "example.com"}, ""},
		{"quoted pair", `"a\"b\\c"@example.com`, plain, Address{`a"b\c`, "example.com"}, ""},
		// What go-smtp hands over for MAIL FROM:<"john smith"@example.com>.
		{"go-smtp unquoted space", "john smith@example.com", plain, Address{"john smith", "example.com"}, `"john smith"@example.com`},
		// ... and for RCPT TO:<"a@b"@example.com>: the domain is after the last '@'.
		{"go-smtp unquoted at", "a@b@example.com", plain, Address{"a@b", "example.com"}, `"a@b"@example.com`},
		{"local of 64 octets", strings.Repeat("a", 64) + "@example.com", plain, Address{strings.Repeat("a", 64), "example.com"}, ""},
		{"RequireQuoting takes a quoted string", `"a b"@example.com`, human, Address{"a b", "example.com"}, ""},
		{"RequireQuoting takes a dot-string", "a.b@example.com", human, Address{"a.b", "example.com"}, ""},
		{"label of 63 octets", "a@" + strings.Repeat("b", 63) + ".example", plain, Address{"a", strings.Repeat("b", 63) + ".example"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.in, tt.opts)
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			wantStr := tt.str
			if wantStr == "" {
				wantStr = tt.in
			}
			if got.String() != wantStr {
				t.Errorf("String() = %q, want %q", got.String(), wantStr)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		opts ParseOptions
		kind Kind
	}{
		{"empty without null sender", "", plain, KindSyntax},
		{"no at", "user", plain, KindSyntax},
		{"empty local", "@example.com", plain, KindSyntax},
		{"empty quoted local", `""@example.com`, plain, KindSyntax},
		{"empty domain", "user@", plain, KindSyntax},
		{"source route", "@a.example,@b.example:user@c.example", plain, KindSyntax},
		{"source route single", "@a.example:user@c.example", plain, KindSyntax},
		{"NUL", "us\x00er@example.com", plain, KindSyntax},
		{"CR in domain", "user@exam\rple.com", plain, KindSyntax},
		{"LF", "user@example.com\n", plain, KindSyntax},
		{"tab", "us\ter@example.com", plain, KindSyntax},
		{"DEL", "us\x7fer@example.com", plain, KindSyntax},
		{"C1 control", "us\u0085er@example.com", withUTF8, KindSyntax},
		{"invalid UTF-8", "us\xffer@example.com", withUTF8, KindSyntax},
		{"non-ASCII local without SMTPUTF8", "üser@example.com", plain, KindNeedsSMTPUTF8},
		{"non-ASCII domain without SMTPUTF8", "user@bücher.example", plain, KindNeedsSMTPUTF8},
		{"local of 65 octets", strings.Repeat("a", 65) + "@example.com", plain, KindTooLong},
		{"quoted local over 64 on the wire", strings.Repeat("a ", 32) + "@example.com", plain, KindTooLong},
		{"label of 64 octets", "a@" + strings.Repeat("b", 64) + ".example", plain, KindTooLong},
		{"path of 257 octets", "a@" + strings.Repeat(strings.Repeat("b", 62)+".", 4) + "example", plain, KindTooLong},
		{"underscore in domain", "a@under_score.example", plain, KindSyntax},
		{"space in domain", "a@exa mple.com", plain, KindSyntax},
		{"empty label", "a@example..com", plain, KindSyntax},
		{"leading dot", "a@.example.com", plain, KindSyntax},
		{"two trailing dots", "a@example.com..", plain, KindSyntax},
		{"leading hyphen", "a@-example.com", plain, KindSyntax},
		{"trailing hyphen", "a@example-.com", plain, KindSyntax},
		{"bad punycode", "a@xn--zz-.example", plain, KindSyntax},
		{"ASCII punycode", "a@xn--abc-.example", plain, KindSyntax},
		{"bare IPv4 domain", "a@192.0.2.1", plain, KindSyntax},
		{"unclosed literal", "a@[192.0.2.1", plain, KindSyntax},
		{"IPv6 without tag", "a@[2001:db8::1]", plain, KindSyntax},
		{"IPv4 in IPv6 tag", "a@[IPv6:192.0.2.1]", plain, KindSyntax},
		{"IPv6 zone", "a@[IPv6:fe80::1%eth0]", plain, KindSyntax},
		{"general literal", "a@[x-tag:abc]", plain, KindSyntax},
		{"RequireQuoting refuses bare space", "a b@example.com", human, KindSyntax},
		{"RequireQuoting refuses double at", "a@@example.com", human, KindSyntax},
		{"RequireQuoting refuses double dot", "a..b@example.com", human, KindSyntax},
		{"bad IPv4 literal", "a@[999.0.2.1]", plain, KindSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.in, tt.opts)
			if err == nil {
				t.Fatalf("Parse(%q) = %#v, want an error", tt.in, got)
			}
			var aerr *Error
			if !errors.As(err, &aerr) {
				t.Fatalf("Parse(%q) error %T is not *Error", tt.in, err)
			}
			if aerr.Kind != tt.kind {
				t.Errorf("Parse(%q) kind = %v (%v), want %v", tt.in, aerr.Kind, err, tt.kind)
			}
			for _, c := range err.Error() {
				if c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) {
					t.Errorf("error message %q contains a control character", err.Error())
				}
			}
		})
	}
}

func TestIDNSpellingsCompareEqual(t *testing.T) {
	t.Parallel()
	spellings := []string{
		"info@bücher.example",
		"info@BÜCHER.EXAMPLE.",
		"info@xn--bcher-kva.example",
		"info@XN--BCHER-KVA.example",
	}
	want, err := Parse(spellings[0], withUTF8)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spellings[1:] {
		got, err := Parse(s, withUTF8)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if got != want {
			t.Errorf("Parse(%q) = %#v, want %#v", s, got, want)
		}
	}
	if got := want.ASCIIDomain(); got != "xn--bcher-kva.example" {
		t.Errorf("ASCIIDomain() = %q", got)
	}
	if got := want.ASCIIString(); got != "info@xn--bcher-kva.example" {
		t.Errorf("ASCIIString() = %q", got)
	}
	if want.NeedsSMTPUTF8() {
		t.Error("an IDN domain with an ASCII local part should not need SMTPUTF8")
	}
}

func TestSuspicious(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"user@example.com", false},
		{"first.last+tag@example.com", false},
		{`"user"@example.com`, false}, // needless quotes: same mailbox as user@
		{"", false},
		{`"john smith"@example.com`, true},
		{"john smith@example.com", true}, // the same, as go-smtp hands it over
		{"user%other.example@example.com", true},
		{"host!user@example.com", true},
		{`"user@other.example"@example.com`, true},
		{`"a..b"@example.com`, true},
		{`".a"@example.com`, true},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in, mail)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		if got := a.Suspicious(); got != tt.want {
			t.Errorf("Parse(%q).Suspicious() = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNullSender(t *testing.T) {
	t.Parallel()
	a, err := Parse("", mail)
	if err != nil {
		t.Fatal(err)
	}
	if !a.IsNull() || a.String() != "" {
		t.Errorf("null sender = %#v, String %q", a, a.String())
	}
	if b, _ := Parse("a@example.com", mail); b.IsNull() {
		t.Error("a real address reported as null")
	}
}

func TestLiteralIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
	}{
		{"a@[192.0.2.1]", "192.0.2.1"},
		{"a@[IPv6:2001:db8::1]", "2001:db8::1"},
		{"a@[IPv6:::ffff:192.0.2.1]", "::ffff:192.0.2.1"},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in, plain)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.in, err)
		}
		ip, ok := a.LiteralIP()
		if !ok || ip != netip.MustParseAddr(tt.want) {
			t.Errorf("LiteralIP(%q) = %v, %v; want %s", tt.in, ip, ok, tt.want)
		}
		if a.ASCIIDomain() != a.Domain {
			t.Errorf("ASCIIDomain of literal changed it: %q", a.ASCIIDomain())
		}
	}
	a, _ := Parse("a@example.com", plain)
	if _, ok := a.LiteralIP(); ok {
		t.Error("LiteralIP reported a name as a literal")
	}
}

func TestNormalizeDomain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want, ascii string
	}{
		{"Example.COM", "example.com", "example.com"},
		{"example.com.", "example.com", "example.com"},
		{"xn--bcher-kva.example", "bücher.example", "xn--bcher-kva.example"},
		{"Bücher.Example", "bücher.example", "xn--bcher-kva.example"},
		{"[IPv6:2001:DB8::1]", "[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"},
	}
	for _, tt := range tests {
		got, err := NormalizeDomain(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		ascii, err := DomainToASCII(tt.in)
		if err != nil || ascii != tt.ascii {
			t.Errorf("DomainToASCII(%q) = %q, %v; want %q", tt.in, ascii, err, tt.ascii)
		}
	}
	for _, bad := range []string{"", ".", "a..b", "exa mple.com", "a_b.example", strings.Repeat("a", 2000)} {
		if got, err := NormalizeDomain(bad); err == nil {
			t.Errorf("NormalizeDomain(%q) = %q, want an error", bad, got)
		}
	}
}

func TestStringReparses(t *testing.T) {
	t.Parallel()
	for _, a := range []Address{
		{"a b", "example.com"},
		{`"quoted"`, "example.com"},
		{`back\slash`, "example.com"},
		{".dot", "example.com"},
		{"user", "bücher.example"},
	} {
		got, err := Parse(a.String(), withUTF8)
		if err != nil || got != a {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", a.String(), got, err, a)
		}
	}
}

func TestCheckHelo(t *testing.T) {
	for _, good := range []string{
		"relay.example.com", "relay.example.com.", "MY_PC", "Scanner-3F", "localhost",
		"[192.0.2.1]", "[IPv6:2001:db8::1]", "192.168.1.20", "2001:db8::7", "bücher.example",
		strings.Repeat("a", 63) + ".example",
	} {
		if err := CheckHelo(good); err != nil {
			t.Errorf("CheckHelo(%q) = %v, want nil", good, err)
		}
	}
	for _, bad := range []string{
		"", ".", "a..b", ".lead", "<script>", "host;rm", "a b", "a\x00b", "a\rb", "caf\xe9",
		"[300.1.2.3]", "[192.0.2.1", "[tag:x]", "fe80::1%eth0", "a\u0085b",
		strings.Repeat("a", 64) + ".example", strings.Repeat("a.", 128) + "a",
	} {
		err := CheckHelo(bad)
		if err == nil {
			t.Errorf("CheckHelo(%q) accepted", bad)
			continue
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("CheckHelo(%q): the error %q repeats the input", bad, err)
		}
	}
}

// FuzzCheckHelo: no panic; an accepted name holds nothing that could end a
// token or comment in a Received field or a log line; errors never repeat
// the input.
func FuzzCheckHelo(f *testing.F) {
	for _, seed := range []string{"relay.example.com", "MY_PC", "[192.0.2.1]", "[IPv6:::1]", "192.0.2.1", "bücher.example", "a..b", "a b", "<x>", "xn--bcher-kva.example."} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := CheckHelo(name)
		if err != nil {
			if hasControl(err.Error()) || (len(name) > 3 && strings.Contains(err.Error(), name)) {
				t.Fatalf("CheckHelo(%q): error %q", name, err)
			}
			return
		}
		if len(name) > MaxDomainLen || hasControl(name) || strings.ContainsAny(name, " \t()<>\";\\,@") {
			t.Fatalf("CheckHelo accepted %q", name)
		}
		if strings.HasPrefix(name, "[") != strings.HasSuffix(name, "]") {
			t.Fatalf("CheckHelo accepted unbalanced brackets in %q", name)
		}
	})
}
