package engine

// SMTP AUTH: the accounts that may relay from anywhere, and the guard
// against password guessing.
//
// Passwords are stored as bcrypt hashes (cost 11). bcrypt rather than
// argon2id because a relay verifies passwords on demand for whoever
// connects: argon2id at its recommended 64 MiB per verification would let
// max_connections guessers hold gigabytes of memory, while bcrypt needs a
// few kilobytes and only CPU time, which the lock-out below bounds. bcrypt
// reads at most 72 bytes, so longer passwords are refused when set rather
// than silently cut.
//
// User names are case-insensitive: they are stored and matched in lower
// case, because people type "Scanner" and "scanner" for the same device.
//
// AUTH (PLAIN and LOGIN) is offered on TLS connections, and on plain-text
// connections from this computer (loopback) when listen.auth_without_tls is
// set; nowhere else, so a password never crosses the network in clear.
//
// Guessing is slowed on two levels:
//   - a connection may fail three times; the third failure is answered
//     "421 4.7.0" and the connection is closed;
//   - failures are remembered engine-wide, in memory, per client address
//     (per /64 for IPv6) and per user name. Five failures within 15 minutes
//     lock that address or name out for a minute, and each further lock-out
//     doubles, up to an hour. While locked out, even the right password is
//     answered "454 4.7.0 Temporary authentication failure" (RFC 4954's
//     code for a temporary failure: a mail client keeps the message and
//     tries again later instead of telling the user the password is wrong),
//     and the password is not even checked. A success clears the user
//     name's record; the address's stays, so one good account cannot be
//     used to reset the count of guesses at others.
//
// The per-name lock-out lets someone who knows a user name keep that user
// out by guessing; the per-address one can lock out an office behind one
// NAT address. Both last at most an hour and end by themselves; the log
// names the address and the user of every failure so the cause can be found.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"postroom/storage"
)

const (
	// bcryptCost makes one verification take about 0.1 s on a current PC.
	bcryptCost = 11
	// dummyHash is checked against when the user does not exist, so that
	// an unknown name takes as long to refuse as a wrong password and the
	// timing does not tell which names exist. Its password is random and
	// forgotten.
	dummyHash = "$2a$11$jUfIMfhFmjivWdYJRf7JzulAh95CFaydb5w/Vsvw3iZJh.lW.Sveq"

	maxUserNameRunes  = 64
	minPasswordRunes  = 8
	maxPasswordBytes  = 72 // what bcrypt reads
	authConnFailures  = 3  // failures on one connection before it is closed
	authFailLimit     = 5  // failures within authFailWindow that lock out
	authFailWindow    = 15 * time.Minute
	authLockFirst     = time.Minute
	authLockMax       = time.Hour
	authForgetAfter   = 24 * time.Hour // a record this quiet is dropped, lock-out level and all
	authMaxRecords    = 10000          // bounds the memory an attacker can make us hold
	authLogNameLength = 100            // longer user names are cut in the log
)

var (
	errAuthInvalid    = smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
	errAuthLockedOut  = smtpErr(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure, try again later")
	errAuthTooMany    = smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentication attempts")
	errAuthNeedsTLS   = smtpErr(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for authentication from other computers")
	errAuthMalformed  = smtpErr(501, smtp.EnhancedCode{5, 5, 2}, "Malformed authentication response")
	errAuthIdentity   = smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Authorization identity must be empty or the user name")
	errAuthUnexpected = smtpErr(501, smtp.EnhancedCode{5, 5, 2}, "Unexpected authentication response")
)

// User is an account that may authenticate to relay mail, as the command
// line and the window show it (never with its password hash).
type User struct {
	Name string
	// PerHour and PerDay cap the messages the user may send; 0 = no cap.
	PerHour, PerDay int
	Created         time.Time
}

// AddUser creates a user with a password. The name is stored in lower
// case; it fails when the name is taken (storage.ErrUserExists), invalid,
// or the password too short or too long.
func (e *Engine) AddUser(ctx context.Context, name, password string) error {
	name, err := canonicalUserName(name)
	if err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	if err := e.store.AddUser(ctx, name, hash, e.now()); err != nil {
		return err
	}
	e.log.Info("user added", "user", name)
	return nil
}

// SetPassword replaces a user's password.
func (e *Engine) SetPassword(ctx context.Context, name, password string) error {
	name, err := canonicalUserName(name)
	if err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	if err := e.store.SetPassword(ctx, name, hash); err != nil {
		return noSuchUser(name, err)
	}
	e.log.Info("password changed", "user", name)
	return nil
}

// RemoveUser deletes a user; it fails, wrapping storage.ErrNotFound, when
// there is none of that name.
func (e *Engine) RemoveUser(ctx context.Context, name string) error {
	name, err := canonicalUserName(name)
	if err != nil {
		return err
	}
	if err := e.store.RemoveUser(ctx, name); err != nil {
		return noSuchUser(name, err)
	}
	e.log.Info("user removed", "user", name)
	return nil
}

// Users returns every user, ordered by name.
func (e *Engine) Users(ctx context.Context) ([]User, error) {
	stored, err := e.store.Users(ctx)
	if err != nil {
		return nil, err
	}
	users := make([]User, len(stored))
	for i, u := range stored {
		users[i] = User{Name: u.Name, PerHour: u.PerHour, PerDay: u.PerDay, Created: u.Created}
	}
	return users, nil
}

func noSuchUser(name string, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		// The store's error names the user too; say it once.
		return fmt.Errorf("there is no user %q (see `postroom user list`): %w", name, storage.ErrNotFound)
	}
	return err
}

// canonicalUserName folds a user name to lower case and checks it: 1 to
// 64 characters of UTF-8, without spaces or control characters (which
// would make it impossible to type in a mail client or to read in a log).
func canonicalUserName(name string) (string, error) {
	name = strings.ToLower(name)
	n := utf8.RuneCountInString(name)
	switch {
	case n == 0:
		return "", errors.New("the user name is empty")
	case n > maxUserNameRunes:
		return "", fmt.Errorf("the user name is %d characters long; at most %d are allowed", n, maxUserNameRunes)
	case !utf8.ValidString(name):
		return "", errors.New("the user name is not valid UTF-8")
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return "", fmt.Errorf("the user name %q contains a space or a control character", name)
	}
	return name, nil
}

func hashPassword(password string) (string, error) {
	switch {
	case utf8.RuneCountInString(password) < minPasswordRunes:
		return "", fmt.Errorf("the password is too short: use at least %d characters", minPasswordRunes)
	case len(password) > maxPasswordBytes:
		return "", fmt.Errorf("the password is too long: at most %d bytes are used by the hash", maxPasswordBytes)
	case strings.IndexFunc(password, unicode.IsControl) >= 0:
		// A NUL can never be sent in AUTH PLAIN, and line breaks are not
		// typed into a mail client's password field.
		return "", errors.New("the password contains a control character")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hashing the password: %w", err)
	}
	return string(hash), nil
}

// AuthMechanisms implements smtp.AuthSession: PLAIN and LOGIN where AUTH is
// allowed, nothing elsewhere (so EHLO does not advertise AUTH).
func (s *session) AuthMechanisms() []string {
	if !s.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.authAllowed() {
		// go-smtp always asks (it cannot see the guard's TLS, so it is
		// told AllowInsecureAuth): plain text is refused here.
		return nil, errAuthNeedsTLS
	}
	switch mech {
	case sasl.Plain:
		return &plainServer{authenticate: s.authenticate}, nil
	case sasl.Login:
		return &loginServer{authenticate: s.authenticate}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authAllowed: over TLS, or in plain text from loopback when
// listen.auth_without_tls is set.
func (s *session) authAllowed() bool {
	if _, ok := tlsStateOf(s.conn); ok {
		return true
	}
	return s.ip.IsLoopback() && s.e.Settings().Listen.AuthWithoutTLS
}

// authenticate checks a user name and password for this session. The
// error is the reply go-smtp sends.
func (s *session) authenticate(name, password string) error {
	e := s.e
	now := e.now()
	limiter := &e.conns.auth
	user, nameErr := canonicalUserName(name)
	if nameErr != nil {
		user = name // for the log; no such user can exist
	}
	keys := []string{addressKey(s.ip)}
	if nameErr == nil {
		keys = append(keys, "user:"+user)
	}
	if until := limiter.lockedUntil(now, keys...); now.Before(until) {
		return s.authFailed(user, "locked out until "+until.Format(time.RFC3339), errAuthLockedOut)
	}

	hash, reason := dummyHash, "unknown user"
	if nameErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		u, err := e.store.User(ctx, user)
		cancel()
		switch {
		case err == nil:
			hash, reason = u.PasswordHash, "wrong password"
		case !errors.Is(err, storage.ErrNotFound):
			e.log.Error("reading a user for AUTH", "user", user, "client", s.ip.String(), "err", err)
			return errAuthLockedOut // the same temporary reply: try again later
		}
	}
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	if err == nil && hash != dummyHash {
		limiter.forget("user:" + user)
		s.authUser = user
		e.log.Info("authenticated", "user", user, "client", s.ip.String())
		return nil
	}
	if err != nil && !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) && hash != dummyHash {
		e.log.Error("the stored password hash cannot be read; set the password again", "user", user, "err", err)
	}
	if until := limiter.fail(now, keys...); now.Before(until) {
		reason += "; now locked out until " + until.Format(time.RFC3339)
	}
	return s.authFailed(user, reason, errAuthInvalid)
}

// authFailed logs and counts one refused AUTH and returns its reply; the
// last one a connection may have closes it.
func (s *session) authFailed(user, reason string, reply *smtp.SMTPError) error {
	e := s.e
	s.authFailures++
	if len(user) > authLogNameLength {
		user = user[:authLogNameLength] + "..."
	}
	e.log.Warn("authentication failed", "user", user, "client", s.ip.String(), "reason", reason, "failures_on_connection", s.authFailures)
	e.stats.add("auth")
	e.publish(Event{Kind: EventRefused, Text: fmt.Sprintf("%s failed to authenticate as %q", s.ip, user)})
	if s.authFailures < authConnFailures {
		return reply
	}
	// go-smtp writes the error Next returns and reads the next command; it
	// has no way to close after the reply. So the 421 is written here, on
	// the connection itself (go-smtp's writer flushes every reply, so
	// nothing of its own is pending), and the connection is closed; the
	// copy go-smtp then writes goes nowhere, and its read loop ends.
	c := s.conn.Conn()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, fmt.Sprintf("%d %d.%d.%d %s\r\n", errAuthTooMany.Code, errAuthTooMany.EnhancedCode[0],
		errAuthTooMany.EnhancedCode[1], errAuthTooMany.EnhancedCode[2], errAuthTooMany.Message))
	s.conn.Close()
	return errAuthTooMany
}

