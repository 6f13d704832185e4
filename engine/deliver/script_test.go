package deliver

import (
	"bufio"
	"net"
	"net/textproto"
	"strings"
)

// scriptServer is a raw next hop: it sends replies[0] as the greeting, then
// answers each command with the next reply, reading message data after a
// 3xx to DATA. A reply of several lines is separated by \n. Commands go to cmds when it is non-nil (dropped when full).
// It closes the connection when the replies run out or the client leaves.
func scriptServer(conn net.Conn, cmds chan<- string, replies []string) {
	defer conn.Close()
	r := textproto.NewReader(bufio.NewReader(conn))
	w := bufio.NewWriter(conn)
	send := func(s string) bool {
		s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
		if _, err := w.WriteString(s + "\r\n"); err != nil {
			return false
		}
		return w.Flush() == nil
	}
	if len(replies) == 0 || !send(replies[0]) {
		return
	}
	for i := 1; i < len(replies); i++ {
		line, err := r.ReadLine()
		if err != nil {
			return
		}
		if cmds != nil {
			select {
			case cmds <- line:
			default:
			}
		}
		if !send(replies[i]) {
			return
		}
		if strings.EqualFold(line, "DATA") && strings.HasPrefix(replies[i], "3") {
			if _, err := r.ReadDotBytes(); err != nil {
				return
			}
			if i++; i >= len(replies) || !send(replies[i]) {
				return
			}
		}
	}
}
