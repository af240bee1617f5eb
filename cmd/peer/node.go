package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"slices"
	"sort"
	"sync"
	"time"

	golog "github.com/ipfs/go-log/v2"

	"github.com/convene-p2p/convene/internal/meet"
	"github.com/convene-p2p/convene/internal/stop"
	"github.com/convene-p2p/convene/p2p"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

// Timeouts of the shell around the Repo.
const (
	commandTimeout   = 10 * time.Second // one stdin command (join, leave, say)
	bootstrapTimeout = 10 * time.Second // one --bootstrap connection
	shutdownTimeout  = 5 * time.Second  // the graceful shutdown at exit: goodbyes in every room
)

// node is a running `peer run`: the Repo and the shell around it. The
// command loop (loop) owns rooms, order and current; watcher goroutines
// only print, and report a room that vanished through gone.
type node struct {
	opts runOptions
	// abort is cancelled by a second signal: shutdown then stops at once.
	abort context.Context
	repo  *repo.Repo
	out   *printer
	self  room.PeerID

	rooms   map[string]*joinedRoom
	order   []string // joined rooms, in join order
	current string

	docs     docShell // doccmd.go
	gone     chan *joinedRoom
	wg       sync.WaitGroup // watcher goroutines
	stopping bool           // shutdown: no more current-room events
}

// joinedRoom is a room the user joined, with the goroutine that prints
// its events.
type joinedRoom struct {
	id        string
	room      *room.Room
	cancel    context.CancelFunc
	done      chan struct{} // closed when the watcher goroutine returns
	joined    time.Time     // when it was joined
	lastWrite time.Time     // the last successful set, del or say (for flushBeforeLeave)
}

// line is one stdin line, or why it could not be read.
type line struct {
	text string
	err  error
}

// runNode runs `peer run` until EOF, quit or ctx is cancelled.
func runNode(ctx, abort context.Context, o runOptions, stdin io.Reader, stdout, stderr io.Writer) int {
	for _, id := range o.Rooms {
		if err := room.ValidateID(id); err != nil {
			return fail(stderr, exitUsage, "peer run: --room: %v", err)
		}
	}
	setupLogging(o.LogLevel, o.LogQuiet, stderr)

	if o.KeyFile != "" {
		unlock, err := lockKey(o.KeyFile)
		if err != nil {
			return fail(stderr, exitRuntime, "peer run: %v", err)
		}
		defer unlock()
	}

	store, closeStore, err := openDocStore(o.Docs)
	if err != nil {
		return fail(stderr, exitRuntime, "peer run: %v", err)
	}
	defer closeStore()

	cfg := repo.Config{
		Storage: store,
		Name:    o.Name,
		Meta:    o.Meta,
		Host: p2p.Config{
			KeyFile: o.KeyFile,
			NoMDNS:  !o.MDNS,
		},
	}
	for _, a := range o.Listen {
		cfg.Host.ListenAddrs = append(cfg.Host.ListenAddrs, a.String())
	}
	cfg.Host.DHT = o.DHT
	if o.DHT != p2p.DHTOff {
		// The DHT bootstraps from these peers (and keeps retrying);
		// with the DHT off they are only dialled below.
		cfg.Host.Bootstrap = o.BootStr
	}
	if o.Timeout > 0 {
		cfg.Room = room.Config{Timeout: o.Timeout}
	}

	var metrics *metricsServer
	if o.Metrics != "" {
		if metrics, err = startMetrics(o.Metrics); err != nil {
			return fail(stderr, exitRuntime, "peer run: %v", err)
		}
		defer metrics.close()
		cfg.Metrics = metrics.reg
	}

	r, err := repo.New(ctx, cfg)
	if err != nil {
		return fail(stderr, exitRuntime, "peer run: cannot start the node: %v", err)
	}
	n := &node{
		opts:  o,
		abort: abort,
		repo:  r,
		out:   newPrinter(stdout, stderr, o.JSON),
		self:  r.Self().Peer,
		rooms: map[string]*joinedRoom{},
		gone:  make(chan *joinedRoom),
	}
	n.emitReady()
	if metrics != nil {
		n.out.emit(metricsEvent{URL: metrics.url()})
	}
	n.bootstrap(ctx)
	for _, id := range o.Rooms {
		if err := n.join(ctx, id); err != nil {
			n.stopWatchers()
			_ = r.Close()
			return fail(stderr, exitRuntime, "peer run: %v", err)
		}
	}
	if err := n.openStartDocs(ctx); err != nil {
		n.stopWatchers()
		_ = r.Close()
		n.stopDocWatchers()
		return fail(stderr, exitRuntime, "peer run: %v", err)
	}
	if o.WaitMembers > 0 {
		if err := n.waitMembers(ctx, n.rooms[n.current], o.WaitMembers, o.WaitTimeout); err != nil {
			if ctx.Err() != nil {
				return n.shutdown("signal")
			}
			n.out.emit(errorEvent{Error: oneLine("--wait-members: " + err.Error())})
			if code := n.shutdown("wait-timeout"); code != exitOK {
				return code
			}
			return exitWait
		}
	}
	reason := n.loop(ctx, stdin)
	return n.shutdown(reason)
}

