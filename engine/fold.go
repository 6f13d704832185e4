package engine

import (
	"context"
	"io"

	"postroom/engine/msgdata"
)

// openOutbound opens a stored message as it goes out: with no line over
// 998 octets, whatever the client sent (msgdata.FoldLongLines).
func (e *Engine) openOutbound(ctx context.Context, messageID int64) (io.ReadCloser, error) {
	r, err := e.store.OpenBody(ctx, messageID)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{msgdata.FoldLongLines(r), r}, nil
}
