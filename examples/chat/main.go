// Command chat is a terminal chat over a Convene room: chat lines travel as
// room broadcasts, and "is typing…" indicators as presence that expires by
// itself (SetTTL) and is cleared when the line is sent.
//
//	go run ./examples/chat --name alice     # terminal 1
//	go run ./examples/chat --name bob       # terminal 2 (mDNS finds alice)
//
// See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/convene-p2p/convene/p2p"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	os.Exit(run())
}

func run() int {
	var (
		name      = flag.String("name", defaultName(), "your display name")
		roomID    = flag.String("room", "chat", "room to chat in")
		typingTTL = flag.Duration("typing-ttl", DefaultTypingTTL, "how long \"is typing\" stays up after a keystroke")
		timeout   = flag.Duration("timeout", 10*time.Second, "room timeout: a silent member is dropped after this long")
		noMDNS    = flag.Bool("no-mdns", false, "turn LAN discovery (mDNS) off")
		listen    listFlag
		bootstrap listFlag
	)
	flag.Var(&listen, "listen", "multiaddr to listen on (repeatable; default: all interfaces, random ports)")
	flag.Var(&bootstrap, "bootstrap", "multiaddr of a peer to connect to, ending in /p2p/<id> (repeatable)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chat: unexpected argument %q\n", flag.Arg(0))
		return 2
	}
	// The mDNS library prints interface warnings with the standard logger.
	log.SetOutput(io.Discard)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rcfg := room.DefaultConfig()
	rcfg.Timeout = *timeout
	rcfg.HeartbeatInterval = 0
	rcfg.Linger = 0
	rp, err := repo.New(ctx, repo.Config{
		Name: *name,
		Host: p2p.Config{ListenAddrs: listen, NoMDNS: *noMDNS},
		Room: rcfg,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "chat: %v\n", err)
		return 1
	}
	defer rp.Close()
	for _, a := range rp.Addrs() {
		fmt.Printf("* listening on %s\n", a)
	}
	for _, b := range bootstrap {
		if err := rp.Connect(ctx, b); err != nil {
			fmt.Fprintf(os.Stderr, "chat: %v\n", err)
			return 1
		}
	}

	opt := Options{Room: *roomID, TypingTTL: *typingTTL}
	if restore, ok := rawTerminal(); ok {
		defer restore()
		opt.Echo = true
	}
	if err := Run(ctx, rp, os.Stdin, os.Stdout, opt); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "chat: %v\n", err)
		return 1
	}
	return 0
}

func defaultName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "guest"
}

// rawTerminal switches a terminal on stdin to byte-at-a-time input without
// echo or signal keys (Run echoes and handles Ctrl-C itself), using stty so
// that no terminal library is needed. It reports false, changing nothing,
// when stdin is not a terminal or stty is missing.
func rawTerminal() (restore func(), ok bool) {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil, false
	}
	stty := func(args ...string) (string, error) {
		cmd := exec.Command("stty", args...)
		cmd.Stdin = os.Stdin
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	saved, err := stty("-g")
	if err != nil {
		return nil, false
	}
	if _, err := stty("-icanon", "-echo", "-isig", "min", "1", "time", "0"); err != nil {
		return nil, false
	}
	return func() {
		_, _ = stty(saved)
		fmt.Println()
	}, true
}
