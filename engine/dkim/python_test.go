package dkim

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pythonDKIM finds a python3 that can import dkimpy's dkim module and says
// whether it also has PyNaCl, which dkimpy needs for Ed25519. The first
// python3 on PATH may be a private install (pyenv, venv) without Debian's
// packages, so the system interpreter is tried as well.
func pythonDKIM(t *testing.T) (python string, ed25519 bool) {
	t.Helper()
	var candidates []string
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/python3")
	var tried []string
	for _, p := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, p, filepath.Join("testdata", "verify.py"), "--probe").CombinedOutput()
		cancel()
		if err == nil {
			return p, strings.Contains(string(out), "nacl=yes")
		}
		tried = append(tried, p+": "+strings.TrimSpace(string(out))+" "+err.Error())
	}
	t.Skipf("no python3 with the dkim module (tried %s); install it with: apt-get install python3-dkim", strings.Join(tried, "; "))
	return "", false
}

// TestSignVerifiesWithDkimpy checks our signatures with an implementation
// that shares no code with go-msgauth.
func TestSignVerifiesWithDkimpy(t *testing.T) {
	t.Parallel()
	python, hasNaCl := pythonDKIM(t)
	msg := readMessage(t)
	keys := map[Algorithm]Key{}
	for _, algo := range []Algorithm{AlgorithmRSA2048, AlgorithmEd25519} {
		keys[algo] = generate(t, algo)
	}
	cases := []struct {
		name   string
		algo   Algorithm
		msg    []byte
		tamper bool
	}{
		{"rsa2048", AlgorithmRSA2048, msg, false},
		{"ed25519", AlgorithmEd25519, msg, false},
		{"rsa2048 header only", AlgorithmRSA2048, []byte("From: a@example.com\r\nSubject: hi\r\n"), false},
		{"rsa2048 over-signed From", AlgorithmRSA2048, []byte("From: a@example.com\r\nTo: b@example.net\r\n\r\nHi  \r\n\r\n"), false},
		{"rsa2048 tampered", AlgorithmRSA2048, msg, true},
		{"ed25519 tampered", AlgorithmEd25519, msg, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.algo == AlgorithmEd25519 && !hasNaCl {
				t.Skipf("%s's dkim module has no Ed25519 support without PyNaCl; install it with: apt-get install python3-nacl", python)
			}
			key := keys[c.algo]
			// dkimpy refuses a t= in the future, so sign with the real time.
			signed := sign(t, c.msg, key, time.Now())
			if c.tamper {
				signed = bytes.Replace(signed, []byte("ready"), []byte("READY"), 1)
			}
			path := filepath.Join(t.TempDir(), "signed.eml")
			if err := os.WriteFile(path, signed, 0o600); err != nil {
				t.Fatal(err)
			}
			rec, err := key.PublicRecord()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, filepath.Join("testdata", "verify.py"), path, key.Selector+"._domainkey."+key.Domain, rec)
			out, err := cmd.CombinedOutput()
			// The script's last line is its verdict; anything else (a
			// traceback, say) is a broken harness, not a verdict.
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			verdict := lines[len(lines)-1]
			want := "pass"
			if c.tamper {
				want = "fail"
			}
			if verdict != want {
				t.Errorf("dkimpy says %q (%v), want %q:\n%s", verdict, err, want, out)
			}
		})
	}
}
