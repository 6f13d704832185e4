package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	t.Parallel()
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}
	// The values DESIGN.md documents, which users rely on.
	checks := []struct {
		key       string
		got, want any
	}{
		{"hostname", d.Hostname, "localhost"},
		{"listen.address", d.Listen.Address, "0.0.0.0"},
		{"listen.port", d.Listen.Port, 25},
		{"listen.submission_port", d.Listen.SubmissionPort, 0},
		{"listen.auth_without_tls", d.Listen.AuthWithoutTLS, false},
		{"access.trusted_networks", d.Access.TrustedNetworks, []string{"127.0.0.0/8", "::1/128"}},
		{"limits.max_message_bytes", d.Limits.MaxMessageBytes, int64(26214400)},
		{"limits.max_recipients", d.Limits.MaxRecipients, 100},
		{"limits.max_connections", d.Limits.MaxConnections, 200},
		{"limits.max_connections_per_ip", d.Limits.MaxConnectionsPerIP, 20},
		{"limits.idle_timeout", d.Limits.IdleTimeout.Std(), 5 * time.Minute},
		{"limits.rate_window", d.Limits.RateWindow.Std(), time.Hour},
		{"limits.strict_line_endings", d.Limits.StrictLineEndings, false},
		{"limits.min_data_rate", d.Limits.MinDataRate, 1024},
		{"limits.max_line_length", d.Limits.MaxLineLength, 1000},
		{"delivery.mode", d.Delivery.Mode, "mx"},
		{"delivery.smarthost_tls", d.Delivery.SmarthostTLS, "starttls"},
		{"delivery.tls", d.Delivery.TLS, "opportunistic"},
		{"delivery.queue_scan_interval", d.Delivery.QueueScanInterval.Std(), time.Minute},
		{"delivery.retry_initial", d.Delivery.RetryInitial.Std(), 5 * time.Minute},
		{"delivery.retry_max", d.Delivery.RetryMax.Std(), 4 * time.Hour},
		{"delivery.queue_lifetime", d.Delivery.QueueLifetime.Std(), 5 * 24 * time.Hour},
		{"delivery.connect_timeout", d.Delivery.ConnectTimeout.Std(), 30 * time.Second},
		{"delivery.max_connections", d.Delivery.MaxConnections, 20},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("default %s = %v, want %v", c.key, c.got, c.want)
		}
	}
	// Each call is independent: changing one result leaves the next alone.
	d.Access.TrustedNetworks[0] = "10.0.0.0/8"
	if Default().Access.TrustedNetworks[0] != "127.0.0.0/8" {
		t.Error("Default() shares its slices between calls")
	}
}

