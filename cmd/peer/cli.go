package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// Exit codes.
const (
	exitOK      = 0 // success, including a clean shutdown on EOF, quit or a signal
	exitRuntime = 1 // the node could not start or a key file could not be used
	exitUsage   = 2 // bad command line: flags, addresses, room IDs
	exitWait    = 3 // --wait-members: too few members came within --wait-timeout
)

const usageText = `peer runs a Convene node: peer-to-peer rooms and presence over libp2p.

Usage:
  peer run [flags]       run a node, join rooms, print events, read commands on stdin
  peer id [flags]        print the peer ID of a key file
  peer version [--json]  print the version
  peer help [command]    print help

Run "peer help run" for the flags of run, and "help" on a running node's
stdin for its commands. Full reference: docs/CLI.md.
`

const runUsageText = `Usage: peer run [flags]

Starts a node, joins the --room rooms, prints its peer ID and listen
addresses, then prints room events and reads commands from stdin until
EOF, "quit", SIGINT or SIGTERM (it then leaves its rooms, saying goodbye).

Flags:
  --name NAME          display name shown to other members (self-asserted)
  --meta KEY=VALUE     display metadata shown to other members (repeatable)
  --room ROOM          room to join at start (repeatable); the first is the current room
  --listen MULTIADDR   address to listen on (repeatable); default: TCP and QUIC on
                       all interfaces, random ports
  --bootstrap ADDR     peer to connect to at start, a multiaddr ending in
                       /p2p/<peer ID> (repeatable); with --dht auto this also
                       turns the DHT on
  --key FILE           identity key file, created if missing (mode 0600);
                       default: <user config dir>/convene/key, or key-<name> with --name
  --ephemeral          use a new random identity, no key file
  --mdns, --no-mdns    LAN discovery by mDNS (default on)
  --dht MODE           off, client, server or auto (default auto: a DHT server
                       when --bootstrap is given, no DHT otherwise)
  --timeout DURATION   room timeout: a silent member is dropped after it
                       (default 30s; heartbeats every timeout/3)
  --data DIR           keep documents in DIR/docs.bolt; default: <user config
                       dir>/convene/docs.bolt (docs-<name>.bolt with --name;
                       memory only with --ephemeral)
  --no-store           keep documents in memory only
  --doc ID             open document ID at start and print its changes, ours
                       and other peers' (repeatable; the first is current)
  --json               print one JSON object per line (NDJSON; schema in docs/CLI.md)
  --stay               keep running after stdin reaches EOF, until SIGINT/SIGTERM
  --wait-members N     before reading stdin, wait until the first --room has N
                       members besides you (exit 3 if they do not come)
  --wait-timeout D     how long --wait-members waits (default 30s)
  --metrics ADDR       serve Prometheus metrics at http://ADDR/metrics (host:port,
                       e.g. 127.0.0.1:9464; port 0 picks one, see the metrics event)
  --log-level LEVEL    go-log level for libp2p and Convene logs on stderr:
                       debug, info, warn, error (default error, or GOLOG_LOG_LEVEL);
                       per subsystem as in "error,convene/room=debug"

Durations take a unit: 500ms, 5s, 2m.

Exit status: 0 after a clean shutdown, 1 if the node cannot start, 2 for a
bad command line, 3 if --wait-members was not met in time.
`

const idUsageText = `Usage: peer id [flags]

Prints the peer ID of an identity key file (the one "peer run" uses with the
same flags).

Flags:
  --key FILE          key file; default: <user config dir>/convene/key
  --name NAME         use the default key file of "peer run --name NAME"
  --create            create the key file if it does not exist (without it,
                      a missing file is an error)
  --listen MULTIADDR  also print MULTIADDR/p2p/<peer ID> (repeatable), the
                      address to give to --bootstrap for a node started with
                      this --listen
  --json              print one JSON object
`

// runContext dispatches the subcommand. ctx is cancelled on the first
// SIGINT/SIGTERM (a graceful stop), abort on the second (stop at once).
func runContext(ctx, abort context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		o, err := parseRunFlags(rest, os.UserConfigDir)
		if err != nil {
			return reportParse(err, runUsageText, stdout, stderr)
		}
		return runNode(ctx, abort, o, stdin, stdout, stderr)
	case "id":
		o, err := parseIDFlags(rest, os.UserConfigDir)
		if err != nil {
			return reportParse(err, idUsageText, stdout, stderr)
		}
		return runID(o, stdout, stderr)
	case "version", "--version", "-version":
		jsonOut, err := parseVersionFlags(rest)
		if err != nil {
			return reportParse(err, "Usage: peer version [--json]\n", stdout, stderr)
		}
		p := newPrinter(stdout, stderr, jsonOut)
		p.emit(buildVersion())
		return exitOK
	case "help", "-h", "-help", "--help":
		switch {
		case len(rest) == 0:
			fmt.Fprint(stdout, usageText)
		case len(rest) == 1 && rest[0] == "run":
			fmt.Fprint(stdout, runUsageText)
		case len(rest) == 1 && rest[0] == "id":
			fmt.Fprint(stdout, idUsageText)
		case len(rest) == 1 && rest[0] == "version":
			fmt.Fprint(stdout, "Usage: peer version [--json]\n")
		default:
			fmt.Fprintf(stderr, "peer help: unknown command %q (commands: run, id, version, help)\n", strings.Join(rest, " "))
			return exitUsage
		}
		return exitOK
	}
	fmt.Fprintf(stderr, "peer: unknown command %q (commands: run, id, version, help)\n", cmd)
	return exitUsage
}

// reportParse prints a flag-parsing outcome: the usage text on stdout for
// -h/--help, otherwise one error line on stderr.
func reportParse(err error, usage string, stdout, stderr io.Writer) int {
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintln(stderr, oneLine(err.Error()))
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitRuntime
}

// oneLine joins a possibly multi-line message into one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// fail prints one error line on stderr and returns code.
func fail(stderr io.Writer, code int, format string, a ...any) int {
	fmt.Fprintln(stderr, oneLine(fmt.Sprintf(format, a...)))
	return code
}

type versionEvent struct {
	Version  string `json:"version"`
	Go       string `json:"go"`
	Revision string `json:"revision"`
	Modified bool   `json:"modified"`
}

func (versionEvent) eventType() string { return "version" }

func (e versionEvent) human() string {
	s := "peer " + e.Version + " (" + e.Go
	if e.Revision != "" {
		s += ", " + e.Revision
		if e.Modified {
			s += "+modified"
		}
	}
	return s + ")"
}

func buildVersion() versionEvent {
	v := versionEvent{Version: "(devel)", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}