// quietSubsystems are loggers silenced under the implicit default level:
// libp2p's fx wiring logs a failed start (a listen address that cannot be
// bound) three times at error level, although New returns the same error
// and the CLI prints it as its one line.
var quietSubsystems = []string{"p2p-config"}

// setupLogging applies --log-level (if set) to every go-log logger, which
// includes go-libp2p's (see init). quiet (no --log-level, no
// GOLOG_LOG_LEVEL) also silences quietSubsystems. The standard library
// logger, which a dependency (zeroconf, for mDNS) writes to, is silenced
// unless the default level is info or debug.
func setupLogging(level string, quiet bool, stderr io.Writer) {
	if level == "" {
		return
	}
	spec, err := parseLogLevel(level)
	if err != nil {
		return // parseRunFlags has already rejected it
	}
	if spec.Default != "" {
		_ = golog.SetLogLevel("*", spec.Default)
	}
	for name, l := range spec.Subsystems {
		_ = golog.SetLogLevel(name, l)
	}
	if quiet {
		for _, name := range quietSubsystems {
			_ = golog.SetLogLevel(name, "fatal")
		}
	}
	switch spec.Default {
	case "debug", "info":
		stdlog.SetOutput(stderr)
	default:
		stdlog.SetOutput(io.Discard)
	}
}

func (n *node) emitReady() {
	ev := readyEvent{
		Peer:  n.repo.ID().String(),
		Name:  n.opts.Name,
		Addrs: []string{},
		Key:   n.opts.KeyFile,
	}
	for _, a := range n.repo.Addrs() {
		ev.Addrs = append(ev.Addrs, a.String())
	}
	n.out.emit(ev)
	if err := n.repo.MDNSError(); err != nil {
		// The node runs on, but nobody on the LAN will find it by itself.
		n.out.emit(errorEvent{Error: oneLine(fmt.Sprintf("LAN discovery (mDNS) is not running: %v; use --bootstrap to connect", err))})
	}
}

// bootstrap dials every --bootstrap peer, in parallel. A peer that cannot
// be reached is reported and skipped: the node keeps running (mDNS, the
// DHT and later peers may still connect it).
func (n *node) bootstrap(ctx context.Context) {
	var wg sync.WaitGroup
	for i, addr := range n.opts.BootStr {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, bootstrapTimeout)
			defer cancel()
			if err := n.repo.Connect(cctx, addr); err != nil {
				n.out.emit(errorEvent{Error: oneLine(fmt.Sprintf("bootstrap %s: %v", addr, err))})
				return
			}
			n.out.emit(connectedEvent{Peer: n.opts.Bootstrap[i].ID.String(), Addr: addr})
		}()
	}
	wg.Wait()
}

// join joins a room and starts printing its events.
func (n *node) join(ctx context.Context, id string) error {
	if _, ok := n.rooms[id]; ok {
		return fmt.Errorf("already in room %q", id)
	}
	jctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	rm, err := n.repo.JoinRoom(jctx, id, room.Config{})
	if err != nil {
		return err
	}
	wctx, wcancel := context.WithCancel(context.Background())
	jr := &joinedRoom{id: id, room: rm, cancel: wcancel, done: make(chan struct{}), joined: time.Now()}
	w := rm.Watch()
	n.rooms[id] = jr
	n.order = append(n.order, id)
	becameCurrent := n.current == ""
	if becameCurrent {
		n.current = id
	}
	n.out.emit(roomJoinedEvent{Room: id, Current: becameCurrent})
	n.wg.Add(1)
	go n.watch(wctx, jr, w)
	return nil
}

