package engine

import (
	"context"
	"sync"
	"time"

	"postroom/storage"
)

// EventKind says what an Event reports.
type EventKind int

// The kinds of events.
const (
	EventStarted  EventKind = iota
	EventReceived           // a message was accepted and queued
	EventDelivery           // one recipient's attempt ended (State says how)
	EventBounce             // a DSN was queued for a message
	EventRefused            // a client or command was refused (Text says by which rule)
	EventPaused             // sending was paused or resumed
	EventError              // something failed inside the relay (Text says what)
)

// Event is one thing that happened, for the window's live views. Events
// are a view, not a record: the store is the record.
type Event struct {
	Time      time.Time
	Kind      EventKind
	MessageID int64
	Recipient string
	State     storage.State
	Code      int
	Text      string
	Paused    bool
}

// hub fans events out to subscribers. Sends never block: a subscriber that
// does not keep up misses events rather than stalling mail.
type hub struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

func newHub() *hub { return &hub{subs: make(map[chan Event]struct{})} }

// Subscribe returns a channel of events with the given buffer and a
// function that ends the subscription.
func (e *Engine) Subscribe(buffer int) (<-chan Event, func()) {
	ch := make(chan Event, buffer)
	e.events.mu.Lock()
	e.events.subs[ch] = struct{}{}
	e.events.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.events.mu.Lock()
			delete(e.events.subs, ch)
			e.events.mu.Unlock()
		})
	}
}

func (e *Engine) publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = e.now()
	}
	e.events.mu.Lock()
	defer e.events.mu.Unlock()
	for ch := range e.events.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// refusals counts refused connections and commands by rule in memory; they
// are written to the store now and then, so that a flood of refusals costs
// no disk writes per refusal.
type refusals struct {
	mu     sync.Mutex
	counts map[string]int
}

func newRefusals() *refusals { return &refusals{counts: make(map[string]int)} }

func (r *refusals) add(reason string) {
	r.mu.Lock()
	r.counts["refused:"+reason]++
	r.mu.Unlock()
}

func (r *refusals) flush(ctx context.Context, e *Engine) {
	r.mu.Lock()
	counts := r.counts
	r.counts = make(map[string]int)
	r.mu.Unlock()
	if len(counts) == 0 {
		return
	}
	if err := e.store.AddCounters(ctx, e.now(), counts); err != nil {
		e.log.Error("saving refusal counters", "err", err)
	}
}

// flushCounters writes the refusal counters every 10 seconds until ctx ends.
func (e *Engine) flushCounters(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.stats.flush(ctx, e)
		}
	}
}
