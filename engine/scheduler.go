package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"postroom/engine/config"
	"postroom/engine/deliver"
	"postroom/storage"
)

const (
	// claimBatch is how many due recipients one claim takes.
	claimBatch = 200
	// claimLease is how long a claim stays "sending" before another node
	// (or this one, after losing track) may take it again. It is far above
	// any single delivery's timeouts.
	claimLease = time.Hour
	// maxIdleSessions and sessionIdleFor bound the outbound sessions kept
	// open between groups (deliver.Pool): a few seconds, as Postfix's
	// connection cache (smtp_connection_cache_time_limit) does.
	maxIdleSessions = 16
	sessionIdleFor  = 5 * time.Second
)

// schedule is the scheduler's loop. It runs until ctx ends, then waits for
// the workers it started.
func (e *Engine) schedule(ctx context.Context) {
	var workers sync.WaitGroup
	// Deferred first, so it runs after the workers are done.
	defer e.hops.CloseIdle()
	defer workers.Wait()
	e.sweepBounces(ctx)
	swept := time.Now()
	e.seedLimits(ctx)
	for {
		wait := e.dispatch(ctx, &workers)
		if wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-e.wake:
			case <-timer.C:
				// A bounce asked for by another program (`postroom
				// queue bounce`) is sent within a scan interval.
				if scan := e.Settings().Delivery.QueueScanInterval.Std(); time.Since(swept) >= scan {
					e.sweepBounces(ctx)
					swept = time.Now()
				}
			}
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// dispatch claims due mail and starts workers for it. It returns how long
// to sleep before looking again (0 = at once).
func (e *Engine) dispatch(ctx context.Context, workers *sync.WaitGroup) time.Duration {
	e.reloadSettings(ctx)
	s := e.Settings()
	scan := s.Delivery.QueueScanInterval.Std()
	// Held from reading the paused flag to starting the workers, so that
	// once SetPaused returns nothing more is claimed.
	e.pauseMu.RLock()
	defer e.pauseMu.RUnlock()
	paused, err := e.Paused(ctx)
	if err != nil {
		e.log.Error("reading the paused flag", "err", err)
		return scan
	}
	if paused {
		return scan
	}
	slots := e.freeSlots(s)
	if slots == 0 {
		return scan // a worker's end wakes us
	}
	now := e.now()
	// The sending limits (limits.go) say how many transactions may start
	// and which domains must wait; a full rate window means sleeping until
	// it opens.
	plan := e.limitPlan(ctx, &s, now)
	if plan.budget == 0 {
		return plan.wait(now, scan)
	}
	limit := min(claimBatch, slots*20, plan.budget)
	due, err := e.store.ClaimDueExcept(ctx, now, limit, claimLease, plan.exclude)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("claiming due mail", "err", err)
		}
		return scan
	}
	groups, back := e.lim.admit(&s, now, spread(&s, groupByHop(due, s.Delivery.Mode == "smarthost", s.Delivery.Routes), slots))
	e.giveBack(ctx, back)
	for _, group := range groups {
		e.startWorker(ctx, workers, s, group)
	}
	if len(due) == limit {
		return 0
	}
	next, ok, err := e.store.NextDueExcept(ctx, plan.exclude)
	if err != nil || !ok {
		return plan.wait(now, scan)
	}
	return min(max(next.Sub(e.now()), 0)+10*time.Millisecond, plan.wait(now, scan))
}

// group is a batch of claimed recipients that share a next hop, in message
// order.
type group struct {
	domain string // the recipients' domain, or "" for the smarthost
	due    []storage.Due
}

func groupByHop(due []storage.Due, smarthost bool, routes []config.Route) []group {
	routed := make(map[string]bool, len(routes))
	for _, r := range routes {
		routed[strings.ToLower(r.Domain)] = true
	}
	idx := map[string]int{}
	var out []group
	for _, d := range due {
		key := d.Domain
		if smarthost && !routed[d.Domain] {
			key = ""
		}
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, group{domain: key})
		}
		out[i].due = append(out[i].due, d)
	}
	for _, g := range out {
		sort.SliceStable(g.due, func(i, j int) bool { return g.due[i].MessageID < g.due[j].MessageID })
	}
	return out
}

