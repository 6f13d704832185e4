package dkim

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// testNow is a fixed signing time for tests that do not check t= against the
// clock.
var testNow = time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)

func generate(t *testing.T, algo Algorithm) Key {
	t.Helper()
	k, err := Generate("Example.COM.", "pr202611", algo, testNow)
	if err != nil {
		t.Fatalf("Generate(%s): %v", algo, err)
	}
	return k
}

// fixedEd25519Key is a key that never changes, so signatures made with it are
// reproducible (Ed25519 signing is deterministic).
func fixedEd25519Key(t testing.TB) Key {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	return Key{
		Domain:        "example.com",
		Selector:      "pr202611",
		Algorithm:     AlgorithmEd25519,
		PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		Created:       testNow,
	}
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	for _, algo := range []Algorithm{AlgorithmRSA2048, AlgorithmEd25519} {
		t.Run(string(algo), func(t *testing.T) {
			t.Parallel()
			k := generate(t, algo)
			if k.Domain != "example.com" || k.Selector != "pr202611" || k.Algorithm != algo || !k.Created.Equal(testNow) {
				t.Errorf("key names = %q %q %q %v, want example.com pr202611 %s %v", k.Domain, k.Selector, k.Algorithm, k.Created, algo, testNow)
			}
			block, _ := pem.Decode(k.PrivateKeyPEM)
			if block == nil || block.Type != "PRIVATE KEY" {
				t.Fatalf("private key is not a PKCS#8 PEM block:\n%s", k.PrivateKeyPEM)
			}
			signer, err := k.Signer()
			if err != nil {
				t.Fatalf("Signer: %v", err)
			}

			rec, err := k.PublicRecord()
			if err != nil {
				t.Fatalf("PublicRecord: %v", err)
			}
			wantKind := map[Algorithm]string{AlgorithmRSA2048: "rsa", AlgorithmEd25519: "ed25519"}[algo]
			if !strings.HasPrefix(rec, "v=DKIM1; k="+wantKind+"; p=") {
				t.Fatalf("PublicRecord = %q, want v=DKIM1; k=%s; p=...", rec, wantKind)
			}
			p, _ := tagValue(rec, "p")
			der, err := base64.StdEncoding.DecodeString(p)
			if err != nil {
				t.Fatalf("p= is not base64: %v", err)
			}
			switch algo {
			case AlgorithmRSA2048:
				pub, err := x509.ParsePKIXPublicKey(der)
				if err != nil {
					t.Fatalf("p= is not a SubjectPublicKeyInfo: %v", err)
				}
				rsaPub, ok := pub.(*rsa.PublicKey)
				if !ok || rsaPub.N.BitLen() != 2048 || !rsaPub.Equal(signer.Public()) {
					t.Errorf("p= holds %T (%d bits), want our 2048-bit RSA key", pub, rsaPub.N.BitLen())
				}
			case AlgorithmEd25519:
				if !ed25519.PublicKey(der).Equal(signer.Public()) {
					t.Errorf("p= holds %x, want our Ed25519 key", der)
				}
			}
		})
	}
}

func TestGenerateRejects(t *testing.T) {
	t.Parallel()
	cases := []struct{ domain, selector string }{
		{"", "s1"},
		{"example.com", ""},
		{"exa mple.com", "s1"},
		{"example..com", "s1"},
		{"-example.com", "s1"},
		{"example.com", "s_1"},
		{"example.com", "s1;x=1"},
		{"bücher.example", "s1"},
		{strings.Repeat("a", 64) + ".com", "s1"},
	}
	for _, c := range cases {
		if _, err := Generate(c.domain, c.selector, AlgorithmEd25519, testNow); err == nil {
			t.Errorf("Generate(%q, %q) succeeded, want an error", c.domain, c.selector)
		}
	}
	if _, err := Generate("example.com", "s1", "dsa", testNow); err == nil {
		t.Error("Generate with algorithm dsa succeeded, want an error")
	}
}

func TestSignerRejectsMismatchedAlgorithm(t *testing.T) {
	t.Parallel()
	k := fixedEd25519Key(t)
	k.Algorithm = AlgorithmRSA2048
	if _, err := k.Signer(); err == nil {
		t.Error("Signer accepted an Ed25519 key recorded as rsa2048")
	}
	k.PrivateKeyPEM = []byte("not pem")
	if _, err := k.Signer(); err == nil {
		t.Error("Signer accepted a key that is not PEM")
	}
}

func TestDefaultSelector(t *testing.T) {
	t.Parallel()
	nov := DefaultSelector(time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC))
	dec := DefaultSelector(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if nov != "pr202611" || dec != "pr202612" {
		t.Errorf("DefaultSelector = %q, %q; want pr202611, pr202612", nov, dec)
	}
	if _, err := normaliseSelector(nov); err != nil {
		t.Errorf("DefaultSelector gives an invalid selector: %v", err)
	}
}
