package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"postroom/storage"
)

// `queue list --sort` sorts the whole queue, across the pages it reads
// internally (500 rows each), and --reverse turns the order round.
func TestQueueListSortsTheWholeQueue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := storage.Open(context.Background(), filepath.Join(dir, storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	var rcpts []string
	for i := range 510 {
		rcpts = append(rcpts, fmt.Sprintf("r%03d@example.net", (i*7)%510)) // shuffled
	}
	_, err = st.Enqueue(context.Background(), &storage.NewMessage{Sender: "a@example.org", Recipients: rcpts, ReceivedAt: time.Now()},
		strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	list := func(args ...string) []string {
		t.Helper()
		code, out, errOut := runIn("", append([]string{"queue", "list", "--json", "--data", dir}, args...)...)
		if code != 0 {
			t.Fatalf("queue list %v: exit %d: %s", args, code, errOut)
		}
		var rows []struct{ Recipient string }
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("queue list %v: %v", args, err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, r.Recipient)
		}
		return got
	}
	want := slices.Sorted(slices.Values(rcpts))
	if got := list("--sort", "recipient"); !slices.Equal(got, want) {
		t.Errorf("--sort recipient lists %d rows, first %v; want all 510 in order", len(got), got[:min(3, len(got))])
	}
	slices.Reverse(want)
	if got := list("--sort", "recipient", "--reverse"); !slices.Equal(got, want) {
		t.Errorf("--sort recipient --reverse lists %d rows, first %v; want all 510 in reverse order", len(got), got[:min(3, len(got))])
	}
	if code, _, errOut := runIn("", "queue", "list", "--sort", "colour", "--data", dir); code != 2 || !strings.Contains(errOut, `"colour"`) {
		t.Errorf("--sort colour: exit %d, %q; want exit 2 naming it", code, errOut)
	}
}
