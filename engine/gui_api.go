package engine

// What the desktop window needs of the engine beyond what the command line
// uses: the queue's types under engine names (so the gui package never
// imports storage), the per-minute counters for the dashboard's chart, a
// connection test for the smarthost, a test message, and facts about this
// machine's network for the setup wizard.

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"postroom/engine/addr"
	"postroom/engine/config"
	"postroom/engine/deliver"
	"postroom/storage"
)

// Queue types under the engine's names, for the window.
type (
	// QueueFilter selects rows of the queue listing, in an order; the
	// last row's Cursor as its After gives the next page.
	QueueFilter = storage.Filter
	// QueueSort names an order of the listing.
	QueueSort = storage.Sort
	// QueueCursor is where a page of the listing ended.
	QueueCursor = storage.Cursor
	// QueueRow is one recipient of a queued message, with the message's facts.
	QueueRow = storage.Row
	// QueueState is a recipient's state.
	QueueState = storage.State
	// CounterPoint is one per-minute counter: "received", "sent",
	// "deferred", "bounced", "expired", or "refused:RULE".
	CounterPoint = storage.Counter
)

// The recipient states.
const (
	StateQueued    = storage.Queued
	StateSending   = storage.Sending
	StateDeferred  = storage.Deferred
	StateScheduled = storage.Scheduled
	StateHeld      = storage.Held
	StateSent      = storage.Sent
	StateBounced   = storage.Bounced
	StateExpired   = storage.Expired
)

// The orders of the queue listing (storage.Sort).
const (
	SortNewest    = storage.SortNewest
	SortState     = storage.SortState
	SortSender    = storage.SortSender
	SortRecipient = storage.SortRecipient
	SortSubject   = storage.SortSubject
	SortSize      = storage.SortSize
	SortAttempts  = storage.SortAttempts
	SortNextTry   = storage.SortNextTry
	SortProblem   = storage.SortProblem
	SortReceived  = storage.SortReceived
)

// CountMatching returns how many recipients the filter selects, counting
// at most limit (capped then says there are more): the window's "select
// all N matching". A filter of states alone costs one small read at any
// queue size.
func (e *Engine) CountMatching(ctx context.Context, f QueueFilter, limit int) (n int, capped bool, err error) {
	return e.store.CountMatching(ctx, f, limit)
}

// ApplyMatching performs a named queue action ("retry", "hold",
// "release", "delete", "bounce") on every recipient the filter selects,
// not only on a page: in short transactions, so mail keeps flowing
// meanwhile. Recipients being sent are left alone and counted in skipped.
// "schedule" applies to chosen messages only (Apply).
func (e *Engine) ApplyMatching(ctx context.Context, action string, f QueueFilter) (changed, skipped int, err error) {
	a, ok := actions[action]
	if !ok || a == storage.Schedule {
		return 0, 0, fmt.Errorf("the queue action %q cannot be applied to everything matching a filter", action)
	}
	reason := "held by the user"
	if a == storage.Bounce {
		reason = "returned to the sender by the relay's administrator"
	}
	changed, skipped, err = e.store.ApplyMatching(ctx, f, a, e.now(), reason)
	e.log.Info("queue action on everything matching", "action", action, "states", f.States, "text", f.Text,
		"changed", changed, "skipped", skipped, "err", err)
	if changed > 0 {
		if a == storage.Bounce {
			e.sweepBounces(ctx)
		}
		e.Wake()
	}
	return changed, skipped, err
}

// SettingsSaved reports whether settings were ever saved; the window shows
// the setup wizard when they were not.
func (e *Engine) SettingsSaved(ctx context.Context) (bool, error) {
	_, found, err := LoadSettings(ctx, e.store)
	return found, err
}

// Stats returns the per-minute counters from since on, oldest first.
// Refusals counted in memory since the last flush (at most 10 seconds ago)
// are written first, so the numbers shown are current.
func (e *Engine) Stats(ctx context.Context, since time.Time) ([]CounterPoint, error) {
	e.stats.flush(ctx, e)
	return e.store.Counters(ctx, since)
}

// TestSmarthost connects to the smarthost of s the way delivery does:
// TCP, then TLS as s says, then AUTH when a username is set, and hangs up.
// nil means mail would get through to the provider; an error says in plain
// words which step failed. s need not be saved, nor in smarthost mode.
func (e *Engine) TestSmarthost(ctx context.Context, s config.Settings) error {
	if strings.TrimSpace(s.Delivery.Smarthost) == "" {
		return errors.New("no server is filled in: enter the provider's server as host:port, for example smtp.gmail.com:587")
	}
	s.Delivery.Mode = "smarthost"
	cfg := e.transport(s)
	cfg.Routes = nil // the test is about the provider, whatever the routes say
	route, err := cfg.Route(ctx, "smarthost-test.invalid")
	if err != nil {
		return fmt.Errorf("the server %q is not usable: %w", s.Delivery.Smarthost, err)
	}
	sess, err := deliver.Dial(ctx, cfg, route)
	if err != nil {
		return plainSmarthostError(s.Delivery.Smarthost, err)
	}
	defer sess.Close()
	info := sess.Info()
	if s.Delivery.SmarthostUsername != "" && !info.Authenticated {
		return errors.New("connected, but the server did not log us in")
	}
	return nil
}

