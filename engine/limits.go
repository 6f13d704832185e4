package engine

// Sending limits: how fast mail leaves, for the whole relay and per
// destination domain.
//
// The unit is the delivery transaction: one message handed to one next
// hop (MAIL FROM to the final reply of DATA), whatever the number of
// recipients in it. That is "one message sent" to the receiving server and
// to the owner, who thinks of "emails sent", not of envelope recipients.
// Only transactions that delivered at least one recipient count; a
// deferral or a bounce has sent nothing.
//
// limits.rate_limit per limits.rate_window is a sliding window: at no
// time do the transactions that ended in the last rate_window plus those in
// flight exceed rate_limit. The window is a log of completion times in
// memory (merged into at most about a thousand entries, each stamped with
// its latest completion, so merging can only hold mail longer, never send
// more). At start it is seeded from the per-minute "sent" counter of the
// store, which counts recipients and stamps them at the end of their
// minute: after a restart the relay may be slower than allowed for one
// window, never faster.
//
// The scheduler asks before each claim how many transactions the window
// allows (plan); it claims no more recipients than that (a recipient is at
// most one transaction), and when the window is full it claims nothing and
// sleeps until the window opens: no busy loop. The mail that waits stays
// queued, untouched; the listing shows it as "held by the sending rate
// limit" with the time the window opens (markHeld), from a small value the
// scheduler keeps in the store, so the command line in another process sees
// it too.
//
// Per-destination limits ([[limits.destinations]], "*" for every other
// domain) apply to direct delivery (MX and routes); through a smarthost the
// smarthost paces delivery and delivery.max_connections bounds our
// connections to it. A domain at its max_connections, or whose
// messages_per_minute (a one-minute sliding window, in memory only) is
// used up, is left out of the claim, so its mail stays queued without
// costing a write, and the scheduler wakes when a connection ends or the
// minute opens. Claimed mail over a domain's remaining minute is handed
// back (storage Unclaim) due when the minute opens, marked as held by that
// domain's limit. A 421 reply or any 4.7.x reply from a domain halves its
// messages per minute for slowDownFor (its last minute's count when it has
// no limit), halving again at most once a minute while it goes on.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"postroom/engine/addr"
	"postroom/engine/config"
	"postroom/engine/deliver"
	"postroom/storage"
)

const (
	// sentCounter is the per-minute counter of recipients sent (storage
	// bumps it in RecordResults); it seeds the rate window at start.
	sentCounter = "sent"
	// holdKey names the stored value that tells the queue listing what the
	// limits hold back.
	holdKey = "limits_hold"
	// slowDownFor is how long a destination that answered 421 or 4.7.x
	// keeps its halved rate.
	slowDownFor = 10 * time.Minute
	// windowEntries bounds the entries of a window's log.
	windowEntries = 1000
)

// window is a sliding-window log of completed transactions plus those in
// flight.
type window struct {
	stamps   []stamp
	inFlight int
}

// stamp is n transactions that completed between first and at; they count
// until at+span.
type stamp struct {
	first, at time.Time
	n         int
}

func (w *window) prune(now time.Time, span time.Duration) {
	w.stamps = slices.DeleteFunc(w.stamps, func(s stamp) bool { return !now.Before(s.at.Add(span)) })
}

func (w *window) used(now time.Time, span time.Duration) int {
	w.prune(now, span)
	n := w.inFlight
	for _, s := range w.stamps {
		n += s.n
	}
	return n
}

// add records a transaction completed at now.
func (w *window) add(now time.Time, span time.Duration) {
	if k := len(w.stamps); k > 0 && now.Sub(w.stamps[k-1].first) < span/windowEntries {
		last := &w.stamps[k-1]
		last.n++
		if now.After(last.at) {
			last.at = now
		}
		return
	}
	w.stamps = append(w.stamps, stamp{first: now, at: now, n: 1})
}

// finish ends a transaction in flight; it counts only when it sent.
func (w *window) finish(now time.Time, span time.Duration, sent bool) {
	w.inFlight = max(w.inFlight-1, 0)
	if sent {
		w.add(now, span)
	}
}

