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

	"golang.org/x/term"

	"postroom/engine"
)

// cmdUser manages the accounts that may relay with SMTP AUTH.
func cmdUser(args []string, std stdio) error {
	c := newCommand("user", "user add NAME | user password NAME | user quota NAME PER_HOUR PER_DAY | user list | user remove NAME", std)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return &usageError{"user needs a subcommand: add NAME, password NAME, quota NAME PER_HOUR PER_DAY, list or remove NAME"}
	}
	sub, rest := pos[0], pos[1:]
	var perHour, perDay int
	switch {
	case sub == "list" && len(rest) == 0:
	case (sub == "add" || sub == "remove" || sub == "password") && len(rest) == 1:
	case sub == "quota" && len(rest) == 3:
		if perHour, err = quotaArg("PER_HOUR", rest[1]); err != nil {
			return err
		}
		if perDay, err = quotaArg("PER_DAY", rest[2]); err != nil {
			return err
		}
	case sub == "list":
		return &usageError{"user list takes no arguments"}
	case sub == "add" || sub == "remove" || sub == "password":
		return &usageError{fmt.Sprintf("usage: user %s NAME", sub)}
	case sub == "quota":
		return &usageError{"usage: user quota NAME PER_HOUR PER_DAY (messages; 0 = no limit)"}
	default:
		return &usageError{fmt.Sprintf("unknown user subcommand %q", sub)}
	}

	var password string
	if sub == "add" || sub == "password" {
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
	case "password":
		if err := eng.SetPassword(ctx, rest[0], password); err != nil {
			return err
		}
		fmt.Fprintf(std.out, "Password of %s changed.\n", strings.ToLower(rest[0]))
		return nil
	case "quota":
		if err := eng.SetUserQuota(ctx, rest[0], perHour, perDay); err != nil {
			return err
		}
		fmt.Fprintf(std.out, "%s may send %s messages per hour and %s per day.\n", strings.ToLower(rest[0]), quota(perHour), quota(perDay))
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

func quotaArg(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, &usageError{fmt.Sprintf("%s must be a whole number of messages, 0 for no limit (got %q)", name, v)}
	}
	return n, nil
}

func quota(n int) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.Itoa(n)
}

// readPassword reads one line from standard input: typed without echo
// on a terminal, or piped in by a script.
func readPassword(std stdio) (string, error) {
	if f, ok := std.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		ask := func(prompt string) (string, error) {
			fmt.Fprint(std.err, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(std.err)
			if err != nil {
				return "", fmt.Errorf("reading the password: %w", err)
			}
			return string(b), nil
		}
		first, err := ask("Password: ")
		if err != nil {
			return "", err
		}
		if first == "" {
			return "", errors.New("no password given")
		}
		// Unseen typing is easy to get wrong: a typo would lock the user
		// out.
		again, err := ask("The same password again: ")
		if err != nil {
			return "", err
		}
		if again != first {
			return "", errors.New("the two passwords differ; nothing was changed")
		}
		return first, nil
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
