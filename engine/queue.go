package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"postroom/engine/msgdata"
	"postroom/storage"
)

// QueueCounts returns recipients per state, keyed by the state's name.
func (e *Engine) QueueCounts(ctx context.Context) (map[string]int, error) {
	counts, err := e.store.CountByState(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(counts))
	for st, n := range counts {
		out[string(st)] = n
	}
	return out, nil
}

// List returns a page of the queue listing.
func (e *Engine) List(ctx context.Context, f storage.Filter) ([]storage.Row, error) {
	rows, err := e.store.List(ctx, f)
	if err != nil {
		return nil, err
	}
	// Why due mail waits: a pause or a limit (limits.go).
	return rows, e.markHeld(ctx, rows)
}

// MessageDetail is everything the queue view shows of one message.
type MessageDetail struct {
	Message    storage.Message
	Recipients []storage.Recipient
	Attempts   []storage.Attempt
	Header     []byte
}

// Show returns one message's envelope, recipients, attempt log and header.
func (e *Engine) Show(ctx context.Context, id int64) (*MessageDetail, error) {
	m, err := e.store.Message(ctx, id)
	if err != nil {
		return nil, err
	}
	d := &MessageDetail{Message: *m}
	if d.Recipients, err = e.store.Recipients(ctx, id); err != nil {
		return nil, err
	}
	if d.Attempts, err = e.store.Attempts(ctx, id); err != nil {
		return nil, err
	}
	body, err := e.store.OpenBody(ctx, id)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	d.Header, err = msgdata.SplitHeader(body, maxOriginalHeader)
	if err != nil && !errors.Is(err, msgdata.ErrHeaderTruncated) {
		return nil, err
	}
	return d, nil
}

// Action names for Apply, as the command line spells them.
var actions = map[string]storage.Action{
	"retry":    storage.Retry,
	"hold":     storage.Hold,
	"release":  storage.Release,
	"delete":   storage.Delete,
	"bounce":   storage.Bounce,
	"schedule": storage.Schedule,
}

// Apply performs a named queue action ("retry", "hold", "release",
// "delete", "bounce", "schedule") on a message; at is the time for
// "schedule". A running engine looks at the queue again at once; another
// process's engine sees the change at its next scan.
func (e *Engine) Apply(ctx context.Context, action string, id int64, at time.Time) error {
	a, ok := actions[action]
	if !ok {
		return fmt.Errorf("unknown queue action %q", action)
	}
	reason := "held by the user"
	switch a {
	case storage.Bounce:
		reason = "returned to the sender by the relay's administrator"
	case storage.Schedule:
		s := e.Settings()
		if s.Delivery.QueueLifetime.Std() > 0 && at.After(e.now().Add(s.Delivery.QueueLifetime.Std())) {
			return fmt.Errorf("%s is beyond the queue lifetime (%s): the message would expire before it is sent", at.Format(time.RFC3339), s.Delivery.QueueLifetime)
		}
	}
	if _, err := e.store.Apply(ctx, id, a, at, e.now(), reason); err != nil {
		return err
	}
	e.log.Info("queue action", "action", action, "id", id)
	if a == storage.Bounce {
		e.sweepBounces(ctx)
	}
	e.Wake()
	return nil
}