// plainSmarthostError turns a failed connection test into a sentence a
// small-business owner can act on, keeping the technical reason after it.
func plainSmarthostError(server string, err error) error {
	var (
		de      *deliver.Error
		dnsErr  *net.DNSError
		certErr x509.UnknownAuthorityError
		hostErr x509.HostnameError
	)
	switch {
	case errors.As(err, &de) && de.Code >= 400 && strings.Contains(err.Error(), "AUTH"):
		return fmt.Errorf("the provider refused the username or password; check them (some providers need an app password): %w", err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("the server name %s could not be found; check its spelling: %w", server, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing answers at %s; check the server name and port: %w", server, err)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Errorf("%s did not answer in time; a firewall may be blocking the port: %w", server, err)
	case errors.As(err, &certErr) || errors.As(err, &hostErr) || strings.Contains(err.Error(), "certificate"):
		return fmt.Errorf("the server's certificate could not be trusted, so the password was not sent: %w", err)
	case strings.Contains(err.Error(), "STARTTLS") || strings.Contains(err.Error(), "TLS"):
		return fmt.Errorf("a secure connection could not be set up; check the security setting (STARTTLS for port 587, TLS for 465): %w", err)
	case strings.Contains(err.Error(), "AUTH"):
		return fmt.Errorf("logging in failed: %w", err)
	}
	return fmt.Errorf("could not connect to %s: %w", server, err)
}

// SendTestMail queues a short test message to the given address, from the
// smarthost username when that is an address (providers refuse other
// senders) or else postmaster at the relay's host name. It returns the
// message's ID, whose recipient the window follows to "sent".
func (e *Engine) SendTestMail(ctx context.Context, to string) (int64, error) {
	rcpt, err := addr.Parse(strings.TrimSpace(to), addr.ParseOptions{RequireQuoting: true, SMTPUTF8: true})
	if err != nil {
		return 0, fmt.Errorf("%q is not an email address: %w", to, err)
	}
	s := e.Settings()
	sender := "postmaster@" + s.Hostname
	if u := s.Delivery.SmarthostUsername; s.Delivery.Mode == "smarthost" && strings.Contains(u, "@") {
		sender = u
	}
	now := e.now()
	var id [8]byte
	_, _ = rand.Read(id[:])
	messageID := fmt.Sprintf("<%x.test@%s>", id, s.Hostname)
	subject := "Postroom test message"
	body := "From: Postroom <" + sender + ">\r\n" +
		"To: <" + rcpt.String() + ">\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: " + now.Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: " + messageID + "\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"This is a test message from Postroom on " + s.Hostname + ".\r\n" +
		"If you can read it, mail sent through Postroom reaches this mailbox.\r\n"
	msg := &storage.NewMessage{
		Sender:     sender,
		Recipients: []string{rcpt.String()},
		ClientAddr: "127.0.0.1",
		ClientHelo: s.Hostname,
		ReceivedAt: now,
		Subject:    subject,
		MessageID:  messageID,
		SMTPUTF8:   rcpt.NeedsSMTPUTF8(),
	}
	mid, err := e.store.Enqueue(ctx, msg, strings.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("queueing the test message: %w", err)
	}
	e.log.Info("test message queued", "id", mid, "to", msg.Recipients[0], "from", sender)
	e.publish(Event{Kind: EventReceived, MessageID: mid, Text: subject})
	e.Wake()
	return mid, nil
}

// LocalNetwork is one network this machine is on.
type LocalNetwork struct {
	Interface string // "eth0"
	Address   string // this machine's address on it, "192.168.1.20"
	Network   string // the network as an access-list entry, "192.168.1.0/24"
}

// LocalNetworks lists the networks of this machine's interfaces that are
// up, loopback and link-local left out: the wizard offers them as
// networks whose devices may send, and the settings offer the addresses as
// source addresses.
func (e *Engine) LocalNetworks() ([]LocalNetwork, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	var out []LocalNetwork
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() {
				continue
			}
			ones, _ := ipn.Mask.Size()
			out = append(out, LocalNetwork{
				Interface: ifc.Name,
				Address:   ip.String(),
				Network:   netip.PrefixFrom(ip, ones).Masked().String(),
			})
		}
	}
	return out, nil
}

// CanListen reports whether the relay could listen on address and port:
// nil when it already does, or when a test listener could be opened there.
// The wizard uses it to offer port 2525 when 25 is taken or needs rights
// this user lacks.
func (e *Engine) CanListen(address string, port int) error {
	want := net.JoinHostPort(address, fmt.Sprint(port))
	if cur := e.ListenAddr(); cur != "" {
		if _, p, err := net.SplitHostPort(cur); err == nil && p == fmt.Sprint(port) {
			return nil
		}
	}
	ln, err := net.Listen("tcp", want)
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("port %d needs administrator rights on this computer: %w", port, err)
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("another program already uses port %d: %w", port, err)
		}
		return err
	}
	return ln.Close()
}
