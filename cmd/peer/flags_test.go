package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/convene-p2p/convene/p2p"
)

func fixedConfigDir(dir string) func() (string, error) {
	return func() (string, error) { return dir, nil }
}

func TestParseRunFlagsDefaults(t *testing.T) {
	t.Setenv("GOLOG_LOG_LEVEL", "")
	o, err := parseRunFlags(nil, fixedConfigDir("/cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if !o.MDNS {
		t.Error("mDNS should be on by default")
	}
	if o.DHT != p2p.DHTAuto {
		t.Errorf("DHT = %q, want auto", o.DHT)
	}
	if want := filepath.Join("/cfg", "convene", "key"); o.KeyFile != want {
		t.Errorf("KeyFile = %q, want %q", o.KeyFile, want)
	}
	if o.LogLevel != "error" {
		t.Errorf("LogLevel = %q, want error", o.LogLevel)
	}
	if o.JSON || o.Stay || o.Ephemeral || o.Timeout != 0 || len(o.Rooms) != 0 || len(o.Listen) != 0 || len(o.Bootstrap) != 0 {
		t.Errorf("unexpected non-default options: %+v", o)
	}
}

func TestParseRunFlagsDefaultLogLevelYieldsToEnv(t *testing.T) {
	t.Setenv("GOLOG_LOG_LEVEL", "debug")
	o, err := parseRunFlags(nil, fixedConfigDir("/cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if o.LogLevel != "" {
		t.Errorf("LogLevel = %q, want empty (leave GOLOG_LOG_LEVEL in charge)", o.LogLevel)
	}
}

const testPeerAddr = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWRC2BWwa8DgLjKea1bHvVPciWr4wLpE3Z3hcDUXtkkdkR"

func TestParseRunFlagsAll(t *testing.T) {
	o, err := parseRunFlags([]string{
		"--name", "alice", "--meta", "color=red", "--meta", "role=host=1",
		"--room", "lobby", "--room", "game", "--room", "lobby",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1",
		"--bootstrap", testPeerAddr,
		"--no-mdns", "--dht", "off", "--timeout", "3s", "--json", "--stay",
		"--log-level", "warn,convene/room=debug",
	}, fixedConfigDir("/cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "alice" || o.Meta["color"] != "red" || o.Meta["role"] != "host=1" {
		t.Errorf("name/meta: %q %v", o.Name, o.Meta)
	}
	if strings.Join(o.Rooms, ",") != "lobby,game" {
		t.Errorf("rooms = %v, want [lobby game] (repeatable, de-duplicated, in order)", o.Rooms)
	}
	if len(o.Listen) != 2 || o.Listen[1].String() != "/ip4/127.0.0.1/udp/0/quic-v1" {
		t.Errorf("listen = %v", o.Listen)
	}
	if len(o.Bootstrap) != 1 || o.Bootstrap[0].ID.String() != "12D3KooWRC2BWwa8DgLjKea1bHvVPciWr4wLpE3Z3hcDUXtkkdkR" || o.BootStr[0] != testPeerAddr {
		t.Errorf("bootstrap = %v %v", o.Bootstrap, o.BootStr)
	}
	if o.MDNS || o.DHT != p2p.DHTOff || o.Timeout != 3*time.Second || !o.JSON || !o.Stay {
		t.Errorf("options: %+v", o)
	}
	if o.LogLevel != "warn,convene/room=debug" {
		t.Errorf("LogLevel = %q", o.LogLevel)
	}
	if want := filepath.Join("/cfg", "convene", "key-alice"); o.KeyFile != want {
		t.Errorf("KeyFile = %q, want %q (per-name default)", o.KeyFile, want)
	}
}

func TestParseRunFlagsMDNSLastWins(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--no-mdns"}, false},
		{[]string{"--mdns"}, true},
		{[]string{"--no-mdns", "--mdns"}, true},
		{[]string{"--mdns", "--no-mdns"}, false},
		{[]string{"--mdns=false"}, false},
		{[]string{"--no-mdns=false"}, true},
	} {
		o, err := parseRunFlags(tc.args, fixedConfigDir("/cfg"))
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if o.MDNS != tc.want {
			t.Errorf("%v: MDNS = %v, want %v", tc.args, o.MDNS, tc.want)
		}
	}
}

func TestParseRunFlagsKeyAndEphemeral(t *testing.T) {
	o, err := parseRunFlags([]string{"--key", "/tmp/k", "--name", "bob"}, fixedConfigDir("/cfg"))
	if err != nil || o.KeyFile != "/tmp/k" {
		t.Errorf("--key: %q %v", o.KeyFile, err)
	}
	o, err = parseRunFlags([]string{"--ephemeral"}, func() (string, error) { return "", errors.New("no home") })
	if err != nil || o.KeyFile != "" || !o.Ephemeral {
		t.Errorf("--ephemeral: %+v %v (needs no config dir)", o, err)
	}
}

func TestParseRunFlagsNoConfigDir(t *testing.T) {
	_, err := parseRunFlags(nil, func() (string, error) { return "", errors.New("$HOME is not defined") })
	if err == nil {
		t.Fatal("want an error without a config dir")
	}
	var ue *usageError
	if errors.As(err, &ue) {
		t.Error("a missing config dir is a runtime error, not a usage error")
	}
	if !strings.Contains(err.Error(), "--key") || !strings.Contains(err.Error(), "--ephemeral") {
		t.Errorf("error should suggest --key/--ephemeral: %v", err)
	}
}

func TestParseRunFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, "flag provided but not defined: -bogus"},
		{"missing value", []string{"--name"}, "flag needs an argument: -name"},
		{"positional", []string{"lobby"}, `unexpected argument "lobby"`},
		{"bad listen", []string{"--listen", "tcp:4001"}, `--listen "tcp:4001"`},
		{"bad bootstrap", []string{"--bootstrap", "localhost:4001"}, `--bootstrap "localhost:4001"`},
		{"bootstrap without p2p", []string{"--bootstrap", "/ip4/127.0.0.1/tcp/4001"}, "/p2p/<peer ID>"},
		{"bootstrap without transport", []string{"--bootstrap", "/p2p/12D3KooWRC2BWwa8DgLjKea1bHvVPciWr4wLpE3Z3hcDUXtkkdkR"}, "transport address"},
		{"bootstrap bad peer ID", []string{"--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/notapeer"}, `--bootstrap`},
		{"bad dht", []string{"--dht", "on"}, `--dht "on": want off, client, server or auto`},
		{"bad timeout", []string{"--timeout", "soon"}, `invalid value "soon" for flag -timeout`},
		{"negative timeout", []string{"--timeout", "-1s"}, "must be positive"},
		{"timeout without unit", []string{"--timeout", "5"}, `invalid value "5" for flag -timeout: a duration needs a unit, such as 5s or 5ms`},
		{"timeout 0.5 without unit", []string{"--timeout", "0.5"}, "needs a unit, such as 0.5s"},
		{"wait-members without room", []string{"--wait-members", "1"}, "--wait-members needs a --room"},
		{"negative wait-members", []string{"--room", "r", "--wait-members", "-1"}, "--wait-members -1"},
		{"wait-members not a number", []string{"--room", "r", "--wait-members", "two"}, `invalid value "two" for flag -wait-members`},
		{"wait-timeout without unit", []string{"--room", "r", "--wait-members", "1", "--wait-timeout", "10"}, "a duration needs a unit, such as 10s"},
		{"wait-timeout zero", []string{"--room", "r", "--wait-members", "1", "--wait-timeout", "0s"}, "--wait-timeout 0s: must be positive"},
		{"bad log level", []string{"--log-level", "loud"}, `--log-level "loud"`},
		{"bad meta", []string{"--meta", "novalue"}, "want KEY=VALUE"},
		{"empty room", []string{"--room", ""}, "empty room ID"},
		{"key and ephemeral", []string{"--key", "k", "--ephemeral"}, "exclude each other"},
		{"mdns with value", []string{"--mdns=maybe"}, "-mdns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRunFlags(tc.args, fixedConfigDir("/cfg"))
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not contain %q", msg, tc.want)
			}
			if !strings.HasPrefix(msg, "peer run: ") || strings.Contains(msg, "\n") {
				t.Errorf("error %q should be one line starting with \"peer run: \"", msg)
			}
		})
	}
}

