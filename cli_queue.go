package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"postroom/engine"
	"postroom/storage"
)

func cmdQueue(args []string, std stdio) error {
	c := newCommand("queue", "queue list|show|retry|hold|release|delete|bounce|schedule|pause|resume ...", std)
	asJSON := c.fs.Bool("json", false, "list: print one JSON array")
	state := c.fs.String("state", "", "list: only these states (comma-separated: queued,deferred,held,scheduled,sending,sent,bounced,expired)")
	limit := c.fs.Int("limit", 0, "list: at most this many rows (0 = all)")
	sortBy := c.fs.String("sort", "", "list: sort the whole queue by newest (the default), "+sortNames())
	reverse := c.fs.Bool("reverse", false, "list: the other way round (descending; with newest, oldest first)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return &usageError{"queue needs a subcommand: list, show, retry, hold, release, delete, bounce, schedule, pause or resume"}
	}
	ctx := context.Background()
	sub, rest := pos[0], pos[1:]
	// Check the arguments before touching the database.
	var ids []int64
	var at time.Time
	switch sub {
	case "list", "pause", "resume":
		if len(rest) > 0 {
			return &usageError{"queue " + sub + " takes no arguments"}
		}
	case "show", "retry", "hold", "release", "delete", "bounce", "schedule":
		idArgs := rest
		if sub == "schedule" {
			if len(rest) != 2 {
				return &usageError{"usage: queue schedule ID TIME (TIME in RFC 3339, e.g. 2026-12-01T09:00:00+01:00)"}
			}
			if at, err = time.Parse(time.RFC3339, rest[1]); err != nil {
				return &usageError{fmt.Sprintf("bad time %q: use RFC 3339, e.g. 2026-12-01T09:00:00+01:00", rest[1])}
			}
			idArgs = rest[:1]
		}
		if len(idArgs) == 0 || sub == "show" && len(idArgs) != 1 {
			return &usageError{fmt.Sprintf("usage: queue %s ID", sub)}
		}
		for _, a := range idArgs {
			id, err := strconv.ParseInt(a, 10, 64)
			if err != nil || id <= 0 {
				return &usageError{fmt.Sprintf("bad message ID %q: IDs are the numbers in `postroom queue list`", a)}
			}
			ids = append(ids, id)
		}
	default:
		return &usageError{fmt.Sprintf("unknown queue subcommand %q", sub)}
	}
	sortOrder, err := storage.ParseSort(*sortBy)
	if err != nil {
		return &usageError{err.Error()}
	}
	var states []storage.State
	if *state != "" {
		for _, s := range strings.Split(*state, ",") {
			st := storage.State(strings.TrimSpace(s))
			if !validState(st) {
				return &usageError{fmt.Sprintf("unknown state %q", s)}
			}
			states = append(states, st)
		}
	}

	st, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	eng := engine.New(engine.Options{Store: st})
	if err := eng.Load(ctx); err != nil {
		return err
	}
	switch sub {
	case "list":
		return queueList(ctx, eng, std, storage.Filter{States: states, Sort: sortOrder, Reverse: *reverse}, *limit, *asJSON)
	case "show":
		return queueShow(ctx, eng, std, ids[0])
	case "pause", "resume":
		if err := eng.SetPaused(ctx, sub == "pause"); err != nil {
			return err
		}
		if sub == "pause" {
			fmt.Fprintln(std.out, "Sending is paused. Mail is still accepted and waits in the queue; `postroom queue resume` sends it.")
		} else {
			fmt.Fprintln(std.out, "Sending resumed.")
		}
		return nil
	}
	var failed []error
	for _, id := range ids {
		if err := eng.Apply(ctx, sub, id, at); err != nil {
			failed = append(failed, err)
			continue
		}
		fmt.Fprintf(std.out, "%s: %d\n", pastTense[sub], id)
	}
	return errors.Join(failed...)
}

var pastTense = map[string]string{
	"retry": "will retry now", "hold": "held", "release": "released", "delete": "deleted",
	"bounce": "returned to sender", "schedule": "scheduled",
}

