package engine

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// A session that ends with QUIT is closed by go-smtp without another Read;
// Close must give the 16 KiB read buffer back all the same, or every
// connection allocates a new one.
func TestGuardCloseGivesTheReadBufferBack(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	defer client.Close()
	g := newGuardConn(server, guardLimits{refused: func(string) {}})
	go client.Write([]byte("QUIT\r\n"))
	p := make([]byte, 64)
	if n, err := g.Read(p); err != nil || string(p[:n]) != "QUIT\r\n" {
		t.Fatalf("read %q, %v", p[:n], err)
	}
	if g.store == nil {
		t.Fatal("no read buffer while reading: the test no longer measures what it should")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if g.store != nil {
		t.Error("Close kept the read buffer")
	}
	if _, err := g.Read(p); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
}

// A Read blocked in one goroutine while another closes the connection
// keeps its buffer until the closed connection fails it, then gives it
// back (go test -race checks that the two never touch it at once).
func TestGuardCloseDuringReadLeavesTheBufferToRead(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	defer client.Close()
	g := newGuardConn(server, guardLimits{refused: func(string) {}})
	done := make(chan error, 1)
	go func() {
		_, err := g.Read(make([]byte, 64))
		done <- err
	}()
	for g.reading.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || errors.Is(err, io.ErrShortBuffer) {
			t.Fatalf("the blocked Read returned %v after Close", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked Read did not end when the connection was closed")
	}
	if g.store != nil || g.reading.Load() != 0 {
		t.Errorf("after the failed Read: buffer kept %v, reading %d", g.store != nil, g.reading.Load())
	}
}
