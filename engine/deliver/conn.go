package deliver

import (
	"errors"
	"net"
	"strings"
	"time"
)

// trackConn is the raw connection of a session (under TLS when there is
// TLS). It gives every write a deadline, which neither go-smtp's Client
// nor the session's own commands (commands.go) set, so that a next hop
// that stops reading cannot hold a write forever.
type trackConn struct {
	net.Conn
	writeTimeout time.Duration
}

// Write sets a fresh write deadline.
func (c *trackConn) Write(p []byte) (int, error) {
	if c.writeTimeout > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	return c.Conn.Write(p)
}

// greetedConn replays a greeting before the real data, for a Client made on a
// connection that has just finished STARTTLS.
type greetedConn struct {
	net.Conn
	pre []byte
}

// Read returns the replayed greeting first.
func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.pre) > 0 {
		n := copy(p, g.pre)
		g.pre = g.pre[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// loginClient is the client side of the obsolete but common LOGIN
// mechanism. go-sasl's own sends the user name as an initial response and
// insists on the exact challenge "Password:", which not every server uses;
// this one sends no initial response and answers the challenges by what they
// ask for ("Username:", "Password:"), else by their order.
type loginClient struct {
	username, password string
	step               int
}

// Start implements sasl.Client.
func (a *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

// Next implements sasl.Client.
func (a *loginClient) Next(challenge []byte) ([]byte, error) {
	a.step++
	ch := strings.ToLower(string(challenge))
	switch {
	case strings.Contains(ch, "user"):
		return []byte(a.username), nil
	case strings.Contains(ch, "pass"):
		return []byte(a.password), nil
	case a.step == 1:
		return []byte(a.username), nil
	case a.step == 2:
		return []byte(a.password), nil
	}
	return nil, errors.New("unexpected AUTH LOGIN challenge")
}