func (e *Engine) freeSlots(s config.Settings) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return max(s.Delivery.MaxConnections-e.active, 0)
}

func (e *Engine) startWorker(ctx context.Context, workers *sync.WaitGroup, s config.Settings, g group) {
	e.mu.Lock()
	e.active++
	e.mu.Unlock()
	workers.Add(1)
	go func() {
		defer workers.Done()
		defer func() {
			e.mu.Lock()
			e.active--
			e.mu.Unlock()
			e.lim.workerDone(g.domain)
			e.Wake()
		}()
		e.deliverGroup(ctx, s, g)
		// Looking for owed DSNs after every delivery was a query per
		// worker for nothing: mail that is sent owes none.
		if e.owedBounces.Load() {
			e.sweepBounces(ctx)
		}
	}()
}

// transport builds the outbound configuration from the settings.
func (e *Engine) transport(s config.Settings) *deliver.Config {
	d := s.Delivery
	routes := make(map[string]string, len(d.Routes))
	for _, r := range d.Routes {
		routes[strings.ToLower(strings.TrimSuffix(r.Domain, "."))] = r.Host
	}
	// The settings were validated, so the modes parse.
	tlsMode, _ := deliver.ParseTLSMode(d.TLS)
	cfg := &deliver.Config{
		HeloName:       s.Hostname,
		SourceIP:       d.SourceIP,
		ConnectTimeout: d.ConnectTimeout.Std(),
		CommandTimeout: cmp.Or(e.opts.CommandTimeout, 5*time.Minute),
		DataTimeout:    e.opts.DataTimeout,
		TLS:            tlsMode,
		Routes:         routes,
		RootCAs:        e.opts.RootCAs,
		Resolver:       e.opts.Resolver,
		Port:           e.opts.MXPort,
		Dial:           e.opts.Dial,
	}
	if d.Mode == "smarthost" {
		cfg.Smarthost = d.Smarthost
		cfg.SmarthostTLS, _ = deliver.ParseSmarthostTLS(d.SmarthostTLS)
		cfg.SmarthostUsername = d.SmarthostUsername
		cfg.SmarthostPassword = d.SmarthostPassword
	}
	if cfg.Resolver == nil {
		cfg.Resolver = deliver.NewResolver(d.Resolver)
	}
	return cfg
}

