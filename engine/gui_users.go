package engine

// What the Users page shows beyond the accounts themselves: how much of
// each user's sending quota is used. It counts exactly what checkQuota
// counts (the user's stored messages in the last hour and the last 24
// hours), so the page and the 452 refusal never disagree.

import (
	"context"
	"fmt"
	"time"
)

// UserUsage is how many messages a user sent in the two windows its quota
// counts, both ending now.
type UserUsage struct {
	LastHour int // since an hour ago, against User.PerHour
	LastDay  int // since 24 hours ago, against User.PerDay
}

// UserUsage counts the messages name sent (authenticated as name) in the
// last hour and the last 24 hours. Messages deleted from the queue no
// longer count, as they do not for the quota itself.
func (e *Engine) UserUsage(ctx context.Context, name string) (UserUsage, error) {
	name, err := canonicalUserName(name)
	if err != nil {
		return UserUsage{}, err
	}
	now := e.now()
	hour, err := e.store.CountUserMessages(ctx, name, now.Add(-time.Hour))
	if err != nil {
		return UserUsage{}, fmt.Errorf("counting the messages of user %q: %w", name, err)
	}
	day, err := e.store.CountUserMessages(ctx, name, now.Add(-24*time.Hour))
	if err != nil {
		return UserUsage{}, fmt.Errorf("counting the messages of user %q: %w", name, err)
	}
	return UserUsage{LastHour: hour, LastDay: day}, nil
}
