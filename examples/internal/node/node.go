// Package node is what the example programs share: the flags that make a
// peer (--name, --room, --timeout, --no-mdns, --listen, --bootstrap),
// starting a repo from them, and stopping it with goodbyes (Shutdown).
package node

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/convene-p2p/convene/p2p"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
	"github.com/convene-p2p/convene/storage"
)

// Flags are the flags every example program takes. Register defines them;
// the zero value is what a program gets with no flags registered.
type Flags struct {
	// Name is --name, the display name: $USER by default, else "guest".
	Name string
	// Room is --room, the room to join; its default is the program's.
	Room string
	// Timeout is --timeout, the room timeout: a silent member is dropped
	// after this long. 10 s by default.
	Timeout time.Duration
	// NoMDNS is --no-mdns: LAN discovery off.
	NoMDNS bool
	// Listen is --listen, repeatable: multiaddrs to listen on. Empty means
	// all interfaces on random ports (p2p.DefaultListenAddrs).
	Listen []string
	// Bootstrap is --bootstrap, repeatable: multiaddrs of peers to connect
	// to, each ending in /p2p/<id>.
	Bootstrap []string

	// Not flags; a program that keeps state sets them before Start.

	// KeyFile, if set, is where the peer's key is kept (p2p.Config.KeyFile),
	// so that the peer keeps its ID across restarts. Empty: a new ID each run.
	KeyFile string
	// Storage, if set, keeps the repo's documents (repo.Config.Storage).
	// Nil: memory only.
	Storage storage.Adapter
}

// Register defines the flags on fs. room is the default of --room and
// roomUsage its help text.
func (f *Flags) Register(fs *flag.FlagSet, room, roomUsage string) {
	fs.StringVar(&f.Name, "name", defaultName(), "your display name")
	fs.StringVar(&f.Room, "room", room, roomUsage)
	f.Timeout = 10 * time.Second
	DurationVar(fs, &f.Timeout, "timeout", "room timeout: a silent member is dropped after this long (a duration with a unit: 10s)")
	fs.BoolVar(&f.NoMDNS, "no-mdns", false, "turn LAN discovery (mDNS) off")
	fs.Var((*list)(&f.Listen), "listen", "multiaddr to listen on (repeatable; default: all interfaces, random ports)")
	fs.Var((*list)(&f.Bootstrap), "bootstrap", "multiaddr of a peer to connect to, ending in /p2p/<id> (repeatable)")
}

// Start builds the repo the flags describe, writes "listening on ADDR" to
// w for each of its addresses (each line after prefix), and connects to
// every --bootstrap peer in turn. Rooms joined with a zero room.Config get
// room.DefaultConfig with --timeout as their Timeout, and heartbeat and
// linger derived from it.
//
// Start first silences the standard logger: the mDNS library prints
// interface warnings with it. Its errors are the repo's, unwrapped, for
// the program to print after its own name. On error the repo is closed.
func (f *Flags) Start(ctx context.Context, w io.Writer, prefix string) (*repo.Repo, error) {
	log.SetOutput(io.Discard)

	rcfg := room.DefaultConfig()
	rcfg.Timeout, rcfg.HeartbeatInterval, rcfg.Linger = f.Timeout, 0, 0
	rp, err := repo.New(ctx, repo.Config{
		Name:    f.Name,
		Host:    p2p.Config{ListenAddrs: f.Listen, NoMDNS: f.NoMDNS, KeyFile: f.KeyFile},
		Room:    rcfg,
		Storage: f.Storage,
	})
	if err != nil {
		return nil, err
	}
	for _, a := range rp.Addrs() {
		fmt.Fprintf(w, "%slistening on %s\n", prefix, a)
	}
	for _, b := range f.Bootstrap {
		if err := rp.Connect(ctx, b); err != nil {
			_ = rp.Close()
			return nil, err
		}
	}
	return rp, nil
}

// ShutdownTimeout bounds Shutdown: the peer CLI's bound.
const ShutdownTimeout = 5 * time.Second

// Shutdown stops rp gracefully (repo.Repo.Shutdown: a goodbye in every
// room, so the others see this peer leave at once), bounded by
// ShutdownTimeout.
func Shutdown(rp *repo.Repo) error {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	return rp.Shutdown(ctx)
}

func defaultName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "guest"
}

// DurationVar defines a time.Duration flag whose default is *d's current
// value. Unlike flag.DurationVar, a bare number ("--timeout 5") is an
// error that says a unit is needed, not "parse error".
func DurationVar(fs *flag.FlagSet, d *time.Duration, name, usage string) {
	fs.Var(durationValue{d}, name, usage)
}

type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, numErr := strconv.ParseFloat(s, 64); numErr == nil {
			return fmt.Errorf("a duration needs a unit, such as %ss or %sms", s, s)
		}
		return errors.New("want a duration with a unit, such as 5s, 500ms or 2m")
	}
	*v.d = d
	return nil
}

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }
