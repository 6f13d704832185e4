// Package engine is Postroom's mail relay: the SMTP server that takes mail
// in, the scheduler that delivers it (direct to MX or through a smarthost),
// retries, bounces, and the queue operations that the command line and the
// window offer. It keeps everything durable through a Store and publishes
// what happens as Events. It never imports the GUI toolkit.
//
// The life of a message:
//
//  1. A client's DATA is normalised (CRLF lines, no NUL) into a spool, a
//     Received header is put in front, and the whole is committed to the
//     store in one transaction before the client is told "250".
//  2. The scheduler wakes for new mail, for the earliest due retry and at
//     least every queue_scan_interval. It claims due recipients in batches,
//     groups them by next hop and hands each group to a worker; the number
//     of workers is bounded by delivery.max_connections.
//  3. A worker opens one connection for its group and sends each message
//     over it. Each recipient is judged on its own reply: 2xx is sent, 5xx
//     bounces, 4xx and network errors defer with an exponentially growing,
//     jittered delay (the jitter keeps a restart from retrying everything at
//     the same instant). Past queue_lifetime a failure expires instead.
//  4. Bounced and expired recipients are marked as owed a DSN. A sweep
//     builds one RFC 3464 report per message for what failed and queues it
//     in the same transaction that clears the debt, so the sender gets
//     exactly one. Mail from the null sender is never bounced.
//
// A crash at any point loses nothing that was acknowledged: claims left
// "sending" are released at the next start and sent again (at least once).
package engine

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"postroom/engine/config"
	"postroom/engine/deliver"
	"postroom/engine/mtasts"
	"postroom/engine/policy"
	"postroom/storage"
)

// Store is what the engine needs of durable storage. *storage.Store
// implements it; it asks for claims and pages, never for cursors, so that a
// PostgreSQL store can implement it too.
type Store interface {
	Enqueue(ctx context.Context, m *storage.NewMessage, body io.Reader) (int64, error)
	// Expect announces a message being received, for group commit
	// (storage.Store.Expect).
	Expect() (done func())
	OpenBody(ctx context.Context, messageID int64) (io.ReadCloser, error)
	// Due mail, less the destinations the sending limits hold back
	// (limits.go).
	ClaimDueExcept(ctx context.Context, now time.Time, limit int, lease time.Duration, exclude []string) ([]storage.Due, error)
	NextDueExcept(ctx context.Context, exclude []string) (time.Time, bool, error)
	Unclaim(ctx context.Context, recipientIDs []int64, at time.Time, reason string) (int, error)
	CountUserMessages(ctx context.Context, user string, since time.Time) (int, error)
	SetUserQuota(ctx context.Context, name string, perHour, perDay int) error
	ReleaseClaims(ctx context.Context, now time.Time) (int, error)
	// LockRun admits one running relay per queue (storage.LockRun).
	LockRun() (unlock func(), err error)
	PurgeFinished(ctx context.Context, cutoff time.Time) (int, error)
	RecordResults(ctx context.Context, results []storage.Result) error
	SetDKIM(ctx context.Context, messageID int64, dkim string) error
	OwedBounces(ctx context.Context, limit int) ([]storage.OwedBounce, error)
	EnqueueBounce(ctx context.Context, m *storage.NewMessage, body io.Reader, recipientIDs []int64) (int64, error)

	Message(ctx context.Context, id int64) (*storage.Message, error)
	Recipients(ctx context.Context, messageID int64) ([]storage.Recipient, error)
	Attempts(ctx context.Context, messageID int64) ([]storage.Attempt, error)
	List(ctx context.Context, f storage.Filter) ([]storage.Row, error)
	CountByState(ctx context.Context) (map[storage.State]int, error)
	Apply(ctx context.Context, messageID int64, action storage.Action, at, now time.Time, reason string) (int, error)
	ApplyMatching(ctx context.Context, f storage.Filter, action storage.Action, now time.Time, reason string) (changed, skipped int, err error)
	CountMatching(ctx context.Context, f storage.Filter, limit int) (n int, capped bool, err error)
	AddCounters(ctx context.Context, at time.Time, counts map[string]int) error
	Counters(ctx context.Context, since time.Time) ([]storage.Counter, error)

	SaveDKIMKey(ctx context.Context, k storage.DKIMKey) error
	DKIMKeys(ctx context.Context, domain string) ([]storage.DKIMKey, error)
	RemoveDKIMKey(ctx context.Context, domain, selector string) error

	AddUser(ctx context.Context, name, passwordHash string, now time.Time) error
	SetPassword(ctx context.Context, name, passwordHash string) error
	RemoveUser(ctx context.Context, name string) error
	Users(ctx context.Context) ([]storage.User, error)
	User(ctx context.Context, name string) (storage.User, error)

	Settings(ctx context.Context) (doc string, version int, found bool, err error)
	SettingsVersion(ctx context.Context) (version int, found bool, err error)
	SaveSettings(ctx context.Context, doc string, now time.Time) (int, error)
	Value(ctx context.Context, name string) ([]byte, bool, error)
	SetValue(ctx context.Context, name string, value []byte) error
}

// Options configure an Engine. Only Store is required.
type Options struct {
	Store  Store
	Logger *slog.Logger     // default: discard
	Now    func() time.Time // default: time.Now; tests inject a clock
	// SpoolDir holds message data being received that is larger than fits
	// in memory; default os.TempDir().
	SpoolDir string

	// For tests and special set-ups: the DNS resolver (default from the
	// delivery.resolver setting), the roots that verify next hops'
	// certificates (default: the system's), the port of MX hosts (25) and
	// the outbound dialer.
	Resolver deliver.Resolver
	RootCAs  *x509.CertPool
	MXPort   int
	Dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	// TXTResolver answers the DNS check's TXT lookups (default: the
	// system's resolver, or delivery.resolver).
	TXTResolver interface {
		LookupTXT(ctx context.Context, name string) ([]string, error)
	}
	// Listener, when set, replaces the listen address and port of the
	// settings (tests listen on 127.0.0.1:0).
	Listener net.Listener
	// SubmissionListener and TLSListener, when set, replace
	// listen.submission_port and listen.tls_port (and are served even
	// when those are 0).
	SubmissionListener net.Listener
	TLSListener        net.Listener
	// STSFetcher fetches MTA-STS policies (default: HTTPS from
	// mta-sts.DOMAIN); tests serve them from an in-test server.
	STSFetcher mtasts.Fetcher
	// CommandTimeout and DataTimeout bound the next hop's replies to each
	// command and to the final "." (0 = RFC 5321's 5 and 10 minutes);
	// tests of hanging next hops shorten them.
	CommandTimeout, DataTimeout time.Duration
}

// Engine is one relay. Create it with New; Start runs it; the queue and
// settings methods work whether or not it runs.
type Engine struct {
	opts  Options
	store Store
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	settings config.Settings
	version  int // of the stored settings in effect; 0 = defaults
	policy   *policy.Policy
	accept   [sockKinds]*acceptor // the listening sockets; nil when not served
	server   *smtpServer          // the current intake
	retired  []*smtpServer        // earlier intakes finishing their sessions after a settings change
	conns    *connState           // connection counts and AUTH failures, shared by every intake
	applyMu  sync.Mutex           // one SaveSettings at a time
	unlock   func()               // releases the run lock (Start, Shutdown)
	pauseMu  sync.RWMutex         // SetPaused against a dispatch in progress
	cancel   context.CancelFunc
	done     chan struct{}

	active   int        // delivery workers running
	bounceMu sync.Mutex // one bounce sweep at a time

	wake   chan struct{} // new mail or a queue change: look again now
	events *hub
	stats  *refusals
	lim    *limiter // sending limits and user quotas (limits.go)

	certs *certStore    // inbound TLS certificates (tls.go)
	sts   *mtasts.Cache // MTA-STS policies of recipient domains (sts.go)

	bodies *bodyCache    // fresh message bodies for their first delivery (body.go)
	keys   *keyCache     // DKIM signing keys by domain (dkim.go)
	hops   *deliver.Pool // outbound sessions kept for reuse (scheduler.go)
	// owedBounces says a DSN may be owed: a result asked for one, or a
	// sweep left one unsent (scheduler.go).
	owedBounces atomic.Bool
}

// New returns an engine on the given store. It reads nothing yet.
func New(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = os.TempDir()
	}
	e := &Engine{
		opts:   opts,
		store:  opts.Store,
		log:    opts.Logger,
		now:    opts.Now,
		wake:   make(chan struct{}, 1),
		events: newHub(),
		stats:  newRefusals(),
		conns:  newConnState(),
		lim:    newLimiter(),
		bodies: newBodyCache(bodyCacheBytes),
		keys:   newKeyCache(),
		hops:   deliver.NewPool(maxIdleSessions, sessionIdleFor),
	}
	e.certs = newCertStore(e)
	e.sts = newSTSCache(opts)
	return e
}

