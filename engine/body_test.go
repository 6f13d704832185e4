package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"postroom/engine/dkim"
)

func TestBodyCacheGivesEachBodyOnceAndStaysWithinItsLimit(t *testing.T) {
	t.Parallel()
	c := newBodyCache(100)
	c.put(1, bytes.Repeat([]byte("a"), 40))
	c.put(2, bytes.Repeat([]byte("b"), 40))
	if got := c.take(1); string(got) != string(bytes.Repeat([]byte("a"), 40)) {
		t.Fatalf("take(1) = %q", got)
	}
	if got := c.take(1); got != nil {
		t.Fatalf("a body was given twice: %q", got)
	}
	// 2 (40) + 3 (40) + 4 (40) is over 100: the oldest, 2, goes.
	c.put(3, bytes.Repeat([]byte("c"), 40))
	c.put(4, bytes.Repeat([]byte("d"), 40))
	if got := c.take(2); got != nil {
		t.Fatalf("the oldest body was kept over the limit: %q", got)
	}
	if c.take(3) == nil || c.take(4) == nil {
		t.Fatal("newer bodies were dropped")
	}
	// A body larger than the whole cache is not kept.
	c.put(5, make([]byte, 101))
	if c.take(5) != nil || c.size != 0 || len(c.byID) != 0 || c.order.Len() != 0 {
		t.Fatalf("cache not empty: size %d, %d ids, %d in order", c.size, len(c.byID), c.order.Len())
	}
}

func TestOutBodyFoldsLongLinesOnlyWhenThereAreAny(t *testing.T) {
	t.Parallel()
	short := []byte("Subject: x\r\n\r\nshort\r\n")
	long := []byte("Subject: x\r\n\r\n" + string(bytes.Repeat([]byte("y"), 1500)) + "\r\n")
	for _, data := range [][]byte{short, long} {
		b := &outBody{data: data}
		r, err := b.outbound()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		if n := longestLine(got); n > 998 {
			t.Errorf("a line of %d octets goes out", n)
		}
		if bytes.Equal(data, short) != bytes.Equal(got, data) {
			t.Errorf("outbound(%.20q...) = %.40q...: changed a message that fits, or left a long line", data, got)
		}
	}
}

func TestKeyCacheForgetsAfterTTLAndOnSettingsChange(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := newKeyCache()
	c.now = func() time.Time { return now }
	noKey := fmt.Errorf("example.com: %w", ErrNoDKIMKey)
	c.put("example.com", 3, dkim.Key{}, noKey)
	if _, err, ok := c.get("example.com", 3); !ok || !errors.Is(err, ErrNoDKIMKey) {
		t.Fatalf("fresh entry: ok=%v err=%v", ok, err)
	}
	if _, _, ok := c.get("example.com", 4); ok {
		t.Fatal("an entry from older settings was used")
	}
	now = now.Add(keyTTL + time.Millisecond)
	if _, _, ok := c.get("example.com", 3); ok {
		t.Fatal("an entry older than keyTTL was used: a key made by another process would wait too long")
	}
	c.put("example.org", 3, dkim.Key{Domain: "example.org"}, nil)
	c.clear()
	if _, _, ok := c.get("example.org", 3); ok {
		t.Fatal("clear left an entry")
	}
}

// The key cache must not keep a domain unsigned once it has a key: a key
// made in this process signs the very next message.
func TestNewKeySignsTheNextMessageDespiteTheCache(t *testing.T) {
	t.Parallel()
	hop := newNextHop(t)
	r := startRelay(t, testSettings(hop), Options{}, "")
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	if m := hop.wait(); bytes.Contains(m.Data, []byte("DKIM-Signature")) {
		t.Fatal("signed without a key")
	}
	if _, err := r.e.GenerateDKIM(context.Background(), "example.org", "s1", dkim.AlgorithmEd25519); err != nil {
		t.Fatal(err)
	}
	r.mustSend("a@example.org", []string{"b@example.net"}, simpleBody)
	if m := hop.wait(); !bytes.Contains(m.Data, []byte("DKIM-Signature: v=1; a=ed25519-sha256")) {
		t.Fatalf("the message after GenerateDKIM went out unsigned:\n%s", m.Data)
	}
}