// deliverGroup sends a group's messages over one connection, opening a
// new one when a connection breaks, and records every outcome.
func (e *Engine) deliverGroup(ctx context.Context, s config.Settings, g group) {
	cfg := e.transport(s)
	routeDomain := g.domain
	if routeDomain == "" {
		routeDomain = g.due[0].Domain
	}
	started := e.now()
	groupStart := started
	route, err := cfg.Route(ctx, routeDomain)
	if err != nil {
		e.finish(ctx, s, g.due, failure{err: err, permanent: deliver.IsPermanent(err), started: started})
		return
	}
	// The domain's MTA-STS policy may narrow the MX hosts and require
	// verified TLS (sts.go).
	sts, err := e.applySTS(ctx, cfg, &route, routeDomain)
	if err != nil {
		e.finish(ctx, s, g.due, failure{err: err, started: started, tls: sts.note()})
		return
	}
	// The session is kept for the next group to this next hop (deliver.Pool).
	poolKey := deliver.PoolKey(cfg, route)
	var sess *deliver.Session
	defer func() {
		if sess != nil {
			e.hops.Put(poolKey, sess)
		}
	}()
	msgs := byMessage(g.due)
	for i, msg := range msgs {
		if ctx.Err() != nil {
			return // left claimed; released at the next start
		}
		started := e.now()
		if started.Sub(groupStart) > claimLease/2 {
			// A slow next hop: hand the rest back before their claim's
			// lease runs out and another worker takes them too.
			e.giveBack(ctx, []handBack{{ids: recipientIDs(msgs[i:]), at: started,
				reason: "waiting for a new connection (the last one was slow)"}})
			if sess != nil {
				sess.Close() // not kept: the mail handed back gets a new one
			}
			return
		}
		if sess == nil {
			if sess = e.hops.Get(ctx, poolKey); sess != nil {
				sts.observe(e, sess.Info())
			}
		}
		if sess == nil {
			if sess, err = e.dial(ctx, s, cfg, route, &sts, msgs[i:], started); err != nil {
				return
			}
		}
		reused := sess.Reused()
		results, signing, err := e.sendOne(ctx, sess, msg)
		if err != nil && reused && !deliver.DuplicatePossible(err) && ctx.Err() == nil {
			// The next hop dropped the idle connection we kept, at the
			// wrong moment: nothing of this message counted, so it goes
			// again, once, on a fresh connection.
			e.log.Info("a kept connection failed; sending on a new one", "host", sess.Info().Host, "err", err)
			sess.Close()
			if sess, err = e.dial(ctx, s, cfg, route, &sts, msgs[i:], started); err != nil {
				return
			}
			results, signing, err = e.sendOne(ctx, sess, msg)
		}
		info := sess.Info()
		if err != nil {
			sess.Close()
			sess = nil
			text := err.Error()
			if deliver.DuplicatePossible(err) {
				text += " (the message may have been delivered already: a duplicate is possible)"
			}
			// Recipients refused before the failure keep their own replies;
			// the rest share the connection's fate.
			judged := make(map[string]bool, len(results))
			for _, r := range results {
				judged[r.Rcpt] = true
			}
			for _, d := range msg {
				if !judged[d.Address] {
					results = append(results, deliver.RcptResult{Rcpt: d.Address, Text: text, Permanent: deliver.IsPermanent(err), Host: info.Host})
				}
			}
		} else if !sess.Usable() {
			sess.Close()
			sess = nil
		}
		e.record(ctx, s, msg, results, started, sts.fact(tlsFact(info)), signing)
	}
}

// dial opens a session for a group's remaining messages. When it cannot,
// it records the failure for all of them and returns the error.
func (e *Engine) dial(ctx context.Context, s config.Settings, cfg *deliver.Config, route deliver.Route, sts *stsRoute, rest [][]storage.Due, started time.Time) (*deliver.Session, error) {
	sess, err := deliver.Dial(ctx, cfg, route)
	if err != nil {
		// A connection or login failure is never the recipient's fault:
		// defer, as Postfix's soft bounce does, so that one wrong
		// smarthost password does not bounce the whole queue. It fails
		// the rest of the group too: dialling again for each message
		// would only repeat it, slowly.
		e.finish(ctx, s, slices.Concat(rest...), failure{err: sts.explain(err), started: started, tls: sts.note()})
		return nil, err
	}
	sts.observe(e, sess.Info())
	return sess, nil
}

func recipientIDs(msgs [][]storage.Due) []int64 {
	var ids []int64
	for _, m := range msgs {
		for _, d := range m {
			ids = append(ids, d.RecipientID)
		}
	}
	return ids
}

func byMessage(due []storage.Due) [][]storage.Due {
	var out [][]storage.Due
	for i := 0; i < len(due); {
		j := i + 1
		for j < len(due) && due[j].MessageID == due[i].MessageID {
			j++
		}
		out = append(out, due[i:j])
		i = j
	}
	return out
}

// sendOne sends one message on sess. signing says how it was signed, for
// the queue (recorded with the results).
func (e *Engine) sendOne(ctx context.Context, sess *deliver.Session, msg []storage.Due) (_ []deliver.RcptResult, signing string, _ error) {
	first := msg[0]
	body, err := e.loadBody(ctx, first)
	if err != nil {
		return nil, "", err
	}
	// Signing happens here, at delivery, after every change to the header.
	out, signing, done := e.signed(ctx, body)
	defer done()
	env := deliver.Envelope{
		From:     first.Sender,
		Size:     first.Size,
		EightBit: first.EightBit,
		SMTPUTF8: first.SMTPUTF8,
		Body:     out,
	}
	for _, d := range msg {
		env.To = append(env.To, d.Address)
	}
	results, err := sess.Send(ctx, env)
	return results, signing, err
}

