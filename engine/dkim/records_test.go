package dkim

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestRecords(t *testing.T) {
	t.Parallel()
	key := fixedEd25519Key(t)
	ips := []netip.Addr{
		netip.MustParseAddr("203.0.113.5"),
		netip.MustParseAddr("::ffff:203.0.113.5"), // the same address, mapped
		netip.MustParseAddr("2001:db8::25"),
		netip.MustParseAddr("192.168.1.10"), // LAN: receivers never see it
		netip.MustParseAddr("127.0.0.1"),
	}
	recs, err := Records(key, ips, "mailto:dmarc-reports@example.com")
	if err != nil {
		t.Fatalf("Records: %v", err)
	}
	dkimValue, _ := key.PublicRecord()
	want := []Record{
		{Name: "pr202611._domainkey.example.com", Type: "TXT", Value: dkimValue},
		{Name: "example.com", Type: "TXT", Value: "v=spf1 ip4:203.0.113.5 ip6:2001:db8::25 mx ~all"},
		{Name: "_dmarc.example.com", Type: "TXT", Value: "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.com"},
	}
	if len(recs) != len(want) {
		t.Fatalf("Records returned %d records, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		got := recs[i]
		if got.Name != w.Name || got.Type != w.Type || got.Value != w.Value {
			t.Errorf("record %d = %s %s %q, want %s %s %q", i, got.Name, got.Type, got.Value, w.Name, w.Type, w.Value)
		}
		if got.Purpose == "" || strings.Count(got.Purpose, ". ") > 0 || !strings.HasSuffix(got.Purpose, ".") {
			t.Errorf("record %d purpose is not one sentence: %q", i, got.Purpose)
		}
	}

	none, err := Records(key, []netip.Addr{netip.MustParseAddr("10.0.0.1")}, "")
	if err != nil {
		t.Fatalf("Records without public addresses: %v", err)
	}
	if none[1].Value != "v=spf1 mx ~all" || !strings.Contains(none[1].Purpose, "not known") {
		t.Errorf("SPF without a known address = %q (%q), want v=spf1 mx ~all and a note that the address is not known", none[1].Value, none[1].Purpose)
	}
	if none[2].Value != "v=DMARC1; p=none" {
		t.Errorf("DMARC without report address = %q, want v=DMARC1; p=none", none[2].Value)
	}

	for _, bad := range []string{"not an address", "a;b@example.com", "Name <x@example.com>"} {
		if _, err := Records(key, nil, bad); err == nil {
			t.Errorf("Records accepted report address %q", bad)
		}
	}
}

func TestSplitTXTAndFormatZone(t *testing.T) {
	t.Parallel()
	key := generate(t, AlgorithmRSA2048)
	recs, err := Records(key, []netip.Addr{netip.MustParseAddr("203.0.113.5")}, "dmarc@example.com")
	if err != nil {
		t.Fatal(err)
	}
	value := recs[0].Value
	if len(value) <= txtChunk {
		t.Fatalf("RSA-2048 record is %d bytes; the test needs one over 255", len(value))
	}
	parts := SplitTXT(value)
	if len(parts) != 2 || strings.Join(parts, "") != value {
		t.Errorf("SplitTXT gave %d parts that join to a different value", len(parts))
	}
	for i, p := range parts {
		if len(p) > txtChunk || len(p) == 0 {
			t.Errorf("part %d is %d bytes, want 1..255", i, len(p))
		}
	}
	if got := SplitTXT(""); len(got) != 1 || got[0] != "" {
		t.Errorf("SplitTXT(\"\") = %q, want one empty string", got)
	}

	// A zone-file parser must read back exactly the records we meant.
	zone := FormatZone(recs)
	zp := dns.NewZoneParser(strings.NewReader(zone), "", "")
	var got []*dns.TXT
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		txt, isTXT := rr.(*dns.TXT)
		if !isTXT {
			t.Fatalf("zone has a %T record, want TXT only", rr)
		}
		got = append(got, txt)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone does not parse: %v\n%s", err, zone)
	}
	if len(got) != len(recs) {
		t.Fatalf("zone holds %d records, want %d:\n%s", len(got), len(recs), zone)
	}
	for i, r := range recs {
		if got[i].Hdr.Name != r.Name+"." || got[i].Hdr.Ttl != zoneTTL {
			t.Errorf("zone record %d is %s TTL %d, want %s. TTL %d", i, got[i].Hdr.Name, got[i].Hdr.Ttl, r.Name, zoneTTL)
		}
		if joined := strings.Join(got[i].Txt, ""); joined != r.Value {
			t.Errorf("zone record %d reads back as %q, want %q", i, joined, r.Value)
		}
	}
	if len(got[0].Txt) != 2 || !strings.Contains(zone, "(\n") {
		t.Errorf("long DKIM value not written as several strings in parentheses:\n%s", zone)
	}
	for _, line := range strings.Split(zone, "\n") {
		if len(line) > 300 {
			t.Errorf("zone line of %d bytes; long values must be split:\n%s", len(line), line)
		}
	}
}

func TestFormatZoneQuotes(t *testing.T) {
	t.Parallel()
	zone := FormatZone([]Record{{Name: "x.example.com", Type: "TXT", Value: `say "hi" \ bye`}})
	rr, err := dns.NewRR(strings.TrimSpace(zone))
	if err != nil {
		t.Fatalf("zone line does not parse: %v\n%s", err, zone)
	}
	// miekg/dns keeps presentation escapes in Txt; compare in that form.
	if got := rr.(*dns.TXT).Txt[0]; got != `say \"hi\" \\ bye` {
		t.Errorf("quoted value reads back as %q", got)
	}
}
