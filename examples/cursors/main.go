// Command cursors shows live multiplayer cursors over a Convene room. Each
// peer serves a small web page on 127.0.0.1; mouse moves in the page become
// the peer's "cursor" presence, and every member's cursor and name are
// drawn live.
//
//	go run ./examples/cursors --name alice    # prints http://127.0.0.1:PORT/
//	go run ./examples/cursors --name bob      # another terminal; mDNS finds alice
//
// See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
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
		roomID    = flag.String("room", "cursors", "room to join")
		httpAddr  = flag.String("http", "127.0.0.1:0", "address of the local web page")
		timeout   = flag.Duration("timeout", 10*time.Second, "room timeout: a silent member is dropped after this long")
		noMDNS    = flag.Bool("no-mdns", false, "turn LAN discovery (mDNS) off")
		listen    listFlag
		bootstrap listFlag
	)
	flag.Var(&listen, "listen", "multiaddr to listen on (repeatable; default: all interfaces, random ports)")
	flag.Var(&bootstrap, "bootstrap", "multiaddr of a peer to connect to, ending in /p2p/<id> (repeatable)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cursors: unexpected argument %q\n", flag.Arg(0))
		return 2
	}
	log.SetOutput(io.Discard) // the mDNS library's interface warnings

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rcfg := room.DefaultConfig()
	rcfg.Timeout, rcfg.HeartbeatInterval, rcfg.Linger = *timeout, 0, 0
	rp, err := repo.New(ctx, repo.Config{
		Name: *name,
		Host: p2p.Config{ListenAddrs: listen, NoMDNS: *noMDNS},
		Room: rcfg,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cursors: %v\n", err)
		return 1
	}
	defer rp.Close() // leaves the room: the others see us go at once
	for _, a := range rp.Addrs() {
		fmt.Printf("listening on %s\n", a)
	}
	for _, b := range bootstrap {
		if err := rp.Connect(ctx, b); err != nil {
			fmt.Fprintf(os.Stderr, "cursors: %v\n", err)
			return 1
		}
	}
	rm, err := rp.JoinRoom(ctx, *roomID, room.Config{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cursors: %v\n", err)
		return 1
	}

	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cursors: %v\n", err)
		return 1
	}
	srv := NewServer(rm)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	fmt.Printf("open http://%s/ in a browser (room %q, you are %s)\n", ln.Addr(), *roomID, *name)

	select {
	case <-ctx.Done():
		srv.Close() // ends the event streams, so that Shutdown does not wait for them
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		err = <-served
	case err = <-served:
		srv.Close()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "cursors: %v\n", err)
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