// leave says goodbye in a room and stops printing its events. Presence
// written just before is published first (meet.FlushBeforeLeave).
func (n *node) leave(ctx context.Context, jr *joinedRoom) error {
	lctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	meet.FlushBeforeLeave(lctx, jr.lastWrite)
	err := n.repo.LeaveRoom(lctx, jr.id)
	if err != nil && !errors.Is(err, room.ErrNotJoined) && !errors.Is(err, room.ErrClosed) && !errors.Is(err, repo.ErrUnknownRoom) {
		return err
	}
	changed := n.forget(jr)
	n.out.emit(roomLeftEvent{Room: jr.id})
	if changed && !n.stopping {
		n.out.emit(currentEvent{Room: n.current})
	}
	return nil
}

// waitMembers waits until the room has at least want members besides this
// node that this node's messages reach (meet.WaitMembers); members there
// before the wait count from the room's join.
func (n *node) waitMembers(ctx context.Context, jr *joinedRoom, want int, timeout time.Duration) error {
	return meet.WaitMembers(ctx, n.repo.Host(), jr.room, want, timeout, jr.joined)
}

// forget stops a room's watcher and removes the room from the joined
// list. If it was the current room, the earliest-joined remaining room
// becomes current and forget reports true.
func (n *node) forget(jr *joinedRoom) (currentChanged bool) {
	jr.cancel()
	<-jr.done
	if n.rooms[jr.id] != jr {
		return false
	}
	delete(n.rooms, jr.id)
	n.order = slices.DeleteFunc(n.order, func(s string) bool { return s == jr.id })
	if n.current != jr.id {
		return false
	}
	n.current = ""
	if len(n.order) > 0 {
		n.current = n.order[0]
	}
	return true
}

// watch prints one room's events until ctx is cancelled or the room is
// destroyed; in the latter case it tells the command loop.
func (n *node) watch(ctx context.Context, jr *joinedRoom, w *room.Watcher) {
	defer n.wg.Done()
	defer close(jr.done)
	defer w.Close()
	names := map[room.PeerID]string{}
	for _, m := range jr.room.Members() {
		names[m.Peer] = m.Name
	}
	for {
		ev, err := w.Next(ctx)
		if err != nil || ev.Type == room.RoomDestroyed {
			if ctx.Err() == nil {
				select {
				case n.gone <- jr:
				case <-ctx.Done():
				}
			}
			return
		}
		switch ev.Type {
		case room.MemberJoined, room.MemberUpdated:
			names[ev.Member.Peer] = ev.Member.Name
			m := n.member(ev.Member)
			if ev.Type == room.MemberJoined {
				n.out.emit(memberJoinedEvent{Room: jr.id, member: m})
			} else {
				n.out.emit(memberUpdatedEvent{Room: jr.id, member: m})
			}
		case room.MemberLeft:
			n.out.emit(memberLeftEvent{
				Room:   jr.id,
				Peer:   peerString(ev.Member.Peer),
				Name:   ev.Member.Name,
				Self:   ev.Member.Peer == n.self,
				Reason: ev.Reason.String(),
			})
		case room.PresenceChanged:
			n.emitPresence(jr, ev, names[ev.Change.Peer])
		case room.Broadcast:
			n.out.emit(broadcastEvent{
				Room: jr.id,
				Peer: peerString(ev.Member.Peer),
				Name: ev.Member.Name,
				Text: string(ev.Payload),
			})
		case room.Lagged:
			n.out.emit(laggedEvent{Room: jr.id, Dropped: ev.Dropped})
		}
	}
}

// emitPresence prints one presence event per changed key. Values are read
// when the event is printed, so a value overwritten in between shows its
// newer value (and a key deleted in between is left to its own event).
func (n *node) emitPresence(jr *joinedRoom, ev room.Event, name string) {
	c := ev.Change
	base := presenceEvent{
		Room:  jr.id,
		Peer:  peerString(c.Peer),
		Name:  name,
		Self:  c.Peer == n.self,
		Cause: c.Cause.String(),
	}
	set := append(append([]string(nil), c.Added...), c.Updated...)
	sort.Strings(set)
	for _, k := range set {
		v, ok := jr.room.Get(c.Peer, k)
		if !ok {
			continue
		}
		e := base
		e.Key = k
		e.Value, e.Raw = jsonValue(v)
		n.out.emit(e)
	}
	for _, k := range c.Removed {
		e := base
		e.Key = k
		n.out.emit(e)
	}
}

