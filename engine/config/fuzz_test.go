package config

import (
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it accepts
// exports to TOML that parses back to the same settings.
func FuzzParse(f *testing.F) {
	def, err := Default().Encode()
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(def),
		"",
		"hostname = \"relay.example.com\"\n[listen]\nport = 2525\n",
		"[delivery]\nqueue_lifetime = \"1d12h\"\n[[delivery.routes]]\ndomain = \"example.net\"\nhost = \"127.0.0.1:2526\"\n",
		"[[limits.destinations]]\ndomain = \"*\"\nmax_connections = 2\n",
		"[access]\nblocked_senders = [\"@spam.example\", \".spam.example\", \"x@bücher.example\"]\n",
		"[delivery]\nsmarthost_username = \"u\"\nsmarthost_password = \"p\\u0001\\\"\"\n",
		"[listen]\nPort = 25\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		out, err := s.Encode()
		if err != nil {
			t.Fatalf("Encode of accepted settings failed: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Encode(s)) failed: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("Parse(Encode(s)) = %+v\nwant %+v", again, s)
		}
	})
}
