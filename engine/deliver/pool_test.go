package deliver

import (
	"context"
	"testing"
	"time"
)

func TestPoolKeySeparatesWhatShapesASession(t *testing.T) {
	t.Parallel()
	route := Route{Key: "smarthost:mail.example.net:587", Kind: RouteSmarthost, Hosts: []Hop{{Host: "mail.example.net", Port: 587}}}
	base := func() *Config {
		c := testConfig()
		c.Smarthost, c.SmarthostUsername, c.SmarthostPassword = "mail.example.net:587", "user", "secret"
		return c
	}
	same := PoolKey(base(), route)
	if PoolKey(base(), route) != same {
		t.Fatal("the same settings gave two keys")
	}
	for name, change := range map[string]func(*Config){
		"source IP":     func(c *Config) { c.SourceIP = "192.0.2.7" },
		"TLS policy":    func(c *Config) { c.TLS = TLSRequired },
		"smarthost TLS": func(c *Config) { c.SmarthostTLS = SmarthostNone },
		"username":      func(c *Config) { c.SmarthostUsername = "other" },
		"password":      func(c *Config) { c.SmarthostPassword = "changed" },
		"EHLO name":     func(c *Config) { c.HeloName = "other.test" },
	} {
		c := base()
		change(c)
		if PoolKey(c, route) == same {
			t.Errorf("a session would be reused across a change of %s", name)
		}
	}
	other := route
	other.Hosts = []Hop{{Host: "backup.example.net", Port: 587}}
	if PoolKey(base(), other) == same {
		t.Error("a session would be reused for other next-hop hosts (MTA-STS may have narrowed them)")
	}
}

func TestPoolHandsBackALiveSessionAndClosesTheRest(t *testing.T) {
	t.Parallel()
	f := newFakeHop(t, fakeOptions{})
	cfg, route := testConfig(), routeTo(f)
	key := PoolKey(cfg, route)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := NewPool(1, time.Minute)
	if p.Get(ctx, key) != nil {
		t.Fatal("an empty pool gave a session")
	}
	s, err := Dial(ctx, cfg, route)
	if err != nil {
		t.Fatal(err)
	}
	mustBeDelivered(t, mustSend(t, ctx, s))
	p.Put(key, s)
	got := p.Get(ctx, key)
	if got != s || !got.Reused() {
		t.Fatalf("Get = %p (reused %v), want the session put, marked reused", got, got != nil && got.Reused())
	}
	mustBeDelivered(t, mustSend(t, ctx, got))
	if got.Reused() {
		t.Error("still marked reused after a message")
	}
	if conns, msgs, _, _ := f.snapshot(); conns != 1 || len(msgs) != 2 {
		t.Fatalf("%d connections and %d messages, want 1 and 2", conns, len(msgs))
	}
	// Full: a second session is closed, not kept.
	p.Put(key, got)
	extra, err := Dial(ctx, cfg, route)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(key, extra)
	if !extra.closed || p.Idle() != 1 {
		t.Fatalf("a session over the limit was kept (closed %v, %d idle)", extra.closed, p.Idle())
	}
	p.CloseIdle()
	if !got.closed || p.Idle() != 0 || p.Get(ctx, key) != nil {
		t.Fatal("CloseIdle left a session")
	}
}

func mustSend(t *testing.T, ctx context.Context, s *Session) []RcptResult {
	t.Helper()
	res, err := s.Send(ctx, testEnvelope("b@example.net"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	return res
}
