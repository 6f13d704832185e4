package engine

import (
	"fmt"
	"testing"

	"postroom/engine/config"
	"postroom/storage"
)

// claimed makes the claim of msgs messages of rcpts recipients each to
// domain, numbered from first.
func claimed(domain string, first, msgs, rcpts int) []storage.Due {
	var due []storage.Due
	for m := range msgs {
		for r := range rcpts {
			due = append(due, storage.Due{RecipientID: int64((first+m)*100 + r), MessageID: int64(first + m),
				Address: fmt.Sprintf("u%d@%s", r, domain), Domain: domain})
		}
	}
	return due
}

func TestSpreadSendsABacklogOverSeveralConnections(t *testing.T) {
	t.Parallel()
	s := config.Default()
	groups := spread(&s, []group{{domain: "", due: claimed("example.net", 1, 200, 2)}}, 10)
	if len(groups) != 10 {
		t.Fatalf("200 messages with 10 free connections went out over %d connections, want 10", len(groups))
	}
	seen := make(map[int64]int)
	for i, g := range groups {
		if len(byMessage(g.due)) != 20 {
			t.Errorf("connection %d carries %d messages, want 20", i, len(byMessage(g.due)))
		}
		for _, d := range g.due {
			seen[d.MessageID]++
		}
	}
	for id := int64(1); id <= 200; id++ {
		if seen[id] != 2 {
			t.Fatalf("message %d: %d of its 2 recipients sent, want both on one connection", id, seen[id])
		}
	}
}

func TestSpreadKeepsShortRunsOnOneConnection(t *testing.T) {
	t.Parallel()
	s := config.Default()
	if groups := spread(&s, []group{{domain: "", due: claimed("example.net", 1, 5, 1)}}, 20); len(groups) != 1 {
		t.Fatalf("5 messages went out over %d connections, want 1", len(groups))
	}
}

func TestSpreadLeavesALimitedDestinationWhole(t *testing.T) {
	t.Parallel()
	s := config.Default()
	s.Limits.Destinations = []config.DestinationLimit{{Domain: "example.com", MaxConnections: 2}}
	groups := spread(&s, []group{
		{domain: "example.com", due: claimed("example.com", 1, 100, 1)},
		{domain: "example.org", due: claimed("example.org", 101, 100, 1)},
	}, 10)
	var limited, other int
	for _, g := range groups {
		if g.domain == "example.com" {
			limited++
		} else {
			other++
		}
	}
	if limited != 1 || other < 2 {
		t.Fatalf("example.com (max 2 connections) on %d connections, example.org on %d; want 1 and several", limited, other)
	}
}