// Start loads the settings, releases claims left by a previous process,
// opens the listener and starts the scheduler. It returns once the relay
// accepts connections.
func (e *Engine) Start(ctx context.Context) error {
	if err := e.Load(ctx); err != nil {
		return err
	}
	s := e.Settings()
	if err := e.certs.prepare(ctx); err != nil {
		return err
	}
	// A second Postroom on the same queue must fail before it releases
	// claims: it would hand the first one's deliveries in flight to its
	// own scheduler and send them twice. The run lock says so; the port
	// the first one holds is a second guard.
	unlock, err := e.store.LockRun()
	if err != nil {
		return err
	}
	socks, err := e.openSockets(s)
	if err != nil {
		unlock()
		return err
	}
	n, err := e.store.ReleaseClaims(ctx, e.now())
	if err != nil {
		closeAll(socks[:])
		unlock()
		return fmt.Errorf("releasing interrupted deliveries: %w", err)
	}
	e.unlock = unlock
	if n > 0 {
		e.log.Info("deliveries interrupted by the last stop will be tried again", "recipients", n)
	}
	srv := newSMTPServer(e)
	e.mu.Lock()
	for i, ln := range socks {
		if ln != nil {
			e.accept[i] = newAcceptor(ln)
		}
	}
	e.server = srv
	e.serveOn(srv)
	e.mu.Unlock()

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.done = make(chan struct{})
	go func() {
		defer close(e.done)
		e.schedule(runCtx)
	}()
	go e.flushCounters(runCtx)
	go e.housekeep(runCtx)
	e.removeStaleSpool()
	e.log.Info("postroom started", "listen", socks[sockMain].Addr().String(), "submission", addrOf(socks[sockSubmission]),
		"tls", addrOf(socks[sockImplicit]), "mode", s.Delivery.Mode, "hostname", s.Hostname)
	e.publish(Event{Kind: EventStarted, Text: "listening on " + socks[sockMain].Addr().String()})
	return nil
}

// Load reads the settings in effect. Start calls it; the queue and settings
// methods need it when the engine does not run (the command line).
func (e *Engine) Load(ctx context.Context) error {
	s, version, err := loadSettings(ctx, e.store)
	if err != nil {
		return err
	}
	pol, err := newPolicy(&s)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.settings, e.policy, e.version = s, pol, version
	e.mu.Unlock()
	return nil
}

// Shutdown stops accepting connections and new deliveries, waits for
// sessions and deliveries in flight until ctx ends, and then abandons them
// (their claims are released at the next start).
func (e *Engine) Shutdown(ctx context.Context) error {
	// Stop accepting first, then end the sessions (of the current intake
	// and of any earlier one still finishing after a settings change).
	// applyMu: a settings change in progress completes first, and none
	// starts a new intake afterwards.
	e.applyMu.Lock()
	e.mu.Lock()
	if e.server == nil {
		e.mu.Unlock()
		e.applyMu.Unlock()
		return nil
	}
	for i, a := range e.accept {
		if a != nil {
			a.Close()
			e.accept[i] = nil
		}
	}
	servers := append(e.retired, e.server)
	e.server, e.retired = nil, nil
	e.mu.Unlock()
	e.applyMu.Unlock()
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Go(func() {
			if err := srv.shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	e.cancel()
	select {
	case <-e.done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("deliveries still running at shutdown: %w", ctx.Err()))
	}
	e.stats.flush(context.WithoutCancel(ctx), e)
	e.unlock()
	e.log.Info("postroom stopped")
	return errors.Join(errs...)
}

// ListenAddr is the address the SMTP server listens on, or "" when it does
// not run.
func (e *Engine) ListenAddr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.accept[sockMain] == nil {
		return ""
	}
	return e.accept[sockMain].Addr().String()
}

// Settings returns the settings in effect.
func (e *Engine) Settings() config.Settings {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.settings
}

// Wake asks the scheduler to look at the queue now.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

const pausedKey = "paused"

// Paused reports whether sending is paused.
func (e *Engine) Paused(ctx context.Context) (bool, error) {
	v, found, err := e.store.Value(ctx, pausedKey)
	return found && string(v) == "1", err
}

// SetPaused stops or restarts all sending; intake goes on. The setting is
// kept across restarts.
func (e *Engine) SetPaused(ctx context.Context, paused bool) error {
	var v []byte
	if paused {
		v = []byte("1")
	}
	e.pauseMu.Lock()
	err := e.store.SetValue(ctx, pausedKey, v)
	e.pauseMu.Unlock()
	if err != nil {
		return err
	}
	e.log.Info("sending paused by the user", "paused", paused)
	e.publish(Event{Kind: EventPaused, Paused: paused})
	e.Wake()
	return nil
}

func newPolicy(s *config.Settings) (*policy.Policy, error) {
	a := s.Access
	return policy.New(a.TrustedNetworks, a.BlockedNetworks, a.AllowedSenders, a.BlockedSenders, a.AllowedRecipients, a.BlockedRecipients)
}
