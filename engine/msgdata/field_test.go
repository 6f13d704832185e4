package msgdata

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func filterField(t *testing.T, in, name string, chunk int) (string, []string, bool) {
	t.Helper()
	var out bytes.Buffer
	f := NewFieldFilter(&out, name)
	for rest := []byte(in); len(rest) > 0; {
		n := min(chunk, len(rest))
		if w, err := f.Write(rest[:n]); err != nil || w != n {
			t.Fatalf("Write = %d, %v", w, err)
		}
		rest = rest[n:]
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String(), f.Values(), f.Truncated()
}

func TestFieldFilter(t *testing.T) {
	t.Parallel()
	const body = "\r\nPostroom-Send-At: in the body stays\r\n"
	for _, tc := range []struct {
		name, in, want string
		values         []string
	}{
		{"absent", "Subject: hi\r\n" + body, "Subject: hi\r\n" + body, nil},
		{"first field", "Postroom-Send-At: Mon, 1 Dec 2025 09:00:00 +0100\r\nSubject: hi\r\n" + body,
			"Subject: hi\r\n" + body, []string{"Mon, 1 Dec 2025 09:00:00 +0100"}},
		{"last field, any case, folded", "Subject: hi\r\nPOSTROOM-send-at: Mon, 1 Dec 2025\r\n 09:00:00 +0100\r\n" + body,
			"Subject: hi\r\n" + body, []string{"Mon, 1 Dec 2025 09:00:00 +0100"}},
		{"space before the colon", "Postroom-Send-At  : x\r\nSubject: hi\r\n" + body, "Subject: hi\r\n" + body, []string{"x"}},
		{"two of them", "Postroom-Send-At: a\r\nTo: b\r\nPostroom-Send-At: c\r\n" + body, "To: b\r\n" + body, []string{"a", "c"}},
		{"similar names kept", "Postroom-Send-After: a\r\nPostroom-Send: b\r\nPostroom-Send-At-X: c\r\nPostroom-Send-A t: d\r\n" + body,
			"Postroom-Send-After: a\r\nPostroom-Send: b\r\nPostroom-Send-At-X: c\r\nPostroom-Send-A t: d\r\n" + body, nil},
		{"a folded other field is kept whole", "Subject: a\r\n b\r\nPostroom-Send-At: x\r\n\tnext\r\nTo: c\r\n" + body,
			"Subject: a\r\n b\r\nTo: c\r\n" + body, []string{"x\tnext"}},
		{"header ends at body text", "Subject: hi\r\nthis is text\r\nPostroom-Send-At: x\r\n", "Subject: hi\r\nthis is text\r\nPostroom-Send-At: x\r\n", nil},
		{"no header at all", " Postroom-Send-At: x\r\n", " Postroom-Send-At: x\r\n", nil},
		{"only the field, no body", "Postroom-Send-At: x\r\n", "", []string{"x"}},
		{"unterminated prefix", "Postroom-Se", "Postroom-Se", nil},
	} {
		for _, chunk := range []int{1, 3, 1 << 20} {
			out, values, truncated := filterField(t, tc.in, "Postroom-Send-At", chunk)
			if out != tc.want || !reflect.DeepEqual(values, tc.values) || truncated {
				t.Errorf("%s (chunks of %d):\n got %q %q %v\nwant %q %q", tc.name, chunk, out, values, truncated, tc.want, tc.values)
			}
		}
	}
}

func TestFieldFilterBoundsTheValue(t *testing.T) {
	t.Parallel()
	in := "Postroom-Send-At: " + strings.Repeat("x", 5000) + "\r\nSubject: hi\r\n\r\nbody\r\n"
	out, values, truncated := filterField(t, in, "Postroom-Send-At", 7)
	if out != "Subject: hi\r\n\r\nbody\r\n" || len(values) != 1 || len(values[0]) > maxFieldValue || !truncated {
		t.Fatalf("got %q, %d values (%d bytes), truncated %v", out, len(values), len(values[0]), truncated)
	}
}

// FuzzFieldFilter checks that the filter only ever removes whole lines of
// the header section and keeps everything else byte for byte.
func FuzzFieldFilter(f *testing.F) {
	f.Add([]byte("Postroom-Send-At: x\r\nSubject: hi\r\n\r\nbody\r\n"), 3)
	f.Add([]byte("A: b\r\n c\r\npostroom-send-at : y\r\n z\r\n\r\n"), 1)
	f.Fuzz(func(t *testing.T, in []byte, chunk int) {
		if chunk <= 0 || chunk > 1<<16 {
			chunk = 1
		}
		var normalized bytes.Buffer
		n := NewNormalizer(&normalized)
		n.Write(in)
		n.Close()
		data := normalized.String()
		out, values, _ := filterField(t, data, "Postroom-Send-At", chunk)
		if len(values) == 0 && out != data {
			t.Fatalf("nothing removed but the output changed:\n%q\n%q", data, out)
		}
		// What is left is the input with some lines taken out: every
		// output line is an input line, in order.
		inLines := strings.SplitAfter(data, "\r\n")
		j := 0
		for _, line := range strings.SplitAfter(out, "\r\n") {
			for j < len(inLines) && inLines[j] != line {
				j++
			}
			if j == len(inLines) {
				t.Fatalf("output line %q is not an input line in order", line)
			}
			j++
		}
		hdr, _ := SplitHeader(strings.NewReader(out), 1<<20)
		for line := range strings.SplitSeq(string(hdr), "\r\n") {
			if isFieldLine([]byte(line)) && strings.EqualFold(strings.TrimRight(strings.SplitN(line, ":", 2)[0], " \t"), "postroom-send-at") {
				t.Fatalf("the field is still in the header: %q", out)
			}
		}
	})
}
