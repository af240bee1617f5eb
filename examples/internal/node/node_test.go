package node

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The shared flags have the examples' defaults (--name from $USER, else
// "guest"; the program's room and its help text; --timeout 10s), and
// --listen and --bootstrap keep every occurrence, in order.
func TestRegisterDefaultsAndRepeatableFlags(t *testing.T) {
	for user, want := range map[string]string{"zoe": "zoe", "": "guest"} {
		t.Setenv("USER", user)
		var f Flags
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		f.Register(fs, "hall", "room to meet in")
		if err := fs.Parse(nil); err != nil {
			t.Fatal(err)
		}
		if f.Name != want || f.Room != "hall" || f.Timeout != 10*time.Second || f.NoMDNS || f.Listen != nil || f.Bootstrap != nil {
			t.Fatalf("USER=%q: defaults %+v", user, f)
		}
		if u := fs.Lookup("room").Usage; u != "room to meet in" {
			t.Fatalf("--room usage %q", u)
		}
	}

	var f Flags
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	f.Register(fs, "hall", "room to meet in")
	err := fs.Parse([]string{"--name", "ann", "--room", "r", "--timeout", "2s", "--no-mdns",
		"--listen", "/a", "--bootstrap", "/b1", "--listen", "/c", "--bootstrap", "/b2"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "ann" || f.Room != "r" || f.Timeout != 2*time.Second || !f.NoMDNS ||
		!slices.Equal(f.Listen, []string{"/a", "/c"}) || !slices.Equal(f.Bootstrap, []string{"/b1", "/b2"}) {
		t.Fatalf("parsed %+v", f)
	}

	// The help shows no default for the repeatable flags.
	var help strings.Builder
	fs.SetOutput(&help)
	fs.PrintDefaults()
	if strings.Contains(help.String(), `(default "/a,/c")`) || !strings.Contains(help.String(), `(default "hall")`) {
		t.Fatalf("help:\n%s", help.String())
	}
}

// Start writes one "listening on" line per address after the prefix, and
// connects to every --bootstrap peer.
func TestStartListensAndDialsBootstrap(t *testing.T) {
	var outA strings.Builder
	a := Flags{Name: "a", Timeout: 10 * time.Second, NoMDNS: true, Listen: []string{"/ip4/127.0.0.1/tcp/0"}}
	ra, err := a.Start(t.Context(), &outA, "* ")
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	var want strings.Builder
	for _, addr := range ra.Addrs() {
		fmt.Fprintf(&want, "* listening on %s\n", addr)
	}
	if outA.String() != want.String() || len(ra.Addrs()) != 1 {
		t.Fatalf("Start wrote %q, want %q", outA.String(), want.String())
	}
	if ra.Self().Name != "a" {
		t.Fatalf("name %q", ra.Self().Name)
	}

	b := Flags{Name: "b", Timeout: 10 * time.Second, NoMDNS: true, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
		Bootstrap: []string{ra.Addrs()[0].String()}}
	rb, err := b.Start(t.Context(), io.Discard, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	if c := rb.Host().Network().Connectedness(ra.ID()); c != network.Connected {
		t.Fatalf("b's connectedness to a: %v", c)
	}
}

// A --bootstrap that fails is returned as the repo's error, and the repo
// is closed (goleak checks that nothing is left running).
func TestStartFailedBootstrapCloses(t *testing.T) {
	f := Flags{NoMDNS: true, Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: []string{"/ip4/127.0.0.1/tcp/1"}}
	rp, err := f.Start(t.Context(), io.Discard, "")
	if err == nil || rp != nil || !strings.HasPrefix(err.Error(), "repo: ") {
		t.Fatalf("Start = %v, %v; want nil and a repo error", rp, err)
	}
}

// --timeout takes a duration with a unit; a bare number is an error that
// says so (flag.Duration only says "parse error").
func TestTimeoutNeedsAUnit(t *testing.T) {
	for arg, want := range map[string]string{
		"5":    `invalid value "5" for flag -timeout: a duration needs a unit, such as 5s or 5ms`,
		"soon": `invalid value "soon" for flag -timeout: want a duration with a unit, such as 5s, 500ms or 2m`,
	} {
		var f Flags
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f.Register(fs, "hall", "room")
		err := fs.Parse([]string{"--timeout", arg})
		if err == nil || err.Error() != want {
			t.Errorf("--timeout %s: error %v, want %q", arg, err, want)
		}
	}
	var f Flags
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	f.Register(fs, "hall", "room")
	if err := fs.Parse([]string{"--timeout", "1500ms"}); err != nil || f.Timeout != 1500*time.Millisecond {
		t.Errorf("--timeout 1500ms: %v, %v", err, f.Timeout)
	}
}
