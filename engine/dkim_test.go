package engine

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"postroom/engine/dkim"
	"postroom/storage"
)

func TestDeliveredMailIsSignedWhenTheDomainHasAKey(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startRelay(t, testSettings(hop), Options{}, "")
	ctx := context.Background()
	key, err := r.e.GenerateDKIM(ctx, "example.org", "s1", dkim.AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	record, _ := key.PublicRecord()

	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	m := hop.wait()
	verifications, err := msgdkim.VerifyWithOptions(bytes.NewReader(m.Data), &msgdkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != "s1._domainkey.example.org" {
				t.Errorf("verifier looked up %q", domain)
			}
			return []string{record}, nil
		},
	})
	if err != nil || len(verifications) != 1 || verifications[0].Err != nil || verifications[0].Domain != "example.org" {
		t.Fatalf("verification: %+v, %v", verifications, err)
	}
	rows := r.waitFor("sent", allIn(storage.Sent))
	msg, _ := r.store.Message(ctx, rows[0].MessageID)
	if !strings.HasPrefix(msg.DKIM, "signed d=example.org s=s1") {
		t.Fatalf("queue records DKIM as %q", msg.DKIM)
	}

	// Mail from a domain without a key goes out unsigned, and says so.
	r.mustSend("a@example.com", []string{"b@example.net"}, strings.Replace(simpleBody, "a@example.org", "a@example.com", 1))
	m = hop.wait()
	if bytes.Contains(m.Data, []byte("DKIM-Signature")) {
		t.Fatal("mail from a domain without a key was signed")
	}
	rows = r.waitFor("sent", allIn(storage.Sent))
	msg, _ = r.store.Message(ctx, rows[0].MessageID)
	if msg.DKIM != "unsigned: no DKIM key for example.com" {
		t.Fatalf("queue records DKIM as %q", msg.DKIM)
	}
}

// brokenKeys fails every DKIM key lookup, as a locked or damaged database
// would.
type brokenKeys struct{ *storage.Store }

func (brokenKeys) DKIMKeys(context.Context, string) ([]storage.DKIMKey, error) {
	return nil, errors.New("injected: database is locked")
}

// When the key cannot be read, the mail waits: sending it unsigned could
// put it in the recipients' spam.
func TestUnreadableKeyDefersInsteadOfSendingUnsigned(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startRelayWrapped(t, testSettings(hop), Options{}, "", func(st *storage.Store) Store { return brokenKeys{st} })
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	rows := r.waitFor("deferred", allIn(storage.Deferred))
	if !strings.Contains(rows[0].LastError, "DKIM key") {
		t.Errorf("deferred with %q, want the reason to name the DKIM key", rows[0].LastError)
	}
	hop.none(200 * time.Millisecond)
}
