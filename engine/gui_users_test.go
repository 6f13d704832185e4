package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

func TestUserUsageCountsTheUsersMessagesInEachWindow(t *testing.T) {
	t.Parallel()
	r, clk, _ := quotaRelay(t, 0, 0) // no quota: usage is counted all the same
	ctx := context.Background()
	hash, err := bcrypt.GenerateFromPassword([]byte("office password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.store.AddUser(ctx, "office", string(hash), clk.Now()); err != nil {
		t.Fatal(err)
	}
	scanner := authClient(t, r)
	office, err := smtp.Dial(r.e.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { office.Close() })
	if err := office.Auth(sasl.NewPlainClient("", "office", "office password")); err != nil {
		t.Fatalf("AUTH as office: %v", err)
	}
	send := func(c *smtp.Client, n int) {
		t.Helper()
		for range n {
			if err := c.SendMail("a@example.org", []string{"b@example.net"}, strings.NewReader(simpleBody)); err != nil {
				t.Fatal(err)
			}
		}
	}
	usage := func(name string) UserUsage {
		t.Helper()
		u, err := r.e.UserUsage(ctx, name)
		if err != nil {
			t.Fatalf("UserUsage(%q): %v", name, err)
		}
		return u
	}

	send(scanner, 2)
	clk.Advance(2 * time.Hour)
	send(scanner, 1)
	send(office, 1)
	// Names are matched as the quota matches them, whatever the case.
	if got, want := usage("Scanner"), (UserUsage{LastHour: 1, LastDay: 3}); got != want {
		t.Errorf("scanner's usage %+v, want %+v (office's message not counted)", got, want)
	}
	if got, want := usage("office"), (UserUsage{LastHour: 1, LastDay: 1}); got != want {
		t.Errorf("office's usage %+v, want %+v", got, want)
	}
	// A day after the first two, only the later message is within 24 hours.
	clk.Advance(23 * time.Hour)
	if got, want := usage("scanner"), (UserUsage{LastHour: 0, LastDay: 1}); got != want {
		t.Errorf("scanner's usage the next day %+v, want %+v", got, want)
	}
	if _, err := r.e.UserUsage(ctx, "no such name"); err == nil {
		t.Error("UserUsage accepted a name with a space")
	}
}