func TestParseRunFlagsHelp(t *testing.T) {
	for _, a := range []string{"-h", "--help", "-help"} {
		if _, err := parseRunFlags([]string{a}, fixedConfigDir("/cfg")); !errors.Is(err, errHelp) {
			t.Errorf("%s: err = %v, want errHelp", a, err)
		}
	}
}

func TestSanitizeFileName(t *testing.T) {
	for in, want := range map[string]string{
		"alice":     "alice",
		"Bob-2_x":   "Bob-2_x",
		"../etc":    "_._etc",
		"a/b":       "a_b",
		"élodie":    "_lodie",
		"a b":       "a_b",
		".hidden":   "_hidden",
		"x.y":       "x.y",
		"":          "",
		"日本":        "__",
		"tab\there": "tab_here",
	} {
		if got := sanitizeFileName(in); got != want {
			t.Errorf("sanitizeFileName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := sanitizeFileName(strings.Repeat("a", 100)); len(got) != 64 {
		t.Errorf("long name not truncated to 64: %d", len(got))
	}
}

func TestParseLogLevel(t *testing.T) {
	s, err := parseLogLevel("info")
	if err != nil || s.Default != "info" || len(s.Subsystems) != 0 {
		t.Errorf("info: %+v %v", s, err)
	}
	s, err = parseLogLevel("error, convene/room=debug ,pubsub=warn")
	if err != nil || s.Default != "error" || s.Subsystems["convene/room"] != "debug" || s.Subsystems["pubsub"] != "warn" {
		t.Errorf("list: %+v %v", s, err)
	}
	for _, bad := range []string{"loud", "", ",", "=debug", "convene/room=loud"} {
		if _, err := parseLogLevel(bad); err == nil {
			t.Errorf("parseLogLevel(%q) accepted", bad)
		}
	}
}

func TestParseIDFlags(t *testing.T) {
	o, err := parseIDFlags(nil, fixedConfigDir("/cfg"))
	if err != nil || o.KeyFile != filepath.Join("/cfg", "convene", "key") || o.Create || o.JSON {
		t.Errorf("defaults: %+v %v", o, err)
	}
	o, err = parseIDFlags([]string{"--name", "alice", "--create", "--json", "--listen", "/ip4/127.0.0.1/tcp/4001"}, fixedConfigDir("/cfg"))
	if err != nil || o.KeyFile != filepath.Join("/cfg", "convene", "key-alice") || !o.Create || !o.JSON || len(o.Listen) != 1 {
		t.Errorf("all: %+v %v", o, err)
	}
	for _, args := range [][]string{
		{"--bogus"},
		{"--listen", "nope"},
		{"--key", "k", "--name", "n"},
		{"extra"},
	} {
		_, err := parseIDFlags(args, fixedConfigDir("/cfg"))
		var ue *usageError
		if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "peer id: ") {
			t.Errorf("%v: err = %v, want a usage error starting with \"peer id: \"", args, err)
		}
	}
}