func tlsFact(info deliver.ConnInfo) string {
	if !info.TLS {
		return ""
	}
	v := "not verified"
	if info.CertVerified {
		v = "verified"
	}
	return info.TLSVersion + " " + v
}

// failure is a whole-connection failure that applies to every recipient of
// a message (or of a group).
type failure struct {
	err       error
	permanent bool
	started   time.Time
	host      string
	tls       string
}

// finish records one failure for all of the given recipients.
func (e *Engine) finish(ctx context.Context, s config.Settings, due []storage.Due, f failure) {
	code := 0
	if f.permanent {
		code = 550
	}
	var results []deliver.RcptResult
	for _, d := range due {
		results = append(results, deliver.RcptResult{Rcpt: d.Address, Code: code, Text: f.err.Error(), Permanent: f.permanent, Host: f.host})
	}
	e.log.Warn("delivery failed", "domain", due[0].Domain, "recipients", len(due), "permanent", f.permanent, "err", f.err)
	e.lim.failed(&s, e.now(), hopKey(&s, due[0].Domain), f.err)
	e.record(ctx, s, due, results, f.started, f.tls, "")
}

// record turns per-recipient replies into queue states: 2xx sent, 5xx
// bounced, anything else deferred (or expired past the queue lifetime).
// signing, when not empty, is how the message was signed.
func (e *Engine) record(ctx context.Context, s config.Settings, due []storage.Due, replies []deliver.RcptResult, started time.Time, tls, signing string) {
	now := e.now()
	e.lim.finished(&s, now, hopKey(&s, due[0].Domain), due, replies)
	byRcpt := make(map[string]deliver.RcptResult, len(replies))
	for _, r := range replies {
		byRcpt[r.Rcpt] = r
	}
	lifetime := s.Delivery.QueueLifetime.Std()
	var results []storage.Result
	for _, d := range due {
		r, ok := byRcpt[d.Address]
		if !ok {
			r = deliver.RcptResult{Text: "no reply for this recipient"}
		}
		text := r.Text
		if r.Enhanced != "" && !strings.HasPrefix(text, r.Enhanced) {
			text = r.Enhanced + " " + text
		}
		res := storage.Result{RecipientID: d.RecipientID, At: now, Host: r.Host, Code: r.Code, Text: text,
			Duration: now.Sub(started), TLS: tls, DKIM: signing}
		expires := d.Start().Add(lifetime)
		switch {
		case r.Code >= 200 && r.Code < 300:
			res.State = storage.Sent
		case r.Permanent || r.Code >= 500:
			res.State, res.Notify = storage.Bounced, d.Sender != "" && !d.IsDSN
		case !now.Before(expires):
			res.State, res.Notify = storage.Expired, d.Sender != "" && !d.IsDSN
		default:
			res.State = storage.Deferred
			res.NextAttempt = now.Add(retryDelay(d.Attempts+1, s))
			if res.NextAttempt.After(expires) {
				res.NextAttempt = expires // one last try when the lifetime ends
			}
		}
		results = append(results, res)
	}
	// The outcome must be recorded even while shutting down, and a busy
	// or briefly failing database must not leave the recipients claimed
	// for the whole lease (and a delivered message sent again after it).
	if err := e.persist(ctx, "recording delivery results", func(ctx context.Context) error {
		return e.store.RecordResults(ctx, results)
	}); err != nil {
		return
	}
	for _, res := range results {
		if res.Notify {
			e.owedBounces.Store(true)
			break
		}
	}
	for i, res := range results {
		e.log.Info("delivery", "id", due[i].MessageID, "rcpt", due[i].Address, "state", res.State,
			"code", res.Code, "host", res.Host, "text", res.Text, "attempt", due[i].Attempts+1)
		e.publish(Event{Kind: EventDelivery, MessageID: due[i].MessageID, Recipient: due[i].Address,
			State: res.State, Code: res.Code, Text: res.Text})
	}
}