// addressKey is the lock-out record of a client address: the address for
// IPv4, its /64 for IPv6 (one host usually holds a whole /64).
func addressKey(ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return "net:" + p.String()
	}
	return "ip:" + ip.String()
}

// plainServer is the PLAIN mechanism (RFC 4616), like go-sasl's but with
// SMTP replies for malformed input and no acting as another user.
type plainServer struct {
	done         bool
	authenticate func(user, password string) error
}

func (p *plainServer) Next(response []byte) (challenge []byte, done bool, err error) {
	if p.done {
		return nil, true, errAuthUnexpected
	}
	if response == nil { // no initial response: ask with an empty challenge
		return []byte{}, false, nil
	}
	p.done = true
	parts := bytes.Split(response, []byte{0})
	if len(parts) != 3 {
		return nil, true, errAuthMalformed
	}
	identity, user, password := string(parts[0]), string(parts[1]), string(parts[2])
	if identity != "" && !strings.EqualFold(identity, user) {
		return nil, true, errAuthIdentity
	}
	return nil, true, p.authenticate(user, password)
}

// loginServer is the LOGIN mechanism (draft-murchison-sasl-login): the
// server asks "Username:" then "Password:"; a client may send the user
// name as its initial response.
type loginServer struct {
	step         int
	user         string
	authenticate func(user, password string) error
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.authenticate(l.user, string(response))
	}
	return nil, true, errAuthUnexpected
}

// authLimiter remembers failed AUTH attempts by client address and by user
// name, engine-wide, in memory. Its zero value is ready to use.
type authLimiter struct {
	mu      sync.Mutex
	records map[string]*authRecord
}

type authRecord struct {
	failures    int       // within the window that began at windowStart
	windowStart time.Time //
	lockouts    int       // so far; each doubles the next lock-out
	lockedUntil time.Time
	last        time.Time // the latest failure
}

// lockedUntil returns the latest end of a lock-out among keys (zero when
// none is locked).
func (l *authLimiter) lockedUntil(now time.Time, keys ...string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var until time.Time
	for _, k := range keys {
		if r := l.records[k]; r != nil && r.lockedUntil.After(until) {
			until = r.lockedUntil
		}
	}
	return until
}

// fail records one failure for each key and returns the latest lock-out
// end among them.
func (l *authLimiter) fail(now time.Time, keys ...string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.records == nil {
		l.records = make(map[string]*authRecord)
	}
	var until time.Time
	for _, k := range keys {
		r := l.records[k]
		if r == nil {
			l.makeRoom(now)
			r = &authRecord{windowStart: now}
			l.records[k] = r
		}
		if now.Sub(r.last) > authForgetAfter {
			*r = authRecord{windowStart: now} // long quiet: start afresh
		}
		if now.Sub(r.windowStart) > authFailWindow {
			r.failures, r.windowStart = 0, now
		}
		r.failures++
		r.last = now
		if r.failures >= authFailLimit {
			r.lockouts++
			r.lockedUntil = now.Add(lockoutDuration(r.lockouts))
			r.failures, r.windowStart = 0, now
		}
		if r.lockedUntil.After(until) {
			until = r.lockedUntil
		}
	}
	return until
}

// lockoutDuration is the length of the n-th lock-out (n >= 1).
func lockoutDuration(n int) time.Duration {
	d := authLockFirst
	for i := 1; i < n && d < authLockMax; i++ {
		d *= 2
	}
	return min(d, authLockMax)
}

// forget drops a key's record (after a success).
func (l *authLimiter) forget(key string) {
	l.mu.Lock()
	delete(l.records, key)
	l.mu.Unlock()
}

// makeRoom keeps the map below authMaxRecords: it drops records quiet for
// authForgetAfter, and when that is not enough, the one whose last failure
// is oldest. A full map is rare (an attack from many addresses), so the
// scan is cheap next to the bcrypt verification every failure costs.
func (l *authLimiter) makeRoom(now time.Time) {
	if len(l.records) < authMaxRecords {
		return
	}
	var oldestKey string
	var oldest time.Time
	for k, r := range l.records {
		if now.Sub(r.last) > authForgetAfter {
			delete(l.records, k)
			continue
		}
		if oldestKey == "" || r.last.Before(oldest) {
			oldestKey, oldest = k, r.last
		}
	}
	if len(l.records) >= authMaxRecords {
		delete(l.records, oldestKey)
	}
}
