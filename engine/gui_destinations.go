package engine

// The dashboard's "where is mail going" table: the recipient domains with
// the most mail, each with how much of it waits, retries, is held, went
// out or came back, and the latest error. It is built from the newest
// rows of the queue listing (destinationScan of the unsent and of the
// finished recipients), so it costs the same with 100,000 queued messages
// as with ten; with a queue that large it describes the newest mail,
// which is the mail the owner asks about.

import (
	"context"
	"sort"
	"time"

	"postroom/storage"
)

// destinationScan is how many of the newest unsent, and of the newest
// finished, recipients the summary reads.
const destinationScan = 2000

// Destination is one recipient domain's share of the queue.
type Destination struct {
	Domain string
	// Unsent recipients by state.
	Waiting   int // queued or being sent
	Scheduled int // not before a time
	Retrying  int // deferred
	Held      int
	// Finished since the time asked for.
	Sent     int
	Returned int // bounced or expired
	// The latest delivery error seen for the domain, if any.
	LastError     string
	LastCode      int
	LastRecipient string
	LastErrorAt   time.Time
	// LastErrorFinal says the latest error returned the mail (5xx or
	// expired) rather than deferring it.
	LastErrorFinal bool
}

// Total is all the domain's mail the summary counted.
func (d Destination) Total() int {
	return d.Waiting + d.Scheduled + d.Retrying + d.Held + d.Sent + d.Returned
}

// Destinations returns up to limit recipient domains with the most mail,
// unsent or finished since the given time, most first.
func (e *Engine) Destinations(ctx context.Context, since time.Time, limit int) ([]Destination, error) {
	unsent, err := e.store.List(ctx, storage.Filter{
		States: []storage.State{storage.Queued, storage.Scheduled, storage.Sending, storage.Deferred, storage.Held},
		Limit:  destinationScan,
	})
	if err != nil {
		return nil, err
	}
	finished, err := e.store.List(ctx, storage.Filter{
		States: []storage.State{storage.Sent, storage.Bounced, storage.Expired},
		Limit:  destinationScan,
	})
	if err != nil {
		return nil, err
	}
	return summarise(unsent, finished, since, limit), nil
}

// summarise is Destinations without the store.
func summarise(unsent, finished []storage.Row, since time.Time, limit int) []Destination {
	byDomain := map[string]*Destination{}
	get := func(r storage.Row) *Destination {
		domain := r.Domain
		if domain == "" {
			domain = storage.Domain(r.Address)
		}
		d := byDomain[domain]
		if d == nil {
			d = &Destination{Domain: domain}
			byDomain[domain] = d
		}
		return d
	}
	note := func(d *Destination, r storage.Row, final bool) {
		if r.LastError == "" || !r.UpdatedAt.After(d.LastErrorAt) {
			return
		}
		d.LastError, d.LastCode, d.LastRecipient, d.LastErrorAt = r.LastError, r.LastCode, r.Address, r.UpdatedAt
		d.LastErrorFinal = final
	}
	for _, r := range unsent {
		d := get(r)
		switch r.State {
		case storage.Deferred:
			d.Retrying++
		case storage.Held:
			d.Held++
		case storage.Scheduled:
			d.Scheduled++
		default:
			d.Waiting++
		}
		note(d, r, false)
	}
	for _, r := range finished {
		if r.UpdatedAt.Before(since) {
			continue
		}
		d := get(r)
		if r.State == storage.Sent {
			d.Sent++
			continue
		}
		d.Returned++
		note(d, r, true)
	}
	out := make([]Destination, 0, len(byDomain))
	for _, d := range byDomain {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Total() != out[j].Total() {
			return out[i].Total() > out[j].Total()
		}
		return out[i].Domain < out[j].Domain
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