func (n *node) member(id room.Identity) member {
	m := member{Peer: peerString(id.Peer), Name: id.Name, Meta: id.Meta, Self: id.Peer == n.self}
	if m.Meta == nil {
		m.Meta = map[string]string{}
	}
	return m
}

// peerString renders a peer ID the libp2p way (base58, "12D3KooW...").
func peerString(p room.PeerID) string { return p.String() }

// loop reads commands until EOF (without --stay), quit, or ctx is
// cancelled, and returns why it stopped.
func (n *node) loop(ctx context.Context, stdin io.Reader) string {
	lines := make(chan line)
	stop := make(chan struct{})
	defer close(stop)
	// The reader goroutine may stay blocked in Read after loop returns
	// (a Read cannot be interrupted); it exits at the next line or EOF, and
	// the process exits anyway. It never blocks on the channel: stop.
	go readLines(stdin, lines, stop)
	for {
		select {
		case <-ctx.Done():
			return "signal"
		case jr := <-n.gone:
			if n.rooms[jr.id] == jr {
				n.out.emit(errorEvent{Error: fmt.Sprintf("room %q was closed", jr.id)})
				if n.forget(jr) {
					n.out.emit(currentEvent{Room: n.current})
				}
			}
		case l, ok := <-lines:
			if !ok {
				if n.opts.Stay {
					lines = nil // keep running until a signal
					continue
				}
				return "eof"
			}
			if l.err != nil {
				n.out.emit(errorEvent{Error: l.err.Error()})
				continue
			}
			c, err := parseCommand(l.text)
			if err != nil {
				n.out.emit(errorEvent{Command: c.Name, Error: err.Error()})
				continue
			}
			if c.Name == "" {
				continue
			}
			if c.Name == "quit" {
				return "quit"
			}
			if err := n.exec(ctx, c); err != nil {
				if ctx.Err() != nil {
					return "signal" // a wait (or a join, a say) cut short by SIGINT/SIGTERM
				}
				n.out.emit(errorEvent{Command: c.Name, Error: oneLine(c.Name + ": " + err.Error())})
				continue
			}
			n.out.emit(okEvent{Command: c.Name})
		}
	}
}

// readLines sends stdin's lines to lines, then closes it at EOF. A read
// error other than EOF is reported as a line error first.
func readLines(r io.Reader, lines chan<- line, stop <-chan struct{}) {
	defer close(lines)
	lr := newLineReader(r, maxLine)
	for {
		s, err := lr.next()
		var l line
		switch {
		case err == nil:
			l = line{text: s}
		case errors.Is(err, errLineTooLong):
			l = line{err: err}
		case errors.Is(err, io.EOF):
			return
		default:
			l = line{err: fmt.Errorf("reading stdin: %v", err)}
		}
		select {
		case lines <- l:
		case <-stop:
			return
		}
		if l.err != nil && !errors.Is(l.err, errLineTooLong) {
			return
		}
	}
}

// target returns the room a command applies to.
func (n *node) target(id string) (*joinedRoom, error) {
	if id == "" {
		id = n.current
		if id == "" {
			return nil, errors.New("not in any room (join ROOM first)")
		}
	}
	jr, ok := n.rooms[id]
	if !ok {
		return nil, fmt.Errorf("not in room %q (rooms lists them)", id)
	}
	return jr, nil
}

