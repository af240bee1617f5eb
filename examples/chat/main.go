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
	typingTTL := DefaultTypingTTL
	node.DurationVar(flag.CommandLine, &typingTTL, "typing-ttl", "how long \"is typing\" stays up after a keystroke")
	waitMembers := flag.Int("wait-members", -1, "before reading input, wait until the room has this many other members (default: 1 when stdin is not a terminal, 0 in a terminal)")
	waitTimeout := DefaultWaitTimeout
	node.DurationVar(flag.CommandLine, &waitTimeout, "wait-timeout", "how long --wait-members waits; the chat exits with status 1 if nobody came")
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

	opt := Options{Room: nf.Room, TypingTTL: typingTTL, WaitMembers: *waitMembers, WaitTimeout: waitTimeout}
	if restore, ok := rawTerminal(); ok {
		defer restore()
		opt.Echo = true
	}
	if opt.WaitMembers < 0 {
		// A person at a terminal sees who is here; a script piping lines
		// in would otherwise talk to an empty room and leave.
		opt.WaitMembers = 0
		if fi, err := os.Stdin.Stat(); err == nil && fi.Mode()&os.ModeCharDevice == 0 {
			opt.WaitMembers = 1
		}
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
