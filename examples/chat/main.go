// Command chat is a terminal chat over a Convene room and a document: the
// member list and "is typing…" indicators are the room's (presence that
// expires by itself, SetTTL, and is cleared when the line is sent); the
// chat lines are kept in a document, stored under --data and synced with
// the peers, so a restart shows the history and lines written while apart
// merge.
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
	"path/filepath"
	"syscall"
	"time"

	"github.com/convene-p2p/convene/examples/internal/node"
	"github.com/convene-p2p/convene/storage"
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
	data := flag.String("data", "", "directory for the chat's key and stored messages (default: <user config dir>/convene-chat/<name>)")
	noStore := flag.Bool("no-store", false, "keep the messages in memory only, and use a new peer ID")
	docID := flag.String("doc", "", "ID of the messages document (default: <room>-messages)")
	history := flag.Int("history", DefaultHistory, "how many earlier lines to show at start (negative: none)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chat: unexpected argument %q\n", flag.Arg(0))
		return 2
	}
	if *noStore && *data != "" {
		fmt.Fprintln(os.Stderr, "chat: --data and --no-store exclude each other")
		return 2
	}
	if !*noStore {
		dir := *data
		if dir == "" {
			cfg, err := os.UserConfigDir()
			if err != nil {
				fmt.Fprintf(os.Stderr, "chat: no user config directory (%v); pass --data DIR or --no-store\n", err)
				return 1
			}
			dir = filepath.Join(cfg, "convene-chat", nf.Name)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			fmt.Fprintf(os.Stderr, "chat: %v\n", err)
			return 1
		}
		st, err := storage.OpenBolt(filepath.Join(dir, "messages.bolt"), storage.BoltOptions{LockTimeout: time.Second})
		if err != nil {
			fmt.Fprintf(os.Stderr, "chat: %v (is another chat using %s? pass another --data)\n", err, dir)
			return 1
		}
		defer st.Close()
		nf.Storage, nf.KeyFile = st, filepath.Join(dir, "key")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rp, err := nf.Start(ctx, os.Stdout, "* ")
	if err != nil {
		fmt.Fprintf(os.Stderr, "chat: %v\n", err)
		return 1
	}
	defer node.Shutdown(rp) // says goodbye: the others see us leave at once

	opt := Options{Room: nf.Room, Doc: *docID, History: *history, TypingTTL: typingTTL, WaitMembers: *waitMembers, WaitTimeout: waitTimeout}
	if opt.History == 0 {
		opt.History = -1 // --history 0: none (Options' zero is the default)
	}
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
