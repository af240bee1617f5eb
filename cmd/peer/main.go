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
// SIGINT and SIGTERM cancel the context that `peer run` watches, which
// then shuts down cleanly; after the first signal the default handling is
// restored, so a second Ctrl-C kills the process at once.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		stop()
	}()
	defer wg.Wait()
	defer stop()
	return runContext(ctx, args, stdin, stdout, stderr)
}
