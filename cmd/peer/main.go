// Command peer runs a Convene node: it joins rooms, prints what happens in
// them (members joining and leaving, presence changes, broadcasts) as text
// or NDJSON, and takes commands on stdin. See docs/CLI.md.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
)

func init() {
	// go-libp2p logs through slog; route it through go-log so that
	// --log-level and GOLOG_LOG_LEVEL govern libp2p and Convene alike.
	// This must happen before the first libp2p log line.
	gologshim.SetDefaultHandler(golog.SlogHandler())
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole program minus os.Exit: it returns the exit code.
// The first SIGINT or SIGTERM cancels ctx, which `peer run` watches: it
// then shuts down gracefully (goodbyes, bounded). A second one cancels
// abort, which ends that shutdown at once (no more goodbyes or waiting on
// the network; documents are still saved). After the second, the default
// handling is restored, so a third kills the process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	abort, cancelAbort := context.WithCancel(context.Background())
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if forwardSignals(sigs, done, cancel, cancelAbort) {
			signal.Stop(sigs)
		}
	}()
	defer wg.Wait()
	defer close(done)
	defer signal.Stop(sigs)
	defer cancelAbort()
	defer cancel()
	return runContext(ctx, abort, args, stdin, stdout, stderr)
}

// forwardSignals calls stops in turn, one for each signal received on
// sigs, until done is closed; it reports whether every stop was called.
func forwardSignals(sigs <-chan os.Signal, done <-chan struct{}, stops ...context.CancelFunc) bool {
	for _, stop := range stops {
		select {
		case <-sigs:
			stop()
		case <-done:
			return false
		}
	}
	return true
}
