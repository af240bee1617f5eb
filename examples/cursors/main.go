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
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/convene-p2p/convene/examples/internal/node"
	"github.com/convene-p2p/convene/room"
)

func main() {
	os.Exit(run())
}

func run() int {
	var nf node.Flags
	nf.Register(flag.CommandLine, "cursors", "room to join")
	httpAddr := flag.String("http", "127.0.0.1:0", "address of the local web page")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "cursors: unexpected argument %q\n", flag.Arg(0))
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rp, err := nf.Start(ctx, os.Stdout, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "cursors: %v\n", err)
		return 1
	}
	defer node.Shutdown(rp) // leaves the room: the others see us go at once
	rm, err := rp.JoinRoom(ctx, nf.Room, room.Config{})
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
	fmt.Printf("open http://%s/ in a browser (room %q, you are %s)\n", ln.Addr(), nf.Room, nf.Name)

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