// persist runs a store write that must not be lost to a passing failure
// (a busy database, a full disk being cleared): it tries a few times over
// about ten seconds, even during shutdown, and logs the final error.
func (e *Engine) persist(ctx context.Context, what string, write func(context.Context) error) error {
	ctx = context.WithoutCancel(ctx)
	delay := 50 * time.Millisecond
	var err error
	for try := 1; ; try++ {
		if err = write(ctx); err == nil {
			return nil
		}
		if try == 5 {
			break
		}
		e.log.Warn(what+": will try again", "err", err, "try", try)
		time.Sleep(delay)
		delay *= 4
	}
	e.log.Error(what+": the claim's lease makes them due again", "err", err)
	return err
}

// retryDelay is the wait before attempt n (n >= 2 is a retry): it starts at
// retry_initial and doubles up to retry_max, then is spread by ±20% at
// random so that mail deferred together (after an outage, or a restart)
// does not all come back at the same instant.
func retryDelay(attempt int, s config.Settings) time.Duration {
	initial := s.Delivery.RetryInitial.Std()
	maxDelay := s.Delivery.RetryMax.Std()
	d := initial
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// sweepBounces queues one DSN per message for its failed recipients. It is
// serialised so that two workers never build a DSN for the same failure.
func (e *Engine) sweepBounces(ctx context.Context) {
	e.bounceMu.Lock()
	defer e.bounceMu.Unlock()
	e.owedBounces.Store(false)
	// A DSN that cannot be built or stored now is tried again at the
	// next sweep; it must not hold up the others.
	failed := make(map[int64]bool)
	defer func() {
		if len(failed) > 0 || ctx.Err() != nil {
			e.owedBounces.Store(true)
		}
	}()
	for ctx.Err() == nil {
		owed, err := e.store.OwedBounces(ctx, 50)
		if err != nil {
			e.log.Error("looking for owed bounces", "err", err)
			e.owedBounces.Store(true)
			return
		}
		progress := false
		for _, ob := range owed {
			if failed[ob.Message.ID] {
				continue
			}
			if err := e.bounce(ctx, ob); err != nil {
				e.log.Error("queueing a bounce", "id", ob.Message.ID, "err", err)
				failed[ob.Message.ID] = true
				continue
			}
			progress = true
		}
		if !progress {
			return
		}
	}
}

func (e *Engine) bounce(ctx context.Context, ob storage.OwedBounce) error {
	ids := make([]int64, len(ob.Recipients))
	for i, r := range ob.Recipients {
		ids[i] = r.RecipientID
	}
	if ob.Message.Sender == "" || ob.Message.IsDSN {
		// Mail from <> never bounces (RFC 5321 section 4.5.5).
		_, err := e.store.EnqueueBounce(ctx, nil, nil, ids)
		if errors.Is(err, storage.ErrNotOwed) {
			return nil
		}
		return err
	}
	report, err := e.buildDSN(ctx, ob)
	if err != nil {
		return err
	}
	now := e.now()
	m := &storage.NewMessage{
		Sender:     "",
		Recipients: []string{ob.Message.Sender},
		ClientAddr: "",
		ReceivedAt: now,
		Subject:    "Undelivered mail returned to sender",
		IsDSN:      true,
		SMTPUTF8:   ob.Message.SMTPUTF8,
	}
	id, err := e.store.EnqueueBounce(ctx, m, strings.NewReader(string(report)), ids)
	if errors.Is(err, storage.ErrNotOwed) {
		// Another process (a `postroom queue bounce` beside a running
		// relay) queued the DSN first.
		e.log.Info("bounce already queued elsewhere", "for", ob.Message.ID)
		return nil
	}
	if err != nil {
		return err
	}
	e.log.Info("bounce queued", "id", id, "for", ob.Message.ID, "to", ob.Message.Sender, "recipients", len(ids))
	e.publish(Event{Kind: EventBounce, MessageID: ob.Message.ID, Text: fmt.Sprintf("returned to %s", ob.Message.Sender)})
	e.Wake()
	return nil
}
