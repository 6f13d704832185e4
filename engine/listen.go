package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"postroom/engine/config"
)

// An acceptor owns one listening socket and hands its connections to
// whichever intake server is current. When the settings change, a new
// go-smtp server (with the new host name and limits) takes over the same
// socket at once, while the old one finishes its sessions: no connection
// is refused in between and the port is never closed.
type acceptor struct {
	ln    net.Listener
	conns chan net.Conn
	stop  chan struct{}
	once  sync.Once
}

func newAcceptor(ln net.Listener) *acceptor {
	a := &acceptor{ln: ln, conns: make(chan net.Conn), stop: make(chan struct{})}
	go a.loop()
	return a
}

func (a *acceptor) loop() {
	var delay time.Duration
	for {
		c, err := a.ln.Accept()
		if err != nil {
			select {
			case <-a.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				a.Close()
				return
			}
			// Out of file descriptors and the like: wait and go on, as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		a.handOver(c)
	}
}

func (a *acceptor) handOver(c net.Conn) {
	select {
	case a.conns <- c:
	case <-a.stop:
		c.Close()
	}
}

// Close closes the socket; connections already accepted go on.
func (a *acceptor) Close() error {
	var err error
	a.once.Do(func() {
		close(a.stop)
		err = a.ln.Close()
	})
	return err
}

func (a *acceptor) Addr() net.Addr { return a.ln.Addr() }

// listener is one server's view of the socket. Closing it (go-smtp does at
// shutdown) leaves the socket to the next server.
func (a *acceptor) listener() net.Listener {
	return &handoffListener{a: a, done: make(chan struct{})}
}

type handoffListener struct {
	a    *acceptor
	once sync.Once
	done chan struct{}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.a.conns:
		select {
		case <-l.done:
			// Closed while it waited: the connection is the next server's.
			go l.a.handOver(c)
			return nil, net.ErrClosed
		default:
			return c, nil
		}
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.a.stop:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.a.Addr() }

// The listening sockets, by kind.
const (
	sockMain       = iota // listen.port (or Options.Listener)
	sockSubmission        // listen.submission_port
	sockImplicit          // listen.tls_port
	sockKinds
)

// listenTCP opens a listening socket for SMTP clients. TCP keepalive is
// off: the guard already drops a client that stays silent (idle and data
// timeouts), and Go's default probes cost four system calls for every
// connection accepted.
func listenTCP(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// openSockets opens the sockets s asks for (or takes Options' test
// listeners). On error nothing is left open.
func (e *Engine) openSockets(s config.Settings) ([sockKinds]net.Listener, error) {
	var socks [sockKinds]net.Listener
	ln := e.opts.Listener
	if ln == nil {
		addr := net.JoinHostPort(s.Listen.Address, fmt.Sprint(s.Listen.Port))
		var err error
		if ln, err = listenTCP(addr); err != nil {
			return socks, fmt.Errorf("cannot listen on %s: %w", addr, err)
		}
	}
	submission, implicit, err := e.openTLSListeners(s.Listen.Address, s.Listen.SubmissionPort, s.Listen.TLSPort)
	if err != nil {
		ln.Close()
		return socks, err
	}
	socks[sockMain], socks[sockSubmission], socks[sockImplicit] = ln, submission, implicit
	return socks, nil
}

func closeAll(lns []net.Listener) {
	for _, l := range lns {
		if l != nil {
			l.Close()
		}
	}
}

// serveOn starts srv on every open socket. The caller holds e.mu.
func (e *Engine) serveOn(srv *smtpServer) {
	var views [sockKinds]net.Listener
	for k, a := range e.accept {
		if a != nil {
			views[k] = a.listener()
			srv.lns = append(srv.lns, views[k])
		}
	}
	go srv.serve(views[sockMain])
	srv.serveTLSListeners(views[sockSubmission], views[sockImplicit])
}

// reopenSockets opens the sockets whose address or port the new settings
// change; changed[k] with a nil socket means that kind is no longer
// served. Test listeners given in Options are kept whatever the settings.
func (e *Engine) reopenSockets(old, s config.Settings) (fresh [sockKinds]net.Listener, changed [sockKinds]bool, err error) {
	o, n := old.Listen, s.Listen
	sameAddr := o.Address == n.Address
	changed[sockMain] = e.opts.Listener == nil && !(sameAddr && o.Port == n.Port)
	changed[sockSubmission] = e.opts.SubmissionListener == nil && !(sameAddr && o.SubmissionPort == n.SubmissionPort)
	changed[sockImplicit] = e.opts.TLSListener == nil && !(sameAddr && o.TLSPort == n.TLSPort)
	ports := [sockKinds]int{n.Port, n.SubmissionPort, n.TLSPort}
	for k := range sockKinds {
		if !changed[k] || ports[k] == 0 {
			continue
		}
		addr := net.JoinHostPort(n.Address, fmt.Sprint(ports[k]))
		ln, lerr := listenTCP(addr)
		if lerr != nil {
			closeAll(fresh[:])
			return fresh, changed, fmt.Errorf("cannot listen on %s: %w", addr, lerr)
		}
		fresh[k] = ln
	}
	return fresh, changed, nil
}

// restartIntake puts a new SMTP server, built from the settings now in
// effect, on the sockets (the fresh ones where they changed). The old one
// takes no new connection once this returns and serves the sessions it
// has until they end (Shutdown ends them if they last). The caller holds
// applyMu.
func (e *Engine) restartIntake(fresh [sockKinds]net.Listener, changed [sockKinds]bool) {
	srv := newSMTPServer(e)
	e.mu.Lock()
	if e.accept[sockMain] == nil { // stopped meanwhile
		e.mu.Unlock()
		closeAll(fresh[:])
		return
	}
	var closing []*acceptor
	for k := range sockKinds {
		if !changed[k] {
			continue
		}
		if e.accept[k] != nil {
			closing = append(closing, e.accept[k])
			e.accept[k] = nil
		}
		if fresh[k] != nil {
			e.accept[k] = newAcceptor(fresh[k])
		}
	}
	old := e.server
	e.server = srv
	e.serveOn(srv)
	// Retired intakes whose sessions have all ended are let go.
	e.retired = slices.DeleteFunc(e.retired, func(r *smtpServer) bool {
		if r.sessionCount() > 0 {
			return false
		}
		r.srv.Close()
		return true
	})
	e.retired = append(e.retired, old)
	e.mu.Unlock()
	// From here on only the new server takes connections (a connection
	// caught in the old one's Accept is handed on).
	closeAll(old.lns)
	for _, a := range closing {
		a.Close()
	}
	e.log.Info("intake restarted with the new settings", "listen", e.ListenAddr())
}
