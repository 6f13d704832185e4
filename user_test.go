package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"postroom/storage"
)

// runIn runs the command line in this process with stdin and returns the
// exit status, standard output and standard error.
func runIn(stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, stdio{strings.NewReader(stdin), &out, &errOut}, nil)
	return code, out.String(), errOut.String()
}

func TestUserAddListRemove(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if code, out, errOut := runIn("a long password\n", "user", "add", "Scanner", "--data", dir); code != 0 || !strings.Contains(out, "User scanner added") {
		t.Fatalf("user add: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, errOut := runIn("", "user", "list", "--data", dir)
	if code != 0 {
		t.Fatalf("user list: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "scanner ") || !strings.Contains(lines[1], "unlimited") {
		t.Fatalf("user list shows:\n%s\nwant a header and the user scanner without quotas", out)
	}
	if strings.Contains(out, "a long password") || strings.Contains(out, "$2") {
		t.Errorf("user list shows the password or its hash:\n%s", out)
	}

	if code, _, errOut := runIn("other password\n", "user", "add", "scanner", "--data", dir); code != 1 || !strings.Contains(errOut, "exists already") {
		t.Errorf("adding a taken name: exit %d, %q; want exit 1 saying it exists", code, errOut)
	}
	if code, out, errOut := runIn("", "user", "quota", "scanner", "10", "100", "--data", dir); code != 0 || !strings.Contains(out, "10 messages per hour and 100 per day") {
		t.Fatalf("user quota: exit %d, out %q, err %q", code, out, errOut)
	}
	if _, out, _ := runIn("", "user", "list", "--data", dir); !strings.Contains(out, "10") || !strings.Contains(out, "100") || strings.Contains(out, "unlimited") {
		t.Errorf("user list after setting quotas:\n%s", out)
	}
	if code, _, errOut := runIn("", "user", "quota", "scanner", "ten", "100", "--data", dir); code != 2 || !strings.Contains(errOut, "PER_HOUR") {
		t.Errorf("a quota that is not a number: exit %d, %q; want exit 2 naming PER_HOUR", code, errOut)
	}
	if code, _, errOut := runIn("", "user", "quota", "nobody", "1", "2", "--data", dir); code != 1 || !strings.Contains(errOut, `no user "nobody"`) {
		t.Errorf("a quota for a missing user: exit %d, %q", code, errOut)
	}
	if code, out, errOut := runIn("a new password\n", "user", "password", "scanner", "--data", dir); code != 0 || !strings.Contains(out, "Password of scanner changed") {
		t.Fatalf("user password: exit %d, out %q, err %q", code, out, errOut)
	}
	if code, _, errOut := runIn("x password\n", "user", "password", "nobody", "--data", dir); code != 1 || !strings.Contains(errOut, `no user "nobody"`) {
		t.Errorf("changing a missing user's password: exit %d, %q", code, errOut)
	}
	if code, out, errOut := runIn("", "user", "remove", "--data", dir, "scanner"); code != 0 || !strings.Contains(out, "User scanner removed") {
		t.Fatalf("user remove: exit %d, out %q, err %q", code, out, errOut)
	}
	if _, out, _ := runIn("", "user", "list", "--data", dir); !strings.Contains(out, "No users") {
		t.Errorf("user list after remove:\n%s", out)
	}
	if code, _, errOut := runIn("", "user", "remove", "scanner", "--data", dir); code != 1 || !strings.Contains(errOut, `no user "scanner"`) {
		t.Errorf("removing a missing user: exit %d, %q; want exit 1 saying there is no such user", code, errOut)
	}
}

func TestUserAddRefusesBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		stdin    string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"", []string{"user", "add", "scanner"}, 1, "no password on standard input"},
		{"\n", []string{"user", "add", "scanner"}, 1, "no password on standard input"},
		{"short\n", []string{"user", "add", "scanner"}, 1, "too short"},
		{"a long password\n", []string{"user", "add", "two words"}, 1, "space"},
		{"", []string{"user", "add"}, 2, "usage: user add NAME"},
		{"", []string{"user", "remove", "a", "b"}, 2, "usage: user remove NAME"},
		{"", []string{"user", "list", "x"}, 2, "takes no arguments"},
		{"", []string{"user", "rename", "x"}, 2, "unknown user subcommand"},
		{"", []string{"user"}, 2, "needs a subcommand"},
	} {
		code, _, errOut := runIn(tc.stdin, append(tc.args, "--data", dir)...)
		if code != tc.wantCode || !strings.Contains(errOut, tc.wantErr) {
			t.Errorf("%q with stdin %q: exit %d, %q; want exit %d saying %q", tc.args, tc.stdin, code, errOut, tc.wantCode, tc.wantErr)
		}
	}
	// Nothing above created a user.
	if _, out, _ := runIn("", "user", "list", "--data", dir); !strings.Contains(out, "No users") {
		t.Errorf("user list after refused adds:\n%s", out)
	}
	// A password without a final newline, with a CRLF, is still one line.
	if code, _, errOut := runIn("a long password\r\n", "user", "add", "crlf", "--data", dir); code != 0 {
		t.Errorf("password ending in CRLF: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runIn("a long password", "user", "add", "noeol", "--data", dir); code != 0 {
		t.Errorf("password without a newline: exit %d, %q", code, errOut)
	}
	st, err := storage.Open(context.Background(), filepath.Join(dir, storage.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, name := range []string{"crlf", "noeol"} {
		u, err := st.User(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte("a long password")) != nil {
			t.Errorf("user %s: the stored password is not the line without its line ending", name)
		}
	}
}

func TestUserHelpAndUsage(t *testing.T) {
	t.Parallel()
	if code, out, _ := runIn("", "user", "--help"); code != 0 || !strings.Contains(out, "Usage: postroom user add NAME") {
		t.Errorf("user --help: exit %d, %q", code, out)
	}
	if code, out, _ := runIn("", "help"); code != 0 || !strings.Contains(out, "postroom user add NAME") || !strings.Contains(out, "postroom user remove NAME") {
		t.Errorf("help does not list the user commands:\n%s", out)
	}
}
