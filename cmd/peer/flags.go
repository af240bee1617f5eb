package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/convene-p2p/convene/p2p"
	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// stringList is a repeatable string flag: every occurrence appends.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// switchFlag is one of a --x / --no-x pair writing to the same bool, so the
// last one on the command line wins.
type switchFlag struct {
	dst *bool
	val bool
}

func (f switchFlag) String() string {
	if f.dst == nil {
		return ""
	}
	return fmt.Sprint(*f.dst == f.val)
}

func (f switchFlag) Set(v string) error {
	switch v {
	case "true", "1":
		*f.dst = f.val
	case "false", "0":
		*f.dst = !f.val
	default:
		return errors.New("expects no value")
	}
	return nil
}

func (f switchFlag) IsBoolFlag() bool { return true }

// durationFlag is a time.Duration flag whose error says what a bare
// number lacks: flag.Duration answers "--timeout 5" with "parse error".
type durationFlag struct{ dst *time.Duration }

func (f durationFlag) String() string {
	if f.dst == nil {
		return ""
	}
	return f.dst.String()
}

func (f durationFlag) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		if _, numErr := strconv.ParseFloat(v, 64); numErr == nil {
			return fmt.Errorf("a duration needs a unit, such as %ss or %sms", v, v)
		}
		return errors.New("want a duration with a unit, such as 5s, 500ms or 2m")
	}
	*f.dst = d
	return nil
}

// runOptions is everything `peer run` was asked to do, validated.
type runOptions struct {
	Name      string
	Meta      map[string]string
	Rooms     []string // de-duplicated, in command-line order
	Listen    []multiaddr.Multiaddr
	Bootstrap []peer.AddrInfo
	BootStr   []string // the --bootstrap values as given, for messages
	KeyFile   string   // "" with Ephemeral
	Ephemeral bool
	MDNS      bool
	DHT       p2p.DHTMode
	Timeout   time.Duration // 0 = library default
	JSON      bool
	Stay      bool
	// WaitMembers > 0: before reading stdin, wait until the current room
	// has this many members besides this node, for at most WaitTimeout.
	WaitMembers int
	WaitTimeout time.Duration
	LogLevel    string     // "" = leave go-log's own configuration (GOLOG_LOG_LEVEL) alone
	LogQuiet    bool       // LogLevel is the implicit default: also silence libp2p's start-up noise
	Docs        docOptions // doccmd.go
	Metrics     string     // --metrics ADDR: serve /metrics there (metrics.go)
}

// usageError is a command-line mistake: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}

// errHelp asks for the usage text on stdout and exit code 0.
var errHelp = flag.ErrHelp

// newFlagSet returns a silent flag set: errors are reported by the caller
// as one line.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlagSet parses args and turns the flag package's errors into
// usage errors; it rejects positional arguments.
func parseFlagSet(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usagef("peer %s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("peer %s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// parseRunFlags parses and validates `peer run` flags. configDir returns
// the user's configuration directory (os.UserConfigDir in production).
func parseRunFlags(args []string, configDir func() (string, error)) (runOptions, error) {
	var (
		o                          runOptions
		rooms, listen, boot, metas stringList
		dht                        string
		logLevel                   string
	)
	o.MDNS = true
	fs := newFlagSet("run")
	fs.StringVar(&o.Name, "name", "", "")
	fs.Var(&metas, "meta", "")
	fs.Var(&rooms, "room", "")
	fs.Var(&listen, "listen", "")
	fs.Var(&boot, "bootstrap", "")
	fs.StringVar(&o.KeyFile, "key", "", "")
	fs.BoolVar(&o.Ephemeral, "ephemeral", false, "")
	fs.Var(switchFlag{&o.MDNS, true}, "mdns", "")
	fs.Var(switchFlag{&o.MDNS, false}, "no-mdns", "")
	fs.StringVar(&dht, "dht", p2p.DHTAuto.String(), "")
	fs.Var(durationFlag{&o.Timeout}, "timeout", "")
	o.WaitTimeout = defaultWaitTimeout
	fs.IntVar(&o.WaitMembers, "wait-members", 0, "")
	fs.Var(durationFlag{&o.WaitTimeout}, "wait-timeout", "")
	fs.BoolVar(&o.JSON, "json", false, "")
	fs.BoolVar(&o.Stay, "stay", false, "")
	fs.StringVar(&logLevel, "log-level", "", "")
	registerDocFlags(fs, &o)
	registerMetricsFlags(fs, &o)
	if err := parseFlagSet(fs, args); err != nil {
		return o, err
	}

	seen := map[string]bool{}
	for _, r := range rooms {
		if r == "" {
			return o, usagef("peer run: --room: empty room ID")
		}
		if !seen[r] {
			seen[r] = true
			o.Rooms = append(o.Rooms, r)
		}
	}
	for _, m := range metas {
		k, v, ok := strings.Cut(m, "=")
		if !ok || k == "" {
			return o, usagef("peer run: --meta %q: want KEY=VALUE", m)
		}
		if o.Meta == nil {
			o.Meta = map[string]string{}
		}
		o.Meta[k] = v
	}
	for _, s := range listen {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return o, usagef("peer run: --listen %q: %v", s, err)
		}
		o.Listen = append(o.Listen, a)
	}
	for _, s := range boot {
		ai, err := parseBootstrap(s)
		if err != nil {
			return o, usagef("peer run: --bootstrap %q: %v", s, err)
		}
		o.Bootstrap = append(o.Bootstrap, ai)
		o.BootStr = append(o.BootStr, s)
	}
	m, err := p2p.ParseDHTMode(dht)
	if err != nil || strings.TrimSpace(dht) == "" {
		// The empty value parses as auto; on a command line it is a mistake.
		return o, usagef("peer run: --dht %q: want off, client, server or auto", dht)
	}
	o.DHT = m
	if o.Timeout < 0 {
		return o, usagef("peer run: --timeout %v: must be positive", o.Timeout)
	}
	if o.WaitMembers < 0 {
		return o, usagef("peer run: --wait-members %d: want a number of other members, at least 0", o.WaitMembers)
	}
	if o.WaitTimeout <= 0 {
		return o, usagef("peer run: --wait-timeout %v: must be positive", o.WaitTimeout)
	}
	if o.WaitMembers > 0 && len(o.Rooms) == 0 {
		return o, usagef("peer run: --wait-members needs a --room to wait in")
	}
	if logLevel != "" {
		if _, err := parseLogLevel(logLevel); err != nil {
			return o, usagef("peer run: --log-level %q: %v", logLevel, err)
		}
		o.LogLevel = logLevel
	} else if os.Getenv("GOLOG_LOG_LEVEL") == "" {
		o.LogLevel, o.LogQuiet = "error", true
	}
	if o.Ephemeral && o.KeyFile != "" {
		return o, usagef("peer run: --key and --ephemeral exclude each other")
	}
	if !o.Ephemeral && o.KeyFile == "" {
		p, err := defaultKeyFile(o.Name, configDir)
		if err != nil {
			return o, fmt.Errorf("peer run: %w", err)
		}
		o.KeyFile = p
	}
	return o, finishDocFlags(&o, configDir)
}

// parseBootstrap parses a dialable peer address: a multiaddr ending in
// /p2p/<peer ID>.
func parseBootstrap(s string) (peer.AddrInfo, error) {
	a, err := multiaddr.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("want an address ending in /p2p/<peer ID>: %v", err)
	}
	if len(ai.Addrs) == 0 {
		return peer.AddrInfo{}, errors.New("want a transport address before /p2p/<peer ID>")
	}
	return *ai, nil
}

