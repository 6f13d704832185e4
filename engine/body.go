package engine

import (
	"bytes"
	"container/list"
	"context"
	"io"
	"sync"

	"postroom/engine/msgdata"
	"postroom/storage"
)

// Message bodies on the way out.
//
// A delivery reads its message more than once: the header for the DKIM
// decision, then the body to sign (twice when signing) and to send. Read
// from SQLite each time, that was a tenth of the relay's CPU at 4 KiB and
// more at 100 KiB. So a body small enough is held in memory for the
// delivery: taken from bodyCache when it arrived moments ago (the usual
// case, since mail is delivered as soon as it is queued), else read from
// the store once. Larger bodies are streamed from the store, a chunk at a
// time, each time they are read, so a 25 MB message is never held whole.
//
// Bodies never change once stored, so a cached copy cannot be stale; the
// cache only saves reads, and everything in it is also on disk.

const (
	// bodyInMemory is the largest body a delivery holds in memory.
	bodyInMemory = 256 << 10
	// bodyCacheBytes bounds the cache of fresh bodies. Mail is usually
	// taken out within milliseconds; when delivery lags (a next hop is
	// down), the oldest bodies are dropped and read from the store later.
	bodyCacheBytes = 2 << 20
)

// bodyCache holds the bytes of recently queued messages, by message ID,
// until their first delivery takes them or newer ones push them out.
type bodyCache struct {
	mu    sync.Mutex
	limit int
	size  int
	byID  map[int64]*list.Element
	order list.List // of *cachedBody, oldest first
}

type cachedBody struct {
	id   int64
	data []byte
}

func newBodyCache(limit int) *bodyCache {
	return &bodyCache{limit: limit, byID: make(map[int64]*list.Element)}
}

// put keeps data, which the cache owns from now on, as message id's body.
func (c *bodyCache) put(id int64, data []byte) {
	if len(data) > c.limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.byID[id]; ok {
		c.drop(old)
	}
	c.byID[id] = c.order.PushBack(&cachedBody{id: id, data: data})
	c.size += len(data)
	for c.size > c.limit {
		c.drop(c.order.Front())
	}
}

// take removes and returns message id's body, or nil. Taking rather than
// reading keeps the cache to mail not yet tried: a retry, much later,
// reads the store.
func (c *bodyCache) take(id int64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return nil
	}
	c.drop(el)
	return el.Value.(*cachedBody).data
}

func (c *bodyCache) drop(el *list.Element) {
	b := c.order.Remove(el).(*cachedBody)
	delete(c.byID, b.id)
	c.size -= len(b.data)
}

// outBody is one message's stored bytes as one delivery reads them.
type outBody struct {
	data []byte // the whole body; nil when streamed
	// When streamed: the body as stored, and as it goes out.
	open, openOut func() (io.ReadCloser, error)
}

// loadBody returns the body of d's message for one delivery.
func (e *Engine) loadBody(ctx context.Context, d storage.Due) (*outBody, error) {
	if data := e.bodies.take(d.MessageID); data != nil {
		return &outBody{data: data}, nil
	}
	open := func() (io.ReadCloser, error) { return e.store.OpenBody(ctx, d.MessageID) }
	if d.Size > bodyInMemory {
		openOut := func() (io.ReadCloser, error) { return e.openOutbound(ctx, d.MessageID) }
		return &outBody{open: open, openOut: openOut}, nil
	}
	r, err := open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := bytes.NewBuffer(make([]byte, 0, d.Size+bytes.MinRead))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return &outBody{data: buf.Bytes()}, nil
}

// raw opens the body as stored.
func (b *outBody) raw() (io.ReadCloser, error) {
	if b.data != nil {
		return io.NopCloser(bytes.NewReader(b.data)), nil
	}
	return b.open()
}

// outbound opens the body as it goes out: with no line over 998 octets,
// whatever the client sent (msgdata.FoldLongLines). A body in memory whose
// lines all fit is passed on as it is.
func (b *outBody) outbound() (io.ReadCloser, error) {
	switch {
	case b.data == nil:
		return b.openOut()
	case msgdata.LinesFit(b.data):
		return io.NopCloser(bytes.NewReader(b.data)), nil
	}
	return io.NopCloser(msgdata.FoldLongLines(bytes.NewReader(b.data))), nil
}