// opensAt is when fewer than limit transactions will count, if those in
// flight end at once; transactions in flight make it at least now+span.
func (w *window) opensAt(now time.Time, span time.Duration, limit int) time.Time {
	excess := w.used(now, span) - limit + 1
	if excess <= 0 {
		return now
	}
	sorted := slices.SortedFunc(slices.Values(w.stamps), func(a, b stamp) int { return a.at.Compare(b.at) })
	for _, s := range sorted {
		if excess -= s.n; excess <= 0 {
			return s.at.Add(span)
		}
	}
	return now.Add(span)
}

// destination is what the scheduler knows of one destination domain.
type destination struct {
	minute    window
	conns     int       // delivery workers for the domain
	slowLimit int       // messages per minute while slowed down
	slowUntil time.Time // end of the slow-down
	halvedAt  time.Time
}

// limiter holds the sending limits' state and the per-user quota
// reservations. Its methods are safe for concurrent use.
type limiter struct {
	mu    sync.Mutex
	rate  window
	dests map[string]*destination
	shown *heldByLimits // what the store's holdKey says; nil = unknown

	quotaMu sync.Mutex     // one quota check at a time, so two sessions cannot both take the last slot
	quota   map[string]int // MAIL transactions in progress per user
}

func newLimiter() *limiter {
	return &limiter{dests: make(map[string]*destination), quota: make(map[string]int)}
}

// heldByLimits is what the limits hold back now, for the queue listing.
type heldByLimits struct {
	Rate    time.Time            `json:"rate,omitzero"`    // the rate window is full until then
	Domains map[string]time.Time `json:"domains,omitzero"` // their minute is used up until then
}

func (h *heldByLimits) equal(o *heldByLimits) bool {
	if o == nil || !h.Rate.Equal(o.Rate) || len(h.Domains) != len(o.Domains) {
		return false
	}
	for d, t := range h.Domains {
		if !t.Equal(o.Domains[d]) {
			return false
		}
	}
	return true
}

// sendPlan is what the limits allow at one look at the queue.
type sendPlan struct {
	budget  int       // transactions allowed now (math.MaxInt without a rate limit)
	exclude []string  // domains not to claim now
	wake    time.Time // when a limit opens (zero: none is waiting for time)
	held    heldByLimits
}

// wait is how long the scheduler may sleep: until a limit opens, at most
// scan.
func (p *sendPlan) wait(now time.Time, scan time.Duration) time.Duration {
	if p.wake.IsZero() {
		return scan
	}
	return min(max(p.wake.Sub(now), 0)+10*time.Millisecond, scan)
}

// destinationLimit returns the [[limits.destinations]] entry for a domain:
// its own, else "*", else none.
func destinationLimit(s *config.Settings, domain string) config.DestinationLimit {
	var def config.DestinationLimit
	for _, d := range s.Limits.Destinations {
		if d.Domain == "*" {
			def = d
			continue
		}
		if sameDomain(d.Domain, domain) {
			return d
		}
	}
	return def
}

func sameDomain(a, b string) bool {
	if strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, ".")) {
		return true
	}
	na, errA := addr.NormalizeDomain(a)
	nb, errB := addr.NormalizeDomain(b)
	return errA == nil && errB == nil && na == nb
}

// perMinute is a destination's messages per minute now (0 = no limit).
func (d *destination) perMinute(configured int, now time.Time) int {
	if now.Before(d.slowUntil) && (configured == 0 || d.slowLimit < configured) {
		return d.slowLimit
	}
	return configured
}

func (l *limiter) dest(domain string) *destination {
	d := l.dests[domain]
	if d == nil {
		d = &destination{}
		l.dests[domain] = d
	}
	return d
}

