package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	arrival = time.Date(2024, 3, 1, 9, 30, 0, 0, time.UTC)
	now     = time.Date(2024, 3, 6, 9, 31, 0, 0, time.UTC)
)

const originalASCII = "Received: from printer.lan (printer.lan [192.168.1.20])\r\n" +
	"\tby relay.example.com with ESMTP id 01HQ7ZK3; Fri, 01 Mar 2024 09:30:00 +0000\r\n" +
	"From: Scanner <scanner@example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: Scanned document\r\n" +
	"Date: Fri, 01 Mar 2024 09:29:58 +0000\r\n" +
	"Message-ID: <scan-0001@example.com>\r\n"

func baseReport() Report {
	return Report{
		ReportingMTA:    "relay.example.com",
		From:            "MAILER-DAEMON@relay.example.com",
		To:              "scanner@example.com",
		QueueID:         "01HQ7ZK3",
		ArrivalDate:     arrival,
		Date:            now,
		MessageID:       "dsn-01HQ7ZK3@relay.example.com",
		OriginalHeaders: []byte(originalASCII + "\r\nThe body must never appear in a bounce.\r\n"),
	}
}

func goldenCases() map[string]Report {
	one := baseReport()
	one.Recipients = []Recipient{{
		Address: "bob@example.net", Action: "failed", Status: "5.1.1", RemoteMTA: "mx.example.net",
		Diagnostic: "550 5.1.1 <bob@example.net>: no such user", LastAttempt: arrival.Add(time.Minute),
		Reason: "The recipient's server refused the address.",
	}}

	mixed := baseReport()
	mixed.Recipients = []Recipient{
		{Address: "bob@example.net", Action: "failed", Status: "5.1.1", RemoteMTA: "mx.example.net",
			Diagnostic: "550 5.1.1 no such user", LastAttempt: arrival.Add(time.Minute),
			Reason: "The recipient's server refused the address."},
		{Address: "carol@slow.example.org", Action: "failed", Status: "4.4.7", RemoteMTA: "mx.slow.example.org",
			Diagnostic: "451 4.4.1 Connection timed out", LastAttempt: now.Add(-time.Hour),
			Reason: "The message could not be delivered within 5 days."},
		{Address: "jörg+news@bücher.example", Action: "failed", Status: "5.7.1",
			Reason: "The address was refused by policy."},
		{Address: "dave@full.example.com", Action: "delayed", Status: "4.2.2", RemoteMTA: "mx.full.example.com",
			Diagnostic: "452-4.2.2 Mailbox full\r\n452 4.2.2 Try again later", LastAttempt: now.Add(-10 * time.Minute)},
	}

	long := baseReport()
	words := strings.Repeat("The remote server explained at great length why it refused. ", 40)
	long.Recipients = []Recipient{{
		Address: "bob@example.net", Status: "5.7.1", RemoteMTA: "mx.example.net",
		Diagnostic:  "550-5.7.1 " + words + "\r\n550 5.7.1 https://example.net/why?id=" + strings.Repeat("x", 1200),
		LastAttempt: arrival.Add(time.Minute),
	}}

	utf := baseReport()
	utf.OriginalHeaders = []byte("From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg@example.de>\r\n" +
		"To: bob@example.net\r\n" +
		"Subject: Grüße aus Köln – Rechnung März\r\n" +
		"Date: Fri, 01 Mar 2024 09:29:58 +0100\r\n")
	utf.Recipients = []Recipient{{
		Address: "bob@example.net", Status: "5.1.1", RemoteMTA: "mx.example.net",
		Diagnostic: "550 5.1.1 unknown user", Reason: "The recipient's server refused the address.",
	}}

	return map[string]Report{
		"one_recipient":    one,
		"several_mixed":    mixed,
		"long_diagnostic":  long,
		"nonascii_subject": utf,
	}
}

func TestBuildGolden(t *testing.T) {
	t.Parallel()
	for name, report := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := Build(report)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".eml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test -update after checking the change):\n%s", path, got)
			}
			checkWellFormed(t, got)
		})
	}
}

// parsedDSN is a notification as a mail reader and a bounce processor see it.
type parsedDSN struct {
	header       mail.Header
	boundary     string
	text         string // part 1, decoded
	perMessage   textproto.MIMEHeader
	perRecipient []textproto.MIMEHeader
	headersType  string
	headers      string // part 3, decoded
}

func parseDSN(t *testing.T, raw []byte) parsedDSN {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("net/mail cannot read the notification: %v", err)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	p := parsedDSN{header: msg.Header, boundary: params["boundary"]}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", i+1, err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("reading part %d: %v", i+1, err)
		}
		ct, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		types = append(types, ct)
		switch i {
		case 0:
			p.text = string(body)
		case 1:
			groups := strings.Split(strings.TrimRight(string(body), "\r\n"), "\r\n\r\n")
			for j, g := range groups {
				h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(g + "\r\n\r\n"))).ReadMIMEHeader()
				if err != nil {
					t.Fatalf("delivery-status group %d: %v", j, err)
				}
				if j == 0 {
					p.perMessage = h
				} else {
					p.perRecipient = append(p.perRecipient, h)
				}
			}
		case 2:
			p.headersType = ct
			p.headers = string(body)
		}
	}
	if want := []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}; strings.Join(types, " ") != strings.Join(want, " ") {
		t.Fatalf("parts %v, want %v", types, want)
	}
	return p
}

