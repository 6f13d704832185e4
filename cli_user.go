package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"postroom/engine"
)

// cmdUser manages the accounts that may relay with SMTP AUTH.
func cmdUser(args []string, std stdio) error {
	c := newCommand("user", "user add NAME | user list | user remove NAME", std)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return &usageError{"user needs a subcommand: add NAME, list or remove NAME"}
	}
	sub, rest := pos[0], pos[1:]
	switch {
	case sub == "list" && len(rest) == 0:
	case (sub == "add" || sub == "remove") && len(rest) == 1:
	case sub == "list":
		return &usageError{"user list takes no arguments"}
	case sub == "add" || sub == "remove":
		return &usageError{fmt.Sprintf("usage: user %s NAME", sub)}
	default:
		return &usageError{fmt.Sprintf("unknown user subcommand %q", sub)}
	}

	var password string
	if sub == "add" {
		// Read before opening the database, so a missing password changes
		// nothing and holds no lock while a person types.
		if password, err = readPassword(std); err != nil {
			return err
		}
	}
	ctx := context.Background()
	st, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	eng := engine.New(engine.Options{Store: st})
	switch sub {
	case "add":
		if err := eng.AddUser(ctx, rest[0], password); err != nil {
			return err
		}
		fmt.Fprintf(std.out, "User %s added. It may send through Postroom from any network after AUTH (over TLS, or from this computer when listen.auth_without_tls is set).\n", strings.ToLower(rest[0]))
		return nil
	case "remove":
		if err := eng.RemoveUser(ctx, rest[0]); err != nil {
			return err
		}
		fmt.Fprintf(std.out, "User %s removed.\n", strings.ToLower(rest[0]))
		return nil
	}
	users, err := eng.Users(ctx)
	if err != nil {
		return err
	}
	if len(users) == 0 {
		fmt.Fprintln(std.out, "No users. Add one with `postroom user add NAME` (the password is read from standard input).")
		return nil
	}
	tw := tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPER HOUR\tPER DAY\tCREATED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, quota(u.PerHour), quota(u.PerDay), u.Created.Local().Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

func quota(n int) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.Itoa(n)
}

// readPassword reads one line from standard input. On a terminal it asks
// first; the build has no terminal library to hide the typing, so the
// prompt says so and shows how to pipe the password in instead.
func readPassword(std stdio) (string, error) {
	if f, ok := std.in.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(std.err, "Password (it will show as you type; to avoid that, pipe it in, e.g. `postroom user add NAME < file`): ")
		}
	}
	line, err := bufio.NewReader(std.in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("no password on standard input: give it as one line, e.g. `printf '%s\\n' \"$PASSWORD\" | postroom user add NAME`")
	}
	return line, nil
}