// plan says what the limits allow at now.
func (l *limiter) plan(s *config.Settings, now time.Time) sendPlan {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := sendPlan{budget: math.MaxInt}
	wakeAt := func(t time.Time) {
		if p.wake.IsZero() || t.Before(p.wake) {
			p.wake = t
		}
	}
	span := s.Limits.RateWindow.Std()
	if limit := s.Limits.RateLimit; limit > 0 {
		p.budget = max(limit-l.rate.used(now, span), 0)
		if p.budget == 0 {
			p.held.Rate = l.rate.opensAt(now, span, limit)
			wakeAt(p.held.Rate)
		}
	} else {
		l.rate.prune(now, span)
	}
	for domain, d := range l.dests {
		lim := destinationLimit(s, domain)
		perMinute := d.perMinute(lim.MessagesPerMinute, now)
		used := d.minute.used(now, time.Minute)
		switch {
		case lim.MaxConnections > 0 && d.conns >= lim.MaxConnections:
			p.exclude = append(p.exclude, domain)
		case perMinute > 0 && used >= perMinute:
			p.exclude = append(p.exclude, domain)
			at := d.minute.opensAt(now, time.Minute, perMinute)
			wakeAt(at)
			if p.held.Domains == nil {
				p.held.Domains = make(map[string]time.Time)
			}
			p.held.Domains[domain] = at
		case used == 0 && d.conns == 0 && !now.Before(d.slowUntil):
			delete(l.dests, domain) // nothing left to remember
		}
	}
	slices.Sort(p.exclude)
	return p
}

// handBack is claimed mail that the limits send back to the queue.
type handBack struct {
	ids    []int64
	at     time.Time
	reason string
}

// admit takes the claimed groups the scheduler is about to start: it cuts
// each group to what its destination's minute allows, and reserves the
// transactions in the windows and the connection of each direct group.
func (l *limiter) admit(s *config.Settings, now time.Time, groups []group) ([]group, []handBack) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var kept []group
	var back []handBack
	for _, g := range groups {
		msgs := byMessage(g.due)
		var d *destination
		if g.domain != "" {
			d = l.dest(g.domain)
			perMinute := d.perMinute(destinationLimit(s, g.domain).MessagesPerMinute, now)
			if room := perMinute - d.minute.used(now, time.Minute); perMinute > 0 && room < len(msgs) {
				room = max(room, 0)
				d.minute.inFlight += room
				at := d.minute.opensAt(now, time.Minute, perMinute)
				d.minute.inFlight -= room
				hb := handBack{at: at, reason: "held by the destination limit for " + g.domain}
				for _, m := range msgs[room:] {
					for _, r := range m {
						hb.ids = append(hb.ids, r.RecipientID)
					}
				}
				back = append(back, hb)
				msgs = msgs[:room]
				if room == 0 {
					continue
				}
				g.due = slices.Concat(msgs...)
			}
			d.conns++
			d.minute.inFlight += len(msgs)
		}
		l.rate.inFlight += len(msgs)
		kept = append(kept, g)
	}
	return kept, back
}

// workerDone releases a direct group's connection.
func (l *limiter) workerDone(domain string) {
	if domain == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := l.dests[domain]; d != nil {
		d.conns = max(d.conns-1, 0)
	}
}

// finished ends the transactions of the recorded recipients (one per
// message among them) and slows the destination down when it asked for it.
func (l *limiter) finished(s *config.Settings, now time.Time, domain string, due []storage.Due, replies []deliver.RcptResult) {
	delivered := make(map[string]bool, len(replies))
	throttled := false
	for _, r := range replies {
		delivered[r.Rcpt] = r.Delivered()
		throttled = throttled || isThrottle(r.Code, r.Enhanced)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	span := s.Limits.RateWindow.Std()
	var d *destination
	if domain != "" {
		d = l.dest(domain)
	}
	for _, msg := range byMessage(due) {
		sent := false
		for _, r := range msg {
			sent = sent || delivered[r.Address]
		}
		l.rate.finish(now, span, sent)
		if d != nil {
			d.minute.finish(now, time.Minute, sent)
		}
	}
	if throttled && d != nil {
		l.slowDown(s, now, domain, d)
	}
}

// failed notes a failure of a whole connection (no per-recipient replies)
// and slows the destination down when it was a 421 or a 4.7.x.
func (l *limiter) failed(s *config.Settings, now time.Time, domain string, err error) {
	var se *smtp.SMTPError
	var de *deliver.Error
	switch {
	case domain == "":
		return
	case errors.As(err, &se) && isThrottle(se.Code, fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])):
	case errors.As(err, &de) && isThrottle(de.Code, de.Enhanced):
	default:
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.slowDown(s, now, domain, l.dest(domain))
}