// exec runs one command (not quit).
func (n *node) exec(ctx context.Context, c command) error {
	switch c.Name {
	case "help":
		n.out.emit(helpEvent{Text: commandHelp})
		return nil
	case "addrs":
		n.emitReady()
		return nil
	case "doc":
		return n.execDoc(ctx, c.Text)
	case "rooms":
		ev := roomsEvent{Current: n.current, Rooms: []roomInfo{}}
		for _, id := range n.order {
			jr := n.rooms[id]
			ev.Rooms = append(ev.Rooms, roomInfo{Room: id, Status: jr.room.Status().String(), Members: len(jr.room.Members())})
		}
		n.out.emit(ev)
		return nil
	case "join":
		if err := room.ValidateID(c.Room); err != nil {
			return err
		}
		return n.join(ctx, c.Room)
	case "use":
		if _, ok := n.rooms[c.Room]; !ok {
			return fmt.Errorf("not in room %q (join it first)", c.Room)
		}
		n.current = c.Room
		n.out.emit(currentEvent{Room: c.Room})
		return nil
	}

	jr, err := n.target(c.Room)
	if err != nil {
		return err
	}
	switch c.Name {
	case "set":
		var err error
		if c.TTL > 0 {
			err = jr.room.SetTTL(c.Key, c.Value, c.TTL)
		} else {
			err = jr.room.Set(c.Key, c.Value)
		}
		if err == nil {
			jr.lastWrite = time.Now()
		}
		return err
	case "del":
		err := jr.room.Delete(c.Key)
		if err == nil {
			jr.lastWrite = time.Now()
		}
		return err
	case "say":
		sctx, cancel := context.WithTimeout(ctx, commandTimeout)
		defer cancel()
		if err := jr.room.Broadcast(sctx, []byte(c.Text)); err != nil {
			return err
		}
		jr.lastWrite = time.Now()
		if !n.opts.JSON {
			// Text mode echoes your own line, as a chat does; --json does
			// not (the ok event confirms it), so scripts see only others'.
			n.out.emit(broadcastEvent{Room: jr.id, Peer: peerString(n.self), Name: n.opts.Name, Text: c.Text, self: true})
		}
		return nil
	case "wait":
		return n.waitMembers(ctx, jr, c.N, c.Wait)
	case "leave":
		return n.leave(ctx, jr)
	case "members":
		ev := membersEvent{Room: jr.id, Members: []member{}}
		for _, m := range jr.room.Members() {
			ev.Members = append(ev.Members, n.member(m))
		}
		n.out.emit(ev)
		return nil
	case "state":
		n.out.emit(n.state(jr))
		return nil
	}
	return fmt.Errorf("unknown command %q", c.Name)
}

// state collects every member's presence in a room, members first (in
// Members order), then peers with state that are not listed as members.
func (n *node) state(jr *joinedRoom) stateEvent {
	states := jr.room.States()
	ev := stateEvent{Room: jr.id, Peers: []peerState{}}
	add := func(p room.PeerID, name string) {
		ps := peerState{Peer: peerString(p), Name: name, Self: p == n.self, State: map[string]json.RawMessage{}}
		for k, v := range states[p] {
			val, raw := jsonValue(v)
			ps.State[k] = val
			if raw != "" {
				if ps.Raw == nil {
					ps.Raw = map[string]string{}
				}
				ps.Raw[k] = raw
			}
		}
		ev.Peers = append(ev.Peers, ps)
	}
	listed := map[room.PeerID]bool{}
	for _, m := range jr.room.Members() {
		listed[m.Peer] = true
		add(m.Peer, m.Name)
	}
	rest := make([]room.PeerID, 0)
	for p := range states {
		if !listed[p] {
			rest = append(rest, p)
		}
	}
	slices.Sort(rest)
	for _, p := range rest {
		add(p, "")
	}
	return ev
}

// stopWatchers stops every watcher goroutine and waits for them.
func (n *node) stopWatchers() {
	for _, jr := range n.rooms {
		jr.cancel()
	}
	n.wg.Wait()
}

// shutdown leaves every joined room (goodbye), shuts the Repo down
// (Repo.Shutdown) and prints the stopped event; everything is bounded by
// shutdownTimeout together. A second signal (abort) ends it at once: the
// Repo is closed (Repo.Close), without the goodbyes not yet sent. Only
// errors other than the bound running out make the exit code non-zero.
func (n *node) shutdown(reason string) int {
	ctx, cancel := context.WithTimeout(n.abort, shutdownTimeout)
	defer cancel()
	code := exitOK
	n.stopping = true
	for _, id := range slices.Clone(n.order) {
		if n.abort.Err() != nil {
			break // the Repo's Close below says nothing to anyone
		}
		if jr, ok := n.rooms[id]; ok {
			if err := n.leave(ctx, jr); err != nil {
				n.out.emit(errorEvent{Error: oneLine(fmt.Sprintf("leave %s: %v", id, err))})
				n.forget(jr)
			}
		}
	}
	n.stopWatchers()
	var err error
	if n.abort.Err() != nil {
		err = n.repo.Close()
	} else {
		err = n.repo.Shutdown(ctx) // a second signal now cancels ctx: its waits end at once
	}
	if err != nil {
		n.out.emit(errorEvent{Error: oneLine(fmt.Sprintf("shutdown: %v", err))})
		if _, rest := stop.Split(err); rest != nil {
			code = exitRuntime
		}
	}
	n.stopDocWatchers()
	n.out.emit(stoppedEvent{Reason: reason})
	return code
}
