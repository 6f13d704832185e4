package gui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"postroom/engine"
)

func cardValue(t *testing.T, d *dashboard, name string) string {
	t.Helper()
	for _, c := range d.cards {
		if c.name == name {
			return c.value.Text
		}
	}
	t.Fatalf("no counter %q on the dashboard", name)
	return ""
}

func TestDashboardShowsCountersAndStatus(t *testing.T) {
	eng := newFakeEngine(map[string]int{
		"queued": 3, "scheduled": 1, "sending": 1, "deferred": 2, "held": 4, "sent": 120, "bounced": 1, "expired": 2,
	})
	now := time.Now()
	eng.points = []engine.CounterPoint{
		{Name: "sent", Minute: now.Add(-2 * time.Minute), N: 5},
		{Name: "sent", Minute: now.Add(-20 * time.Minute), N: 2},
		{Name: "bounced", Minute: now.Add(-3 * time.Minute), N: 1},
		{Name: "refused:blocked_networks", Minute: now.Add(-1 * time.Minute), N: 4},
		{Name: "deferred", Minute: now.Add(-5 * time.Hour), N: 6},
	}
	h := startUI(t, newApp(t), eng, nil)
	d := h.u.dash
	// "Today" starts at midnight: count what the test's points put there.
	today := func(name string) string {
		n := 0
		for _, p := range eng.points {
			if strings.HasPrefix(p.Name, name) && !p.Minute.Before(startOfDay(now)) {
				n += p.N
			}
		}
		return fmt.Sprint(n)
	}
	for name, want := range map[string]string{
		"Waiting to be sent": "5", "Waiting to retry": "2", "Held": "4",
		"Sent today": today("sent"), "Returned today": today("bounced"), "Refused today": today("refused:"),
	} {
		if got := cardValue(t, d, name); got != want {
			t.Errorf("%s shows %s, want %s", name, got, want)
		}
	}
	if d.status.Text != "Sending" || !strings.Contains(d.detail.Text, "Accepting mail on 127.0.0.1:2525, delivering directly") {
		t.Errorf("status %q, detail %q", d.status.Text, d.detail.Text)
	}
	if got := d.chart.Total(0); got != 7 {
		t.Errorf("last-hour chart shows %v sent, want 7", got)
	}
	if got := d.chart.Total(1); got != 0 {
		t.Errorf("last-hour chart shows %v deferred from 5 hours ago", got)
	}
	h.do(func() { d.span.SetSelected(spanDay) })
	if got := d.chart.Total(1); got != 6 {
		t.Errorf("24-hour chart shows %v deferred, want 6", got)
	}
}

func TestDashboardUpdatesOnEvents(t *testing.T) {
	eng := newFakeEngine(map[string]int{"queued": 1})
	h := startUI(t, newApp(t), eng, nil)
	d := h.u.dash

	eng.set(func(f *fakeEngine) { f.counts = map[string]int{"queued": 0, "deferred": 1} })
	eng.events <- engine.Event{Time: time.Now(), Kind: engine.EventDelivery, MessageID: 7, Recipient: "ann@example.net",
		State: engine.StateDeferred, Code: 451, Text: "451 4.7.1 greylisted, try again later"}
	h.until(t, "the counters to follow the event", func() bool { return cardValue(t, d, "Waiting to retry") == "1" })
	if got := cardValue(t, d, "Waiting to be sent"); got != "0" {
		t.Errorf("Waiting to be sent shows %s after the event, want 0", got)
	}
	want := "Mail to ann@example.net is not delivered yet and will be tried again: the receiving server asked Postroom to try again later (greylisting)"
	if !strings.Contains(d.errors.Text, want) {
		t.Errorf("latest problems %q, want a line %q", d.errors.Text, want)
	}
}

func TestDashboardSaysWhenNotListening(t *testing.T) {
	eng := newFakeEngine(nil)
	eng.listen = ""
	eng.settings.Delivery.Mode = "smarthost"
	eng.settings.Delivery.Smarthost = "smtp.gmail.com:587"
	h := startUI(t, newApp(t), eng, nil)
	if got := h.u.dash.detail.Text; !strings.HasPrefix(got, "Not accepting mail") || !strings.Contains(got, "Sending through smtp.gmail.com:587") {
		t.Errorf("detail line %q", got)
	}
}

func TestDashboardListsDestinationsAndExplainsTheirErrors(t *testing.T) {
	eng := newFakeEngine(map[string]int{"deferred": 3, "queued": 1})
	now := time.Now()
	eng.dests = []engine.Destination{
		{Domain: "gmail.com", Retrying: 3, Sent: 12, LastRecipient: "ann@gmail.com", LastCode: 421,
			LastError: "421 4.7.0 Try again later, closing connection", LastErrorAt: now.Add(-2 * time.Minute)},
		{Domain: "example.org", Sent: 5},
		{Domain: "typo.example", Returned: 1, LastRecipient: "bob@typo.example", LastCode: 550,
			LastError: "550 5.1.1 user unknown", LastErrorAt: now.Add(-time.Minute), LastErrorFinal: true},
		{Domain: "later.example", Waiting: 1},
	}
	h := startUI(t, newApp(t), eng, nil)
	d := h.u.dash
	h.do(func() {
		if len(d.dests) != 4 || d.destEmpty.Visible() {
			t.Fatalf("dashboard lists %d destinations (empty note shown %v)", len(d.dests), d.destEmpty.Visible())
		}
		for i, want := range []struct {
			state, counts string
		}{
			{"Retrying", "3 to retry, 12 sent"},
			{"OK", "5 sent"},
			{"Returned", "1 returned"},
			{"Sending", "1 waiting"},
		} {
			state, _ := destinationState(d.dests[i])
			if state != want.state || destinationCounts(d.dests[i]) != want.counts {
				t.Errorf("%s shows %q, %q; want %q, %q", d.dests[i].Domain, state, destinationCounts(d.dests[i]), want.state, want.counts)
			}
		}
		// Before any event, the latest problems come from the queue, the
		// newest first and in plain words.
		lines := strings.Split(d.errors.Text, "\n\n")
		if len(lines) != 2 {
			t.Fatalf("latest problems:\n%s\nwant the two domains' errors", d.errors.Text)
		}
		if !strings.Contains(lines[0], "Mail to bob@typo.example was returned to its sender: the recipient's address does not exist") {
			t.Errorf("first problem %q", lines[0])
		}
		if !strings.Contains(lines[1], "Mail to ann@gmail.com is not delivered yet and will be tried again: the receiving server is busy") {
			t.Errorf("second problem %q", lines[1])
		}
	})

	// A refusal event comes first, in words.
	eng.events <- engine.Event{Time: time.Now(), Kind: engine.EventRefused, Text: "192.0.2.7 refused at MAIL by relay"}
	h.until(t, "the refusal line", func() bool {
		return strings.Contains(d.errors.Text, "Postroom refused mail from 192.0.2.7 because its computer is not on the list of networks that may send")
	})
}

func TestDashboardSaysWhenNoMailWent(t *testing.T) {
	h := startUI(t, newApp(t), newFakeEngine(nil), nil)
	h.do(func() {
		if !h.u.dash.destEmpty.Visible() {
			t.Error("an empty destination list does not say so")
		}
	})
}