// defaultKeyFile is where `peer run` keeps its identity when --key is not
// given: <config dir>/convene/key, or key-<name> when a name is given, so
// that two peers with different names on one machine (two terminals of
// the README) have different peer IDs.
func defaultKeyFile(name string, configDir func() (string, error)) (string, error) {
	dir, err := configDir()
	if err != nil {
		return "", fmt.Errorf("no user config directory for the key file (%v); pass --key FILE or --ephemeral", err)
	}
	file := "key"
	if name != "" {
		file = "key-" + sanitizeFileName(name)
	}
	return filepath.Join(dir, "convene", file), nil
}

// sanitizeFileName keeps ASCII letters, digits, '.', '-' and '_' and turns
// everything else into '_'.
func sanitizeFileName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == '.' && b.Len() > 0:
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 64 {
		out = out[:64]
	}
	return out
}

// logLevelSpec is a parsed --log-level: a default level and per-subsystem
// levels, in GOLOG_LOG_LEVEL's syntax ("error,convene/room=debug").
type logLevelSpec struct {
	Default    string
	Subsystems map[string]string
}

func parseLogLevel(s string) (logLevelSpec, error) {
	spec := logLevelSpec{Subsystems: map[string]string{}}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, lvl, hasName := strings.Cut(part, "=")
		if !hasName {
			lvl, name = name, ""
		}
		if _, err := golog.Parse(lvl); err != nil {
			return spec, fmt.Errorf("unknown level %q (want debug, info, warn or error)", lvl)
		}
		if hasName {
			if name == "" {
				return spec, fmt.Errorf("empty subsystem name in %q", part)
			}
			spec.Subsystems[name] = lvl
		} else {
			spec.Default = lvl
		}
	}
	if spec.Default == "" && len(spec.Subsystems) == 0 {
		return spec, errors.New("empty level")
	}
	return spec, nil
}

// idOptions is what `peer id` was asked to do.
type idOptions struct {
	KeyFile string
	Create  bool
	JSON    bool
	Listen  []multiaddr.Multiaddr
}

func parseIDFlags(args []string, configDir func() (string, error)) (idOptions, error) {
	var (
		o      idOptions
		name   string
		listen stringList
	)
	fs := newFlagSet("id")
	fs.StringVar(&o.KeyFile, "key", "", "")
	fs.StringVar(&name, "name", "", "")
	fs.BoolVar(&o.Create, "create", false, "")
	fs.BoolVar(&o.JSON, "json", false, "")
	fs.Var(&listen, "listen", "")
	if err := parseFlagSet(fs, args); err != nil {
		return o, err
	}
	for _, s := range listen {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return o, usagef("peer id: --listen %q: %v", s, err)
		}
		o.Listen = append(o.Listen, a)
	}
	if o.KeyFile != "" && name != "" {
		return o, usagef("peer id: --key and --name exclude each other")
	}
	if o.KeyFile == "" {
		p, err := defaultKeyFile(name, configDir)
		if err != nil {
			return o, fmt.Errorf("peer id: %w", err)
		}
		o.KeyFile = p
	}
	return o, nil
}

func parseVersionFlags(args []string) (jsonOut bool, err error) {
	fs := newFlagSet("version")
	fs.BoolVar(&jsonOut, "json", false, "")
	return jsonOut, parseFlagSet(fs, args)
}