func TestParseEmptyIsDefault(t *testing.T) {
	t.Parallel()
	s, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, Default()) {
		t.Errorf("Parse(empty) = %+v, want Default()", s)
	}
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	t.Parallel()
	s, err := Parse([]byte(`
hostname = "relay.example.com"
[listen]
port = 2525
[access]
trusted_networks = ["192.168.1.0/24"]
[delivery]
queue_lifetime = "1d12h"
[[delivery.routes]]
domain = "example.net"
host = "127.0.0.1:2526"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Hostname = "relay.example.com"
	want.Listen.Port = 2525
	want.Access.TrustedNetworks = []string{"192.168.1.0/24"}
	want.Delivery.QueueLifetime = Duration(36 * time.Hour)
	want.Delivery.Routes = []Route{{Domain: "example.net", Host: "127.0.0.1:2526"}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Parse = %+v\nwant %+v", s, want)
	}
}

func TestEmptyListReplacesDefault(t *testing.T) {
	t.Parallel()
	s, err := Parse([]byte("[access]\ntrusted_networks = []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Access.TrustedNetworks) != 0 {
		t.Errorf("trusted_networks = %q, want empty (the file said so)", s.Access.TrustedNetworks)
	}
}

func TestUnknownKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		doc string
		key string
	}{
		{"[listen]\nprot = 25\n", "listen.prot"},
		{"hostnme = \"x.example\"\n", "hostnme"},
		{"[listn]\nport = 25\n", "listn"},
		// The TOML decoder would quietly match this field case-insensitively.
		{"[listen]\nPort = 25\n", "listen.Port"},
		{"[[delivery.routes]]\ndomain = \"a.example\"\nhost = \"h.example:25\"\nweight = 1\n", "delivery.routes.weight"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.doc))
		ve, ok := AsValidationError(err)
		if !ok {
			t.Errorf("Parse(%q) error = %v, want a *ValidationError", tt.doc, err)
			continue
		}
		if !slices.Contains(ve.Keys(), tt.key) || !strings.Contains(err.Error(), tt.key+": unknown key") {
			t.Errorf("Parse(%q) error %q does not name unknown key %q", tt.doc, err, tt.key)
		}
	}
}

func TestSyntaxAndTypeErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ doc, want string }{
		{"[listen]\nport = \"25\"\n", "listen.port"},
		{"[limits]\nidle_timeout = 300\n", "limits.idle_timeout"},
		{"[limits]\nidle_timeout = \"5 minutes\"\n", "limits.idle_timeout"},
		{"[access]\ntrusted_networks = \"127.0.0.1\"\n", "access.trusted_networks"},
		{"hostname = \n", "line 1"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v, want it to mention %q", tt.doc, err, tt.want)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		doc   string
		key   string
		value string
	}{
		{"hostname", `hostname = "bad_host"`, "hostname", `"bad_host"`},
		{"hostname literal", `hostname = "[192.0.2.1]"`, "hostname", `"[192.0.2.1]"`},
		{"address", "[listen]\naddress = \"localhost\"", "listen.address", `"localhost"`},
		{"port zero", "[listen]\nport = 0", "listen.port", "0"},
		{"port high", "[listen]\nport = 70000", "listen.port", "70000"},
		{"submission negative", "[listen]\nsubmission_port = -1", "listen.submission_port", "-1"},
		{"tls port clash", "[listen]\ntls_port = 25", "listen.tls_port", "25"},
		{"submission clash", "[listen]\nsubmission_port = 25", "listen.submission_port", "25"},
		{"cert without key", "[listen]\ntls_cert = \"/etc/cert.pem\"", "listen.tls_key", `""`},
		{"key without cert", "[listen]\ntls_key = \"/etc/key.pem\"", "listen.tls_cert", `""`},
		{"trusted CIDR", "[access]\ntrusted_networks = [\"127.0.0.0/8\", \"10.0.0.0/33\"]", "access.trusted_networks[1]", `"10.0.0.0/33"`},
		{"blocked network", "[access]\nblocked_networks = [\"nonsense\"]", "access.blocked_networks[0]", `"nonsense"`},
		{"allowed sender", "[access]\nallowed_senders = [\"a@@b\"]", "access.allowed_senders[0]", `"a@@b"`},
		{"blocked sender", "[access]\nblocked_senders = [\"ok.example\", \"x\", \"bad domain\"]", "access.blocked_senders[2]", `"bad domain"`},
		{"allowed recipient", "[access]\nallowed_recipients = [\"<>\"]", "access.allowed_recipients[0]", `"<>"`},
		{"blocked recipient control", "[access]\nblocked_recipients = [\"a@b\\u0000c\"]", "access.blocked_recipients[0]", `"a@b\u0000c"`},
		{"message size small", "[limits]\nmax_message_bytes = 1023", "limits.max_message_bytes", "1023"},
		{"message size huge", "[limits]\nmax_message_bytes = 5000000000", "limits.max_message_bytes", "5000000000"},
		{"recipients", "[limits]\nmax_recipients = 0", "limits.max_recipients", "0"},
		{"connections", "[limits]\nmax_connections = 0", "limits.max_connections", "0"},
		{"per ip over total", "[limits]\nmax_connections = 10\nmax_connections_per_ip = 11", "limits.max_connections_per_ip", "11"},
		{"idle timeout", "[limits]\nidle_timeout = \"0s\"", "limits.idle_timeout", `"0s"`},
		{"negative window", "[limits]\nrate_window = \"-1h\"", "limits.rate_window", `"-1h"`},
		{"rate limit", "[limits]\nrate_limit = -5", "limits.rate_limit", "-5"},
		{"data rate", "[limits]\nmin_data_rate = -1", "limits.min_data_rate", "-1"},
		{"line length", "[limits]\nmax_line_length = 998", "limits.max_line_length", "998"},
		{"destination domain", "[[limits.destinations]]\ndomain = \"not a domain\"", "limits.destinations[0].domain", `"not a domain"`},
		{"destination repeated", "[[limits.destinations]]\ndomain = \"*\"\n[[limits.destinations]]\ndomain = \"*\"", "limits.destinations[1].domain", `"*"`},
		{"destination rate", "[[limits.destinations]]\ndomain = \"gmail.com\"\nmessages_per_minute = -1", "limits.destinations[0].messages_per_minute", "-1"},
		{"mode", "[delivery]\nmode = \"direct\"", "delivery.mode", `"direct"`},
		{"smarthost required", "[delivery]\nmode = \"smarthost\"", "delivery.smarthost", `""`},
		{"smarthost no port", "[delivery]\nsmarthost = \"mail.example.com\"", "delivery.smarthost", `"mail.example.com"`},
		{"smarthost bad port", "[delivery]\nsmarthost = \"mail.example.com:smtp\"", "delivery.smarthost", `"mail.example.com:smtp"`},
		{"smarthost tls", "[delivery]\nsmarthost_tls = \"ssl\"", "delivery.smarthost_tls", `"ssl"`},
		{"tls", "[delivery]\ntls = \"always\"", "delivery.tls", `"always"`},
		{"source ip", "[delivery]\nsource_ip = \"eth0\"", "delivery.source_ip", `"eth0"`},
		{"scan interval", "[delivery]\nqueue_scan_interval = \"500ms\"", "delivery.queue_scan_interval", `"500ms"`},
		{"retry order", "[delivery]\nretry_initial = \"5h\"\nretry_max = \"4h\"", "delivery.retry_max", `"4h"`},
		{"lifetime", "[delivery]\nqueue_lifetime = \"0s\"", "delivery.queue_lifetime", `"0s"`},
		{"keep finished", "[delivery]\nkeep_finished = \"10m\"", "delivery.keep_finished", `"10m"`},
		{"connect timeout", "[delivery]\nconnect_timeout = \"-30s\"", "delivery.connect_timeout", `"-30s"`},
		{"resolver", "[delivery]\nresolver = \"8.8.8.8\"", "delivery.resolver", `"8.8.8.8"`},
		{"outbound connections", "[delivery]\nmax_connections = 0", "delivery.max_connections", "0"},
		{"route host", "[[delivery.routes]]\ndomain = \"a.example\"\nhost = \"h.example:25\"\n[[delivery.routes]]\ndomain = \"b.example\"\nhost = \"h.example\"", "delivery.routes[1].host", `"h.example"`},
		{"route domain", "[[delivery.routes]]\ndomain = \"\"\nhost = \"h.example:25\"", "delivery.routes[0].domain", `""`},
		{"route repeated", "[[delivery.routes]]\ndomain = \"a.example\"\nhost = \"h.example:25\"\n[[delivery.routes]]\ndomain = \"A.example.\"\nhost = \"h.example:25\"", "delivery.routes[1].domain", `"A.example."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.doc + "\n"))
			ve, ok := AsValidationError(err)
			if !ok {
				t.Fatalf("Parse error = %v, want a *ValidationError", err)
			}
			found := false
			for _, fe := range ve.Errors {
				if fe.Key == tt.key && fe.Value == tt.value && fe.Reason != "" {
					found = true
				}
			}
			if !found {
				t.Fatalf("errors %+v lack key %s with value %s", ve.Errors, tt.key, tt.value)
			}
			if want := tt.key + " = " + tt.value + ": "; !strings.Contains(err.Error(), want) {
				t.Errorf("Error() = %q, want a line starting %q", err.Error(), want)
			}
			if len(ve.Errors) != 1 {
				t.Errorf("one mistake gave %d errors: %v", len(ve.Errors), err)
			}
		})
	}
}

func TestValidationListsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("[listen]\nport = 0\n[delivery]\nmode = \"x\"\n"))
	ve, ok := AsValidationError(err)
	if !ok {
		t.Fatalf("error = %v", err)
	}
	if got := ve.Keys(); !reflect.DeepEqual(got, []string{"delivery.mode", "listen.port"}) {
		t.Errorf("keys = %q", got)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 2 {
		t.Errorf("Error() = %q, want one line per problem", err.Error())
	}
}

func TestPasswordNeverShown(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("[delivery]\nsmarthost_password = \"hunter2\"\n"))
	if err == nil {
		t.Fatal("a password without a user name was accepted")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %q", err)
	}
	if !strings.Contains(err.Error(), "delivery.smarthost_password") {
		t.Errorf("error does not name the key: %q", err)
	}
}

func TestValidAlternatives(t *testing.T) {
	t.Parallel()
	docs := []string{
		"[delivery]\nmode = \"smarthost\"\nsmarthost = \"[2001:db8::1]:587\"\nsmarthost_tls = \"tls\"",
		"[delivery]\nsmarthost = \"smtp.bücher.example:465\"\nresolver = \"192.0.2.53:53\"\nsource_ip = \"::1\"",
		"[listen]\naddress = \"::\"\nport = 2525\nsubmission_port = 587\ntls_port = 465\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"",
		"[[limits.destinations]]\ndomain = \"*\"\nmax_connections = 2\n[[limits.destinations]]\ndomain = \"gmail.com\"\nmessages_per_minute = 30",
		"[access]\nallowed_senders = [\"@example.com\", \".example.com\", \"boss@example.org\"]\nblocked_networks = [\"10.0.0.1\", \"2001:db8::/32\"]",
		"[delivery]\nretry_initial = \"4h\"\nretry_max = \"4h\"\nqueue_scan_interval = \"1s\"",
	}
	for _, doc := range docs {
		if _, err := Parse([]byte(doc + "\n")); err != nil {
			t.Errorf("Parse(%q): %v", doc, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	full := Default()
	full.Hostname = "relay.bücher.example"
	full.Listen = Listen{Address: "192.0.2.10", Port: 2525, SubmissionPort: 587, TLSPort: 465,
		TLSCert: `C:\certs\relay "main".pem`, TLSKey: "/etc/key\twith tab.pem", AuthWithoutTLS: true}
	full.Access = Access{
		TrustedNetworks:   []string{"192.168.0.0/16"},
		BlockedNetworks:   []string{"203.0.113.0/24", "2001:db8::/32"},
		AllowedSenders:    []string{"@example.com"},
		BlockedSenders:    []string{"spam@example.com", ".spam.example"},
		AllowedRecipients: []string{"bücher.example"},
		BlockedRecipients: []string{`"a b"@example.com`},
	}
	full.Limits.RateLimit = 500
	full.Limits.RateWindow = Duration(90 * time.Second)
	full.Limits.StrictLineEndings = true
	full.Limits.MinDataRate = 0
	full.Limits.IdleTimeout = Duration(1500 * time.Millisecond)
	full.Limits.Destinations = []DestinationLimit{{"*", 2, 0}, {"gmail.com", 0, 30}}
	full.Delivery = Delivery{
		Mode: "smarthost", Smarthost: "smtp.provider.example:587",
		SmarthostUsername: "relay@example.com", SmarthostPassword: "p\"a\\s\ns\u0001 wörd",
		SmarthostTLS: "starttls", TLS: "required", SourceIP: "2001:db8::5",
		QueueScanInterval: Duration(30 * time.Second), RetryInitial: Duration(time.Minute),
		RetryMax: Duration(36 * time.Hour), QueueLifetime: Duration(7 * 24 * time.Hour),
		ConnectTimeout: Duration(10 * time.Second), Resolver: "[2001:db8::53]:53", MaxConnections: 4,
		Routes: []Route{{"example.net", "127.0.0.1:2526"}, {"lan.example", "mail.lan.example:25"}},
	}
	if err := full.Validate(); err != nil {
		t.Fatalf("test settings are invalid: %v", err)
	}
	for name, s := range map[string]Settings{"default": Default(), "full": full} {
		data, err := s.Encode()
		if err != nil {
			t.Fatalf("%s: Encode: %v", name, err)
		}
		got, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: Parse(Encode(s)): %v\n%s", name, err, data)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("%s: Parse(Encode(s)) = %+v\nwant %+v\n%s", name, got, s, data)
		}
	}
}

func TestEncodeWritesEveryKey(t *testing.T) {
	t.Parallel()
	s := Default()
	s.Limits.Destinations = []DestinationLimit{{Domain: "*"}}
	s.Delivery.Routes = []Route{{Domain: "a.example", Host: "h.example:25"}}
	data, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for key := range knownKeys() {
		leaf := key[strings.LastIndexByte(key, '.')+1:]
		if !strings.Contains(text, "\n"+leaf+" = ") && !strings.Contains(text, "["+key+"]") {
			t.Errorf("Encode output lacks key %s", key)
		}
	}
	// DESIGN.md's order: the tables follow one another as documented.
	last := -1
	for _, table := range []string{"hostname =", "[listen]", "[access]", "[limits]", "[[limits.destinations]]", "[delivery]", "[[delivery.routes]]"} {
		i := strings.Index(text, table)
		if i <= last {
			t.Errorf("%s is out of order in:\n%s", table, text)
		}
		last = i
	}
}

func TestEncodeRefusesInvalidUTF8(t *testing.T) {
	t.Parallel()
	s := Default()
	s.Delivery.SmarthostUsername = "\xff"
	if _, err := s.Encode(); err == nil {
		t.Error("Encode wrote invalid UTF-8, which no TOML reader accepts")
	}
}

func TestEqualTreatsEmptyAsNil(t *testing.T) {
	t.Parallel()
	a, b := Default(), Default()
	b.Access.BlockedNetworks = []string{}
	if !a.Equal(b) {
		t.Error("an empty list and a nil one compare unequal")
	}
	b.Access.BlockedNetworks = []string{"10.0.0.0/8"}
	if a.Equal(b) {
		t.Error("different settings compare equal")
	}
	if b.Access.BlockedNetworks == nil || a.Access.TrustedNetworks == nil {
		t.Error("Equal modified its arguments")
	}
}

func TestSystemHostname(t *testing.T) {
	t.Parallel()
	name := SystemHostname()
	if err := checkDomainName(name); err != nil {
		t.Errorf("SystemHostname() = %q is not a usable domain name: %v", name, err)
	}
}

// designExample is the settings example from DESIGN.md, verbatim.
const designExample = `hostname = "relay.example.com"        # EHLO name and the name in Received headers

[listen]
address = "0.0.0.0"
port = 25                             # the standard port; the wizard offers 2525 when 25 cannot be bound
submission_port = 0                   # 587 with STARTTLS + AUTH when > 0
tls_port = 0                          # 465 implicit TLS when > 0
tls_cert = ""                         # PEM paths; empty = a generated self-signed certificate
tls_key = ""

[access]
trusted_networks = ["127.0.0.0/8", "::1/128"]   # may relay without AUTH
blocked_networks = []                 # refused at connect
allowed_senders = []                  # addresses or domains ("@example.com" or "example.com"); empty = any
blocked_senders = []
allowed_recipients = []               # empty = any
blocked_recipients = []               # a block always wins over an allow

[limits]
max_message_bytes = 26214400          # advertised in SIZE, enforced while reading DATA
max_recipients = 100
max_connections = 200
max_connections_per_ip = 20
idle_timeout = "5m"                   # a silent client is disconnected; DATA also needs a minimum data rate
rate_limit = 0                        # messages sent per rate_window, 0 = unlimited; excess waits in the queue
rate_window = "1h"

[delivery]
mode = "mx"                           # "mx" (direct to recipients' MX) or "smarthost"
smarthost = ""                        # host:port
smarthost_username = ""
smarthost_password = ""
smarthost_tls = "starttls"            # "starttls" | "tls" | "none"
tls = "opportunistic"                 # outbound to MX: "opportunistic" | "required" | "none"
source_ip = ""                        # bind outbound connections to this local address
queue_scan_interval = "1m"            # how often the queue is checked for due mail
retry_initial = "5m"                  # first retry delay; grows with jitter up to retry_max
retry_max = "4h"
queue_lifetime = "5d"                 # then the sender gets a bounce (DSN)
connect_timeout = "30s"
resolver = ""                         # "" = system resolver; "host:port" = that DNS server

[[delivery.routes]]                   # per-domain next hop, before MX lookup (LAN servers, tests)
domain = "example.net"
host = "127.0.0.1:2526"
`

func TestDesignExample(t *testing.T) {
	t.Parallel()
	s, err := Parse([]byte(designExample))
	if err != nil {
		t.Fatalf("the example in DESIGN.md does not parse: %v", err)
	}
	want := Default()
	want.Hostname = "relay.example.com"
	want.Delivery.Routes = []Route{{Domain: "example.net", Host: "127.0.0.1:2526"}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Parse(DESIGN example) = %+v\nwant %+v", s, want)
	}
}