// sortNames lists the columns --sort takes.
func sortNames() string {
	names := make([]string, len(storage.Sorts))
	for i, s := range storage.Sorts {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func validState(s storage.State) bool {
	for _, st := range storage.States {
		if st == s {
			return true
		}
	}
	return false
}

// listRow is one element of `queue list --json`; its field names are part
// of the command line's stable contract.
type listRow struct {
	ID          int64      `json:"id"`
	RecipientID int64      `json:"recipient_id"`
	Sender      string     `json:"sender"`
	Recipient   string     `json:"recipient"`
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	NextAttempt *time.Time `json:"next_attempt"`
	LastCode    int        `json:"last_code"`
	LastError   string     `json:"last_error"`
	Subject     string     `json:"subject"`
	Size        int64      `json:"size"`
	ReceivedAt  time.Time  `json:"received_at"`
	AuthUser    string     `json:"auth_user"`
	HeldReason  string     `json:"held_reason,omitempty"`
}

// queueList pages through the queue with keyset paging, so even a huge
// queue streams out in constant memory.
func queueList(ctx context.Context, eng *engine.Engine, std stdio, f storage.Filter, limit int, asJSON bool) error {
	var tw *tabwriter.Writer
	var enc *json.Encoder
	if asJSON {
		fmt.Fprint(std.out, "[")
		enc = json.NewEncoder(std.out)
	} else {
		tw = tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tTRIES\tNEXT TRY\tSENDER\tRECIPIENT\tLAST ERROR")
	}
	printed := 0
	for {
		f.Limit = 500
		if limit > 0 {
			f.Limit = min(f.Limit, limit-printed)
		}
		rows, err := eng.List(ctx, f)
		if err != nil {
			return err
		}
		for _, r := range rows {
			lr := listRow{ID: r.MessageID, RecipientID: r.ID, Sender: r.Sender, Recipient: r.Address, State: string(r.State),
				Attempts: r.Attempts, LastCode: r.LastCode, LastError: r.LastError, Subject: r.Subject, Size: r.Size,
				ReceivedAt: r.ReceivedAt.UTC(), AuthUser: r.AuthUser, HeldReason: r.HeldReason}
			if !r.NextAttempt.IsZero() {
				t := r.NextAttempt.UTC()
				lr.NextAttempt = &t
			}
			if asJSON {
				if printed > 0 {
					fmt.Fprint(std.out, ",")
				}
				if err := enc.Encode(lr); err != nil {
					return err
				}
			} else {
				next := "-"
				if lr.NextAttempt != nil {
					next = lr.NextAttempt.Local().Format("2006-01-02 15:04:05")
				}
				sender := lr.Sender
				if sender == "" {
					sender = "<>"
				}
				last := lr.LastError
				if lr.HeldReason != "" { // why it waits (a user's hold, a pause, a limit) says more
					last = strings.TrimSuffix(lr.HeldReason+"; "+last, "; ")
				}
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", lr.ID, lr.State, lr.Attempts, next, sender, lr.Recipient, oneLine(last, 80))
			}
			printed++
		}
		if len(rows) < f.Limit || (limit > 0 && printed >= limit) {
			break
		}
		f.After = rows[len(rows)-1].Cursor
	}
	if asJSON {
		fmt.Fprintln(std.out, "]")
		return nil
	}
	return tw.Flush()
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

func queueShow(ctx context.Context, eng *engine.Engine, std stdio, id int64) error {
	d, err := eng.Show(ctx, id)
	if err != nil {
		return err
	}
	m := d.Message
	sender := m.Sender
	if sender == "" {
		sender = "<> (a delivery report)"
	}
	w := std.out
	fmt.Fprintf(w, "Message %d\n", m.ID)
	fmt.Fprintf(w, "  From (envelope): %s\n", sender)
	fmt.Fprintf(w, "  Received:        %s from %s (%s)\n", m.ReceivedAt.Local().Format(time.RFC3339), m.ClientAddr, m.ClientHelo)
	if m.AuthUser != "" {
		fmt.Fprintf(w, "  Authenticated:   %s\n", m.AuthUser)
	}
	if !m.NotBefore.IsZero() {
		fmt.Fprintf(w, "  Not before:      %s\n", m.NotBefore.Local().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "  Size:            %d bytes\n", m.Size)
	if m.DKIM != "" {
		fmt.Fprintf(w, "  DKIM:            %s\n", m.DKIM)
	}
	fmt.Fprintf(w, "\nRecipients\n")
	for _, r := range d.Recipients {
		fmt.Fprintf(w, "  %s  %s, %d attempt(s)", r.Address, r.State, r.Attempts)
		if !r.NextAttempt.IsZero() {
			fmt.Fprintf(w, ", next %s", r.NextAttempt.Local().Format(time.RFC3339))
		}
		if r.LastError != "" {
			fmt.Fprintf(w, "\n    last: %d %s", r.LastCode, oneLine(r.LastError, 200))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nHeader\n")
	for _, line := range strings.Split(strings.TrimRight(string(d.Header), "\r\n"), "\r\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprintf(w, "\nAttempts\n")
	if len(d.Attempts) == 0 {
		fmt.Fprintln(w, "  none yet")
	}
	for _, a := range d.Attempts {
		tls := a.TLS
		if tls == "" {
			tls = "no TLS"
		}
		fmt.Fprintf(w, "  %s  %s  via %s (%s, %s)  %d %s\n", a.At.Local().Format(time.RFC3339), a.Recipient, orDash(a.Host), tls,
			a.Duration.Round(time.Millisecond), a.Code, oneLine(a.Text, 200))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
