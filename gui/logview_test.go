package gui

import (
	"slices"
	"strings"
	"testing"
)

func TestLogTabFollowsTheLogAndFilters(t *testing.T) {
	logs := &fakeLogs{changed: make(chan struct{}, 1)}
	logs.add("postroom started")
	h := startUI(t, newApp(t), newFakeEngine(nil), logs)
	v := h.u.logView
	h.until(t, "the first line", func() bool { return len(v.shown) == 1 })
	logs.add("delivery failed for ann@example.net")
	logs.add("message queued")
	h.until(t, "the new lines", func() bool { return len(v.shown) == 3 })
	h.do(func() {
		v.filter.SetText("ann@")
		if len(v.shown) != 1 || !strings.Contains(v.shown[0], "delivery failed for ann@example.net") {
			t.Errorf("filtered log shows %q", v.shown)
		}
		v.filter.SetText("")
		if !slices.ContainsFunc(v.shown, func(s string) bool { return strings.Contains(s, "message queued") }) {
			t.Errorf("log shows %q", v.shown)
		}
	})
}