// checkWellFormed checks the rules every notification obeys.
func checkWellFormed(t *testing.T, raw []byte) {
	t.Helper()
	if !bytes.HasSuffix(raw, []byte("\r\n")) {
		t.Error("message does not end in CRLF")
	}
	for i, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\r\n")), []byte("\r\n")) {
		if len(line) > 998 {
			t.Errorf("line %d has %d octets", i+1, len(line))
		}
		if bytes.ContainsAny(line, "\r\n\x00") {
			t.Errorf("line %d has a bare CR, LF or NUL: %q", i+1, line)
		}
	}
}

func TestBuildParses(t *testing.T) {
	t.Parallel()
	report := goldenCases()["several_mixed"]
	raw, err := Build(report)
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, raw)

	from, err := mail.ParseAddress(p.header.Get("From"))
	if err != nil || from.Address != "MAILER-DAEMON@relay.example.com" || from.Name != "Mail Delivery System" {
		t.Errorf("From = %q (%v)", p.header.Get("From"), err)
	}
	to, err := mail.ParseAddress(p.header.Get("To"))
	if err != nil || to.Address != "scanner@example.com" {
		t.Errorf("To = %q (%v)", p.header.Get("To"), err)
	}
	if date, err := p.header.Date(); err != nil || !date.Equal(now) {
		t.Errorf("Date = %v (%v), want %v", date, err, now)
	}
	for field, want := range map[string]string{
		"Auto-Submitted": "auto-replied",
		"MIME-Version":   "1.0",
		"Message-ID":     "<dsn-01HQ7ZK3@relay.example.com>",
		"Subject":        "Delivery status notification",
	} {
		if got := p.header.Get(field); got != want {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
	}

	if got := p.perMessage.Get("Reporting-MTA"); got != "dns; relay.example.com" {
		t.Errorf("Reporting-MTA = %q", got)
	}
	if got, err := mail.ParseDate(p.perMessage.Get("Arrival-Date")); err != nil || !got.Equal(arrival) {
		t.Errorf("Arrival-Date = %q", p.perMessage.Get("Arrival-Date"))
	}
	if len(p.perRecipient) != len(report.Recipients) {
		t.Fatalf("%d recipient groups, want %d", len(p.perRecipient), len(report.Recipients))
	}
	want := []map[string]string{
		{"Final-Recipient": "rfc822; bob@example.net", "Action": "failed", "Status": "5.1.1",
			"Remote-MTA": "dns; mx.example.net", "Diagnostic-Code": "smtp; 550 5.1.1 no such user"},
		{"Final-Recipient": "rfc822; carol@slow.example.org", "Action": "failed", "Status": "4.4.7",
			"Remote-MTA": "dns; mx.slow.example.org", "Diagnostic-Code": "smtp; 451 4.4.1 Connection timed out"},
		{"Final-Recipient": `utf-8; j\x{F6}rg\x{2B}news@b\x{FC}cher.example`, "Action": "failed", "Status": "5.7.1",
			"Remote-MTA": "", "Diagnostic-Code": "", "Last-Attempt-Date": ""},
		{"Final-Recipient": "rfc822; dave@full.example.com", "Action": "delayed", "Status": "4.2.2",
			"Diagnostic-Code": "smtp; 452-4.2.2 Mailbox full 452 4.2.2 Try again later"},
	}
	for i, fields := range want {
		for name, value := range fields {
			if got := p.perRecipient[i].Get(name); got != value {
				t.Errorf("recipient %d: %s = %q, want %q", i+1, name, got, value)
			}
		}
	}
	if got, err := mail.ParseDate(p.perRecipient[0].Get("Last-Attempt-Date")); err != nil || !got.Equal(arrival.Add(time.Minute)) {
		t.Errorf("Last-Attempt-Date = %q", p.perRecipient[0].Get("Last-Attempt-Date"))
	}

	for _, s := range []string{
		"could not be delivered to the following recipients",
		"<bob@example.net>", "The recipient's server refused the address.",
		"The server mx.example.net answered: 550 5.1.1 no such user",
		"<jörg+news@bücher.example>", "The message could not be delivered within 5 days.",
		"not yet been delivered", "<dave@full.example.com>",
		`Your message: "Scanned document"`, "01HQ7ZK3",
	} {
		if !strings.Contains(strings.ReplaceAll(p.text, "\r\n    ", " "), s) {
			t.Errorf("text part lacks %q:\n%s", s, p.text)
		}
	}
	if p.headers != originalASCII {
		t.Errorf("attached headers =\n%q\nwant\n%q", p.headers, originalASCII)
	}
}

