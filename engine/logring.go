package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
)

// LogLine is one log record as the window's Log tab shows it.
type LogLine struct {
	Seq     uint64 // counts from 1; a reader asks for lines after the last it saw
	Time    time.Time
	Level   slog.Level
	Message string
	Attrs   string // "key=value key=value"
}

// String is the readable line: time, level, message, details.
func (l LogLine) String() string {
	s := l.Time.Format("15:04:05") + " " + fmt.Sprintf("%-5s", l.Level.String()) + " " + l.Message
	if l.Attrs != "" {
		s += "  " + l.Attrs
	}
	return s
}

// LogRing keeps the latest log records in memory for the window: its
// Handler passes every record on to the real handler and keeps a copy.
// Writing never blocks on a reader; a reader that falls behind by more
// than the ring's size misses the oldest lines.
type LogRing struct {
	mu     sync.Mutex
	lines  []LogLine // circular, len == size once full
	start  int       // index of the oldest line once full
	size   int
	seq    uint64
	notify chan struct{}
}

// NewLogRing returns a ring that keeps the last size lines.
func NewLogRing(size int) *LogRing {
	if size <= 0 {
		size = 1000
	}
	return &LogRing{size: size, notify: make(chan struct{}, 1)}
}

// Handler returns a handler that writes to next and to the ring.
func (r *LogRing) Handler(next slog.Handler) slog.Handler {
	return &ringHandler{ring: r, next: next}
}

// Changed receives (without piling up) after new lines were added. Meant
// for one reader.
func (r *LogRing) Changed() <-chan struct{} { return r.notify }

// Since returns the lines after seq, oldest first.
func (r *LogRing) Since(seq uint64) []LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []LogLine
	n := len(r.lines)
	for i := range n {
		l := r.lines[(r.start+i)%n]
		if l.Seq > seq {
			out = append(out, l)
		}
	}
	return out
}

func (r *LogRing) add(l LogLine) {
	r.mu.Lock()
	r.seq++
	l.Seq = r.seq
	if len(r.lines) < r.size {
		r.lines = append(r.lines, l)
	} else {
		r.lines[r.start] = l
		r.start = (r.start + 1) % r.size
	}
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// ringHandler tees records into a LogRing.
type ringHandler struct {
	ring   *LogRing
	next   slog.Handler
	prefix string // attributes added by WithAttrs, already formatted
	group  string // "a.b." from WithGroup
}

func (h *ringHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *ringHandler) Handle(ctx context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix)
	rec.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.group, a)
		return true
	})
	h.ring.add(LogLine{Time: rec.Time, Level: rec.Level, Message: rec.Message, Attrs: strings.TrimSpace(b.String())})
	if h.next.Enabled(ctx, rec.Level) {
		return h.next.Handle(ctx, rec)
	}
	return nil
}

func (h *ringHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		writeAttr(&b, h.group, a)
	}
	return &ringHandler{ring: h.ring, next: h.next.WithAttrs(attrs), prefix: b.String(), group: h.group}
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &ringHandler{ring: h.ring, next: h.next.WithGroup(name), prefix: h.prefix, group: h.group + name + "."}
}

func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			writeAttr(b, group+a.Key+".", g)
		}
		return
	}
	v := a.Value.String()
	// Quoted when it would be ambiguous, and when it holds anything not
	// printable: values can carry client text (a user name tried in AUTH),
	// which must never start a line of its own in the window.
	if strings.ContainsAny(v, " \t\"=") || v == "" || strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) }) {
		v = fmt.Sprintf("%q", v)
	}
	b.WriteString(" " + group + a.Key + "=" + v)
}
