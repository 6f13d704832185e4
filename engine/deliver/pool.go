package deliver

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"
)

// Pool keeps sessions that have finished their messages open for a few
// seconds, so that the next messages for the same next hop, moments later,
// go over the same connection: no connect, greeting, EHLO, TLS handshake
// or AUTH again. It is the cross-group half of connection reuse; within a
// group the scheduler already sends message after message on one session.
//
// A session is only ever reused under the Config and Route it was opened
// with (PoolKey): never from another source IP, under another TLS policy
// or MTA-STS requirement, or with other smarthost credentials.
//
// Reuse must never lose or double-send mail. Most servers drop idle
// clients after a while, some with a 421, so a kept session may be dead.
// For a server without PIPELINING, Get checks the session with NOOP
// before handing it out (a transaction left open is reset by Send
// itself), so that a dead one is noticed before any message is started on
// it. For a server with PIPELINING that round trip is saved: the first
// message on a reused session starts its pipelined group with RSET, and a
// connection failure or a 421 in place of RSET's reply means the kept
// connection was dead. Either way a connection can die after its check,
// before the message is done; the caller then sends the message again on
// a fresh session, which is safe because nothing of a message counts
// until the reply to its final "." (see Reused and DuplicatePossible).
type Pool struct {
	maxIdle int
	idleFor time.Duration

	mu    sync.Mutex
	idle  map[string][]*pooled // newest last
	count int
}

type pooled struct {
	s     *Session
	timer *time.Timer
}

// NewPool returns a pool that keeps at most maxIdle sessions, each for at
// most idleFor.
func NewPool(maxIdle int, idleFor time.Duration) *Pool {
	return &Pool{maxIdle: maxIdle, idleFor: idleFor, idle: make(map[string][]*pooled)}
}

// PoolKey is what two sessions must share for one to stand in for the
// other: the route (with the hosts MTA-STS allowed) and every setting that
// shapes a session. The smarthost password goes in hashed.
func PoolKey(cfg *Config, route Route) string {
	c := cfg.withDefaults()
	pass := sha256.Sum256([]byte(c.SmarthostPassword))
	return fmt.Sprintf("%s|%v|helo=%q|src=%q|tls=%d|shtls=%d|user=%q|pass=%x|port=%d|roots=%p|timeouts=%v,%v,%v",
		route.Key, route.Hosts, c.HeloName, c.SourceIP, c.TLS, c.SmarthostTLS, c.SmarthostUsername, pass[:8],
		c.Port, c.RootCAs, c.ConnectTimeout, c.CommandTimeout, c.DataTimeout)
}

// Get returns an idle session for key, marked as reused, or nil: one with
// PIPELINING as it is (Send checks it with its first reply), any other
// once it has answered NOOP. Sessions that fail the check are closed.
func (p *Pool) Get(ctx context.Context, key string) *Session {
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		e := list[len(list)-1]
		p.take(key, len(list)-1)
		p.mu.Unlock()
		e.timer.Stop()
		if e.s.pipelining && e.s.Usable() {
			e.s.reused = true
			return e.s
		}
		if err := e.s.check(ctx); err != nil {
			e.s.Close()
			continue
		}
		e.s.reused = true
		return e.s
	}
}

// Put keeps s for the next Get of key, or closes it (QUIT) when it is no
// longer usable or the pool is full.
func (p *Pool) Put(key string, s *Session) {
	if !s.Usable() || p.maxIdle <= 0 {
		s.Close()
		return
	}
	s.reused = false
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.count >= p.maxIdle {
		s.Close()
		return
	}
	e := &pooled{s: s}
	e.timer = time.AfterFunc(p.idleFor, func() { p.expire(key, e) })
	p.idle[key] = append(p.idle[key], e)
	p.count++
}

// expire closes e if it is still idle.
func (p *Pool) expire(key string, e *pooled) {
	p.mu.Lock()
	for i, x := range p.idle[key] {
		if x == e {
			p.take(key, i)
			p.mu.Unlock()
			e.s.Close()
			return
		}
	}
	p.mu.Unlock()
}

// take removes entry i of key's list; p.mu is held.
func (p *Pool) take(key string, i int) {
	list := p.idle[key]
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(p.idle, key)
	} else {
		p.idle[key] = list
	}
	p.count--
}

// CloseIdle closes every idle session (QUIT). The pool stays usable.
func (p *Pool) CloseIdle() {
	p.mu.Lock()
	var all []*pooled
	for _, list := range p.idle {
		all = append(all, list...)
	}
	clear(p.idle)
	p.count = 0
	p.mu.Unlock()
	// In parallel: one slow QUIT must not hold up the others (or a
	// shutdown) for long.
	var wg sync.WaitGroup
	for _, e := range all {
		e.timer.Stop()
		wg.Go(func() { e.s.Close() })
	}
	wg.Wait()
}

// Idle returns how many sessions the pool holds.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}