// isThrottle reports whether a reply asks us to slow down: 421 (service
// not available, closing) or any 4.7.x (a temporary policy refusal, which
// is how large providers say "too fast").
func isThrottle(code int, enhanced string) bool {
	return code == 421 || strings.HasPrefix(enhanced, "4.7.")
}

func (l *limiter) slowDown(s *config.Settings, now time.Time, domain string, d *destination) {
	if now.Before(d.slowUntil) && now.Sub(d.halvedAt) < time.Minute {
		d.slowUntil = now.Add(slowDownFor) // the last halving has not had time to show
		return
	}
	current := d.perMinute(destinationLimit(s, domain).MessagesPerMinute, now)
	if current == 0 {
		current = d.minute.used(now, time.Minute) // no limit: what it took in the last minute
	}
	d.slowLimit = max(current/2, 1)
	d.slowUntil = now.Add(slowDownFor)
	d.halvedAt = now
}

// seed fills the rate window from the store's per-minute counter of sent
// recipients, each minute stamped at its end.
func (l *limiter) seed(ctx context.Context, st Store, s *config.Settings, now time.Time) error {
	span := s.Limits.RateWindow.Std()
	counters, err := st.Counters(ctx, now.Add(-span-time.Minute))
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = window{}
	for _, c := range counters {
		if c.Name == sentCounter && c.N > 0 {
			end := c.Minute.Add(time.Minute)
			l.rate.stamps = append(l.rate.stamps, stamp{first: end, at: end, n: c.N})
		}
	}
	l.rate.prune(now, span)
	return nil
}

// limitPlan is the scheduler's look at the limits: it also tells the
// store what they hold back, when that changed.
func (e *Engine) limitPlan(ctx context.Context, s *config.Settings, now time.Time) sendPlan {
	p := e.lim.plan(s, now)
	e.lim.mu.Lock()
	changed := !p.held.equal(e.lim.shown)
	e.lim.mu.Unlock()
	if !changed {
		return p
	}
	doc, err := json.Marshal(p.held)
	if err == nil {
		err = e.store.SetValue(ctx, holdKey, doc)
	}
	if err != nil {
		e.log.Warn("recording what the sending limits hold back", "err", err)
		return p
	}
	if !p.held.Rate.IsZero() {
		e.log.Info("sending rate limit reached: mail waits", "until", p.held.Rate, "rate_limit", s.Limits.RateLimit, "rate_window", s.Limits.RateWindow)
	}
	held := p.held
	e.lim.mu.Lock()
	e.lim.shown = &held
	e.lim.mu.Unlock()
	return p
}

// giveBack returns mail the limits did not let go to the queue.
func (e *Engine) giveBack(ctx context.Context, back []handBack) {
	for _, hb := range back {
		if err := e.persist(ctx, "handing mail back to the queue", func(ctx context.Context) error {
			_, err := e.store.Unclaim(ctx, hb.ids, hb.at, hb.reason)
			return err
		}); err != nil {
			continue
		}
		e.log.Info("mail handed back to the queue", "recipients", len(hb.ids), "until", hb.at, "reason", hb.reason)
	}
}

// hopKey is the group key of a recipient domain: "" when it goes through
// the smarthost.
func hopKey(s *config.Settings, domain string) string {
	if s.Delivery.Mode != "smarthost" {
		return domain
	}
	for _, r := range s.Delivery.Routes {
		if sameDomain(r.Domain, domain) {
			return domain
		}
	}
	return ""
}