func TestBuildSubjectNamesSingleRecipient(t *testing.T) {
	t.Parallel()
	r := baseReport()
	r.Recipients = []Recipient{{Address: "jörg@bücher.example"}}
	raw, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, raw)
	subject, err := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
	if err != nil || subject != "Undelivered mail returned to sender: jörg@bücher.example" {
		t.Errorf("Subject = %q (%v)", subject, err)
	}
	if g := p.perRecipient[0]; g.Get("Action") != "failed" || g.Get("Status") != "5.0.0" {
		t.Errorf("defaults: Action %q Status %q, want failed 5.0.0", g.Get("Action"), g.Get("Status"))
	}
}

func TestBuildLongDiagnostic(t *testing.T) {
	t.Parallel()
	report := goldenCases()["long_diagnostic"]
	raw, err := Build(report)
	if err != nil {
		t.Fatal(err)
	}
	checkWellFormed(t, raw)
	p := parseDSN(t, raw)
	got := p.perRecipient[0].Get("Diagnostic-Code")
	// Folding keeps every word; only a word longer than a line gains a space.
	wantWords := strings.Fields("smtp; " + report.Recipients[0].Diagnostic)
	if gotJoined := strings.ReplaceAll(got, " ", ""); gotJoined != strings.Join(wantWords, "") {
		t.Errorf("Diagnostic-Code lost text:\n%s", got)
	}
	if !strings.HasPrefix(got, "smtp; 550-5.7.1 The remote server explained") {
		t.Errorf("Diagnostic-Code = %.60q...", got)
	}
}

func TestBuildNonASCIIOriginalHeaders(t *testing.T) {
	t.Parallel()
	raw, err := Build(goldenCases()["nonascii_subject"])
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range raw {
		if c >= 0x80 {
			t.Fatalf("byte %d is %#x: the notification must be 7-bit when the sender's address is ASCII", i, c)
		}
	}
	p := parseDSN(t, raw)
	if !strings.Contains(p.headers, "Subject: Grüße aus Köln – Rechnung März\r\n") {
		t.Errorf("attached headers lost the UTF-8 subject:\n%s", p.headers)
	}
	if !strings.Contains(p.text, `Your message: "Grüße aus Köln – Rechnung März"`) {
		t.Errorf("text part does not name the subject:\n%s", p.text)
	}
}

// TestBuildRefusesInjection feeds line breaks and control characters through
// every single-line field and checks that no field or part appears that the
// builder did not write.
func TestBuildRefusesInjection(t *testing.T) {
	t.Parallel()
	const evil = "\r\nX-Injected: yes\r\n\r\n--=_postroom-dsn-Q1--\r\n"
	r := Report{
		ReportingMTA: "relay.example.com" + evil,
		From:         "MAILER-DAEMON@relay.example.com" + evil,
		To:           "alice@example.com>" + evil,
		QueueID:      "Q1",
		Date:         now,
		MessageID:    "id@relay" + evil,
		Recipients: []Recipient{{
			Address: "bob@example.net" + evil, Action: "failed", Status: "5.1.1" + evil,
			RemoteMTA: "mx" + evil, Diagnostic: "550 no" + evil, Reason: "Refused." + evil,
		}},
		OriginalHeaders: []byte("Subject: x\r\n--=_postroom-dsn-Q1\r\nX-Fake: 1\r\n"),
	}
	raw, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	checkWellFormed(t, raw)
	p := parseDSN(t, raw)
	if p.boundary == "=_postroom-dsn-Q1" {
		t.Error("boundary occurs in the attached headers but was used")
	}
	if len(p.header["X-Injected"]) != 0 {
		t.Error("X-Injected reached the message header")
	}
	allowed := map[string]bool{"Final-Recipient": true, "Action": true, "Status": true, "Remote-Mta": true, "Diagnostic-Code": true}
	for name := range p.perRecipient[0] {
		if !allowed[name] {
			t.Errorf("unexpected field %q in the recipient group", name)
		}
	}
	if got := p.perRecipient[0].Get("Status"); got != "5.0.0" {
		t.Errorf("Status = %q, want the generic 5.0.0 for a malformed code", got)
	}
	if len(p.perRecipient) != 1 {
		t.Errorf("%d recipient groups, want 1", len(p.perRecipient))
	}
}

func TestBuildRejectsInvalidReports(t *testing.T) {
	t.Parallel()
	valid := goldenCases()["one_recipient"]
	tests := map[string]func(r *Report){
		"null sender":   func(r *Report) { r.To = "" },
		"no recipients": func(r *Report) { r.Recipients = nil },
		"no date":       func(r *Report) { r.Date = time.Time{} },
		"no Message-ID": func(r *Report) { r.MessageID = "<>" },
		"no host":       func(r *Report) { r.ReportingMTA = "\r\n" },
		"no From":       func(r *Report) { r.From = "" },
		"unknown action": func(r *Report) {
			r.Recipients = []Recipient{{Address: "a@example.com", Action: "exploded"}}
		},
		"recipient without address": func(r *Report) { r.Recipients = []Recipient{{Address: " <> "}} },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := valid
			r.Recipients = append([]Recipient(nil), valid.Recipients...)
			mutate(&r)
			if _, err := Build(r); !errors.Is(err, ErrInvalidReport) {
				t.Errorf("Build error = %v, want ErrInvalidReport", err)
			}
		})
	}
}
