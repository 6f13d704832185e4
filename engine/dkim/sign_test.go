package dkim

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func readMessage(t *testing.T) []byte {
	t.Helper()
	msg, err := os.ReadFile(filepath.Join("testdata", "message.eml"))
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// opener returns an open func for Sign that serves msg and counts calls.
func opener(msg []byte, calls *int) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		if calls != nil {
			*calls++
		}
		return io.NopCloser(bytes.NewReader(msg)), nil
	}
}

func sign(t *testing.T, msg []byte, key Key, now time.Time) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Sign(&out, opener(msg, nil), key, now); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return out.Bytes()
}

// verify checks msg with go-msgauth, serving key's record from "DNS".
func verify(t *testing.T, msg []byte, key Key) error {
	t.Helper()
	rec, err := key.PublicRecord()
	if err != nil {
		t.Fatal(err)
	}
	want := key.Selector + "._domainkey." + key.Domain
	verifs, err := msgauth.VerifyWithOptions(bytes.NewReader(msg), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if name != want {
				return nil, errors.New("no such name " + name)
			}
			return []string{rec}, nil
		},
	})
	if err != nil {
		return err
	}
	if len(verifs) != 1 {
		t.Fatalf("verifier found %d signatures, want 1", len(verifs))
	}
	return verifs[0].Err
}

// signatureTags returns the tags of the first header field of msg, which
// Sign puts there.
func signatureTags(t *testing.T, signed []byte) map[string]string {
	t.Helper()
	end := bytes.Index(signed, []byte("\r\n"))
	for end >= 0 && end+2 < len(signed) && (signed[end+2] == ' ' || signed[end+2] == '\t') {
		next := bytes.Index(signed[end+2:], []byte("\r\n"))
		end += 2 + next
	}
	field := string(signed[:end])
	name, value, _ := strings.Cut(field, ":")
	if name != "DKIM-Signature" {
		t.Fatalf("first header field is %q, want DKIM-Signature", name)
	}
	tags := make(map[string]string)
	for part := range strings.SplitSeq(value, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok {
			tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
		}
	}
	for line := range strings.SplitSeq(field, "\r\n") {
		if len(line) > foldWidth {
			t.Errorf("signature line is %d characters, want at most %d: %q", len(line), foldWidth, line)
		}
	}
	return tags
}

func TestSignVerifies(t *testing.T) {
	t.Parallel()
	for _, algo := range []Algorithm{AlgorithmRSA2048, AlgorithmEd25519} {
		t.Run(string(algo), func(t *testing.T) {
			t.Parallel()
			key := generate(t, algo)
			msg := readMessage(t)
			calls := 0
			var out bytes.Buffer
			if err := Sign(&out, opener(msg, &calls), key, testNow); err != nil {
				t.Fatalf("Sign: %v", err)
			}
			signed := out.Bytes()
			if calls != 2 {
				t.Errorf("Sign opened the message %d times, want 2 (one read to sign, one to copy)", calls)
			}
			if err := verify(t, signed, key); err != nil {
				t.Fatalf("signed message does not verify: %v\n%s", err, signed)
			}
			if !bytes.HasSuffix(signed, msg) || !bytes.HasPrefix(signed, []byte("DKIM-Signature:")) {
				t.Errorf("signed message is not the signature header followed by the original bytes:\n%s", signed)
			}

			tags := signatureTags(t, signed)
			wantAlgo := map[Algorithm]string{AlgorithmRSA2048: "rsa-sha256", AlgorithmEd25519: "ed25519-sha256"}[algo]
			want := map[string]string{
				"v": "1", "a": wantAlgo, "c": "relaxed/relaxed", "d": "example.com", "s": "pr202611",
				"t": strconv.FormatInt(testNow.Unix(), 10),
				// The message has one of each signed header, so each is
				// listed twice.
				"h": "from:from:to:to:subject:subject:date:date:message-id:message-id:mime-version:mime-version:content-type:content-type",
			}
			for k, v := range want {
				if tags[k] != v {
					t.Errorf("tag %s= is %q, want %q", k, tags[k], v)
				}
			}
			for _, k := range []string{"l", "x", "i", "z"} {
				if _, ok := tags[k]; ok {
					t.Errorf("signature has an %s= tag, want none", k)
				}
			}
		})
	}
}

