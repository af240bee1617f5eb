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
	"os"
	"os/signal"
	"syscall"

	"github.com/convene-p2p/convene/examples/internal/node"
)

func main() {
	os.Exit(run())
}

func run() int {
	var nf node.Flags
	nf.Register(flag.CommandLine, "chat", "room to chat in")
	typingTTL := flag.Duration("typing-ttl", DefaultTypingTTL, "how long \"is typing\" stays up after a keystroke")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chat: unexpected argument %q\n", flag.Arg(0))
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rp, err := nf.Start(ctx, os.Stdout, "* ")
	if err != nil {
		fmt.Fprintf(os.Stderr, "chat: %v\n", err)
		return 1
	}
	defer rp.Close()

	opt := Options{Room: nf.Room, TypingTTL: *typingTTL}
	if restore, ok := rawTerminal(); ok {
		defer restore()
		opt.Echo = true
	}
	if err := Run(ctx, rp, os.Stdin, os.Stdout, opt); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, err) // Run's errors already start with "chat: "
		return 1
	}
	return 0
}

// rawTerminal switches a terminal on stdin to byte-at-a-time input without
// echo or signal keys (Run echoes and handles Ctrl-C itself). It reports
// false, changing nothing, when stdin is not a terminal or stty is missing.
func rawTerminal() (restore func(), ok bool) {
	reset, ok := node.RawTerminal(os.Stdin)
	if !ok {
		return nil, false
	}
	return func() {
		reset()
		fmt.Println()
	}, true
}