// markHeld shows in a page of the listing why waiting mail has not left:
// the user's pause, a full rate window, or a destination's used-up minute
// (with the time it opens as the next try).
func (e *Engine) markHeld(ctx context.Context, rows []storage.Row) error {
	now := e.now()
	waiting := false
	for _, r := range rows {
		waiting = waiting || isWaiting(r, now)
	}
	if !waiting {
		return nil
	}
	paused, err := e.Paused(ctx)
	if err != nil {
		return err
	}
	var held heldByLimits
	if doc, found, err := e.store.Value(ctx, holdKey); err != nil {
		return err
	} else if found && len(doc) > 0 {
		if err := json.Unmarshal(doc, &held); err != nil {
			e.log.Warn("unreadable record of what the limits hold back", "err", err)
		}
	}
	for i := range rows {
		r := &rows[i]
		if !isWaiting(*r, now) {
			continue
		}
		switch until, ok := held.Domains[r.Domain]; {
		case paused:
			r.HeldReason = "sending is paused"
		case ok && until.After(now):
			r.NextAttempt, r.HeldReason = until, "held by the destination limit for "+r.Domain
		case held.Rate.After(now):
			r.NextAttempt, r.HeldReason = held.Rate, "held by the sending rate limit"
		}
	}
	return nil
}

// isWaiting: due, but not being sent.
func isWaiting(r storage.Row, now time.Time) bool {
	switch r.State {
	case storage.Queued, storage.Deferred, storage.Scheduled:
		return !r.NextAttempt.IsZero() && !r.NextAttempt.After(now)
	}
	return false
}

// checkQuota applies the authenticated user's hourly and daily quota at
// MAIL FROM and reserves one message of it until the transaction ends
// (releaseQuota), so that parallel sessions of one user cannot all take
// the last message left.
func (s *session) checkQuota() error {
	user := s.authUser
	if user == "" {
		return nil
	}
	e := s.e
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	u, err := e.store.User(ctx, user)
	if errors.Is(err, storage.ErrNotFound) {
		return nil // removed since it logged in: it had no quota to check
	}
	if err != nil {
		e.log.Error("reading a user's quota", "user", user, "err", err)
		return errInternal
	}
	if u.PerHour == 0 && u.PerDay == 0 {
		return nil
	}
	l := e.lim
	l.quotaMu.Lock()
	defer l.quotaMu.Unlock()
	now := e.now()
	for _, q := range []struct {
		limit int
		span  time.Duration
		per   string
	}{{u.PerHour, time.Hour, "hour"}, {u.PerDay, 24 * time.Hour, "day"}} {
		if q.limit == 0 {
			continue
		}
		n, err := e.store.CountUserMessages(ctx, user, now.Add(-q.span))
		if err != nil {
			e.log.Error("counting a user's messages", "user", user, "err", err)
			return errInternal
		}
		if n+l.quota[user] >= q.limit {
			e.refused("quota", s.ip, "MAIL", fmt.Sprintf("user %s: %d messages in the last %s, quota %d", user, n, q.per, q.limit))
			return smtpErr(452, smtp.EnhancedCode{4, 5, 3},
				fmt.Sprintf("Sending quota reached: user %s may send %d messages per %s; try again later", user, q.limit, q.per))
		}
	}
	l.quota[user]++
	s.quotaUser = user
	return nil
}

// releaseQuota ends the session's quota reservation: the transaction was
// stored (and now counts in the store) or abandoned.
func (s *session) releaseQuota() {
	user := s.quotaUser
	if user == "" {
		return
	}
	s.quotaUser = ""
	l := s.e.lim
	l.quotaMu.Lock()
	defer l.quotaMu.Unlock()
	if l.quota[user]--; l.quota[user] <= 0 {
		delete(l.quota, user)
	}
}

// SetUserQuota sets how many messages a user may send per hour and per
// day (0 = no cap).
func (e *Engine) SetUserQuota(ctx context.Context, name string, perHour, perDay int) error {
	name, err := canonicalUserName(name)
	if err != nil {
		return err
	}
	if err := e.store.SetUserQuota(ctx, name, perHour, perDay); err != nil {
		return noSuchUser(name, err)
	}
	e.log.Info("user quota set", "user", name, "per_hour", perHour, "per_day", perDay)
	return nil
}

// seedLimits fills the rate window from the store at the scheduler's start.
func (e *Engine) seedLimits(ctx context.Context) {
	s := e.Settings()
	if err := e.lim.seed(ctx, e.store, &s, e.now()); err != nil {
		e.log.Error("reading the recent sending counters; the rate window starts empty", "err", err)
	}
}