func TestSignTamperDetected(t *testing.T) {
	t.Parallel()
	key := fixedEd25519Key(t)
	signed := sign(t, readMessage(t), key, testNow)
	if err := verify(t, signed, key); err != nil {
		t.Fatalf("untouched message does not verify: %v", err)
	}
	sigEnd := bytes.Index(signed, []byte("From: "))

	cases := []struct {
		name   string
		change func(m []byte) []byte
		verify bool
	}{
		{"body byte changed", func(m []byte) []byte {
			return bytes.Replace(m, []byte("ready"), []byte("readY"), 1)
		}, false},
		{"Subject changed", func(m []byte) []byte {
			return bytes.Replace(m, []byte("Monthly   report"), []byte("Weekly   report"), 1)
		}, false},
		{"second From added at the top", func(m []byte) []byte {
			return insertAt(m, sigEnd, "From: ceo@example.com\r\n")
		}, false},
		{"second From added after the others", func(m []byte) []byte {
			return insertAt(m, bytes.Index(m, []byte("\r\n\r\n"))+2, "From: ceo@example.com\r\n")
		}, false},
		{"second Subject added", func(m []byte) []byte {
			return insertAt(m, sigEnd, "Subject: Urgent wire transfer\r\n")
		}, false},
		{"body appended", func(m []byte) []byte {
			return append(bytes.Clone(m), "P.S. send money\r\n"...)
		}, false},
		// What a receiving MTA does on the way: these must not break it.
		{"Received header added on top", func(m []byte) []byte {
			return append([]byte("Received: from relay.example.com by mx.example.net; Mon, 2 Nov 2026 09:31:00 +0000\r\n"), m...)
		}, true},
		{"header whitespace refolded", func(m []byte) []byte {
			return bytes.Replace(m, []byte("Subject:  Monthly   report "), []byte("Subject: Monthly\r\n report"), 1)
		}, true},
		{"trailing blank lines dropped from body", func(m []byte) []byte {
			return bytes.TrimSuffix(m, []byte("\r\n\r\n"))
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			changed := c.change(signed)
			if bytes.Equal(changed, signed) {
				t.Fatal("the change did not change the message")
			}
			err := verify(t, changed, key)
			if c.verify && err != nil {
				t.Errorf("verification failed, want it to pass: %v", err)
			}
			if !c.verify && err == nil {
				t.Errorf("verification passed, want it to fail:\n%s", changed)
			}
		})
	}
}

func insertAt(m []byte, at int, s string) []byte {
	out := append([]byte{}, m[:at]...)
	out = append(out, s...)
	return append(out, m[at:]...)
}

// TestSignOversignsMissingHeaders checks that a signed header the message
// lacks is still listed, so adding it later breaks the signature.
func TestSignOversignsMissingHeaders(t *testing.T) {
	t.Parallel()
	key := fixedEd25519Key(t)
	msg := []byte("From: a@example.com\r\nFrom: b@example.com\r\nTo: c@example.net\r\n\r\nHi\r\n")
	signed := sign(t, msg, key, testNow)
	h := signatureTags(t, signed)["h"]
	want := "from:from:from:to:to:subject:date:message-id:mime-version:content-type"
	if h != want {
		t.Errorf("h= is %q, want %q", h, want)
	}
	if err := verify(t, signed, key); err != nil {
		t.Fatalf("signed message does not verify: %v", err)
	}
	added := insertAt(signed, bytes.Index(signed, []byte("\r\n\r\n"))+2, "Content-Type: text/html\r\n")
	if err := verify(t, added, key); err == nil {
		t.Error("adding a Content-Type header after signing still verifies")
	}
}

func TestSignUnusualMessages(t *testing.T) {
	t.Parallel()
	key := fixedEd25519Key(t)
	cases := []struct {
		name string
		msg  string
		// verifyAs is what go-msgauth is given: it cannot read a header
		// that is not ended by a blank line, which is equivalent for
		// relaxed canonicalisation (an absent and an empty body hash alike).
		verifyAs func(signed []byte) []byte
	}{
		{name: "bare LF line ends", msg: "From: a@example.com\nSubject: hi\n\nline one  \nline two\n\n"},
		{name: "empty body", msg: "From: a@example.com\r\nSubject: hi\r\n\r\n"},
		{name: "header only, no blank line", msg: "From: a@example.com\r\nSubject: hi\r\n",
			verifyAs: func(s []byte) []byte { return append(s, "\r\n"...) }},
		{name: "long header line", msg: "From: a@example.com\r\nX-Long: " + strings.Repeat("x", 10000) + "\r\n\r\nbody\r\n"},
		{name: "From in lower case", msg: "from: a@example.com\r\nsubject: hi\r\n\r\nbody\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			signed := sign(t, []byte(c.msg), key, testNow)
			if !bytes.HasSuffix(signed, []byte(c.msg)) {
				t.Errorf("original bytes not kept:\n%q", signed)
			}
			if c.verifyAs != nil {
				signed = c.verifyAs(signed)
			}
			if err := verify(t, signed, key); err != nil {
				t.Errorf("does not verify: %v\n%q", err, signed)
			}
		})
	}
}

func TestSignErrors(t *testing.T) {
	t.Parallel()
	key := fixedEd25519Key(t)
	t.Run("no From", func(t *testing.T) {
		t.Parallel()
		err := Sign(io.Discard, opener([]byte("To: a@example.com\r\n\r\nhi\r\n"), nil), key, testNow)
		if err == nil || !strings.Contains(err.Error(), "no From") {
			t.Errorf("Sign error = %v, want one saying there is no From header", err)
		}
	})
	t.Run("indented first line", func(t *testing.T) {
		t.Parallel()
		// Found by FuzzSign: a verifier would read the line as part of
		// the DKIM-Signature header in front of it.
		if err := Sign(io.Discard, opener([]byte(" From: a@example.com\r\n\r\nhi\r\n"), nil), key, testNow); err == nil {
			t.Error("Sign accepted a message whose first line is indented")
		}
	})
	t.Run("header too large", func(t *testing.T) {
		t.Parallel()
		msg := "From: a@example.com\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 990)+"\r\n", maxHeaderBytes/500) + "\r\nhi\r\n"
		if err := Sign(io.Discard, opener([]byte(msg), nil), key, testNow); err == nil {
			t.Error("Sign accepted a header over the size limit")
		}
	})
	t.Run("message changes between reads", func(t *testing.T) {
		t.Parallel()
		calls := 0
		open := func() (io.ReadCloser, error) {
			calls++
			return io.NopCloser(strings.NewReader("From: a@example.com\r\n\r\nread " + strconv.Itoa(calls) + "\r\n")), nil
		}
		if err := Sign(io.Discard, open, key, testNow); err == nil {
			t.Error("Sign did not notice the message changed between its two reads")
		}
	})
	t.Run("open fails", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("disk gone")
		err := Sign(io.Discard, func() (io.ReadCloser, error) { return nil, boom }, key, testNow)
		if !errors.Is(err, boom) {
			t.Errorf("Sign error = %v, want it to wrap %v", err, boom)
		}
	})
	t.Run("key with unnormalised domain", func(t *testing.T) {
		t.Parallel()
		bad := key
		bad.Domain = "Example.com; x=1"
		if err := Sign(io.Discard, opener([]byte("From: a@example.com\r\n\r\n"), nil), bad, testNow); err == nil {
			t.Error("Sign accepted a key whose domain would inject tags")
		}
	})
}

// TestSignGolden pins the exact output for a fixed Ed25519 key and time.
// Run `go test -run TestSignGolden -update` after an intended change.
func TestSignGolden(t *testing.T) {
	t.Parallel()
	key := fixedEd25519Key(t)
	signed := sign(t, readMessage(t), key, testNow)
	golden := filepath.Join("testdata", "signed-ed25519.golden.eml")
	if *update {
		if err := os.WriteFile(golden, signed, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(signed, want) {
		t.Errorf("signed message differs from %s:\ngot:\n%s\nwant:\n%s", golden, signed, want)
	}
	// The golden file must itself be a valid signature, so -update cannot
	// bless a broken one.
	if err := verify(t, want, key); err != nil {
		t.Errorf("%s does not verify: %v", golden, err)
	}
}

// FuzzSign checks that whatever message Sign accepts, go-msgauth verifies:
// our header reading must agree with a verifier's on any input.
func FuzzSign(f *testing.F) {
	f.Add([]byte("From: a@example.com\r\nSubject:  x \r\n\r\nbody  \r\n\r\n"))
	f.Add([]byte("From: a@example.com\nTo: b@example.net,\n c@example.net\n\nbody\n"))
	f.Add([]byte("From: a@example.com\r\nbroken header line\r\n\r\n"))
	f.Add([]byte("From : a@example.com\r\nFROM: b@example.com\r\n\r\n\tx\r\n"))
	key := fixedEd25519Key(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		// go-msgauth's verifier cannot read a header that has no blank
		// line after it; that case is covered by TestSignUnusualMessages.
		if !bytes.Contains(msg, []byte("\n\n")) && !bytes.Contains(msg, []byte("\n\r\n")) {
			return
		}
		var out bytes.Buffer
		if err := Sign(&out, opener(msg, nil), key, testNow); err != nil {
			return
		}
		if err := verify(t, out.Bytes(), key); err != nil {
			t.Fatalf("signed message does not verify: %v\n%q", err, out.Bytes())
		}
	})
}
