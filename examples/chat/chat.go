package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/internal/meet"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

// typingKey is the presence key of the typing indicator, always set with a
// TTL (it expires by itself): JSON true while typing, false when the
// author stopped without sending a line (a /who, a cleared line). It is
// deleted when a line is sent: the line itself tells the others that the
// typing is over, whichever of the two arrives first.
const typingKey = "typing"

// DefaultTypingTTL is how long a typing indicator lives after the last
// keystroke that refreshed it.
const DefaultTypingTTL = 3 * time.Second

// leaveTimeout bounds the goodbye Run sends when it ends.
const leaveTimeout = 2 * time.Second

// Options configure Run. The zero value joins room "chat" with a 3 s typing
// indicator and prints plain lines.
type Options struct {
	// Room is the room to chat in. Empty means "chat".
	Room string
	// Doc is the ID of the messages document, where the lines are kept.
	// Empty means Room + "-messages".
	Doc string
	// History is how many earlier lines Run shows when it starts (the last
	// ones). Zero means DefaultHistory; negative shows none.
	History int
	// TypingTTL is how long the typing indicator stays up after a
	// keystroke. Zero means DefaultTypingTTL.
	TypingTTL time.Duration
	// Echo makes Run draw the input line itself (a prompt and what has been
	// typed so far, redrawn under incoming messages). Use it when the
	// terminal's own echo and line editing are off (main does this with
	// stty); leave it off for pipes and tests.
	Echo bool
	// Now reads the clock for the typing indicator's refresh; nil means
	// time.Now.
	Now func() time.Time
	// WaitMembers > 0 makes Run wait, before it reads any input, until the
	// room has this many other members (meet.WaitMembers), for at most
	// WaitTimeout (zero: 30 s). For input from a script: a chat that has
	// just started has met nobody, and a line sent then reaches nobody.
	WaitMembers int
	WaitTimeout time.Duration
}

// DefaultWaitTimeout bounds Options.WaitMembers when WaitTimeout is zero.
const DefaultWaitTimeout = 30 * time.Second

func (o *Options) validate() error {
	if o.Room == "" {
		o.Room = "chat"
	}
	if err := room.ValidateID(o.Room); err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	if o.Doc == "" {
		o.Doc = o.Room + "-messages"
	}
	if err := doc.ValidateID(o.Doc); err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	if o.History == 0 {
		o.History = DefaultHistory
	}
	if o.TypingTTL < 0 {
		return fmt.Errorf("chat: negative typing TTL %v", o.TypingTTL)
	}
	if o.TypingTTL == 0 {
		o.TypingTTL = DefaultTypingTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WaitMembers < 0 || o.WaitTimeout < 0 {
		return fmt.Errorf("chat: negative WaitMembers %d or WaitTimeout %v", o.WaitMembers, o.WaitTimeout)
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	return nil
}

// Run is the chat program: it joins the room through rp, opens the
// messages document (Options.Doc), shows its last lines, prints what
// happens in the room and every line that reaches the document from
// others, and reads keystrokes from in.
//
// Input is read byte by byte, not line by line, so that the typing
// indicator goes up at the first keystroke: every printable byte refreshes
// the presence key "typing" (SetTTL, at most once per TypingTTL/3), Enter
// appends the line to the messages document and deletes "typing",
// backspace edits, Ctrl-U clears the line (and the indicator). "/who"
// lists the members, "/history" shows every line of the document, "/quit",
// Ctrl-C and Ctrl-D on an empty line end the chat, as does end of input.
//
// Run leaves the room (a goodbye, so others see "left" at once) and returns
// nil at the end of input or on quit, or ctx's error when ctx ends first.
// In that last case a Read on in that is still blocked is not waited for: it
// ends when in returns from it (close in, or exit the process).
//
// With WaitMembers, Run first waits for the others; if they do not come in
// time it leaves and returns an error, having read no input.
func Run(ctx context.Context, rp *repo.Repo, in io.Reader, out io.Writer, opt Options) error {
	if err := opt.validate(); err != nil {
		return err
	}
	rm, err := rp.JoinRoom(ctx, opt.Room, room.Config{})
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	h, err := rp.DocWith(ctx, opt.Doc, messagesInit)
	if err != nil {
		_ = rm.Leave(ctx)
		return fmt.Errorf("chat: %w", err)
	}
	c := &chat{rm: rm, h: h, opt: opt, out: out, self: rm.Self().Peer, line: []byte{}, names: map[room.PeerID]string{}, typing: map[room.PeerID]bool{}, shown: map[string]bool{}}

	// Forward-only events: read the members first, then watch.
	members := rm.Members()
	w := rm.Watch()
	for _, m := range members {
		c.names[m.Peer] = m.Name
	}
	c.printf("* you are %s in room %q; %s here", c.nameOf(c.self), opt.Room, c.memberList(members))
	// The document's watcher before its first read: a line that arrives
	// in between is in the read or in an event (shown once either way).
	dw := h.Watch()
	if err := c.history(); err != nil {
		c.printf("! history: %v", err)
	}
	c.printf("* type to chat; Enter sends, /who lists members, /history shows every line, /quit leaves")

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.watch(w)
	}()
	go func() {
		defer wg.Done()
		c.watchDoc(dw)
	}()
	defer func() {
		w.Close()
		dw.Close()
		wg.Wait()
	}()

	if opt.WaitMembers > 0 {
		if err := meet.WaitMembers(ctx, rp.Host(), rm, opt.WaitMembers, opt.WaitTimeout, time.Time{}); err != nil {
			c.leave()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("chat: waiting for others: %w", err)
		}
	}

	// The reader goroutine forwards chunks of input. It is the only
	// goroutine Run may leave behind (see above), and only when ctx ends.
	chunks := make(chan []byte)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				select {
				case chunks <- slices.Clone(buf[:n]):
				case <-stop:
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()

	for {
		select {
		case <-ctx.Done():
			c.leave()
			return ctx.Err()
		case err := <-readErr:
			c.leave()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("chat: read input: %w", err)
		case b := <-chunks:
			if quit := c.input(b); quit {
				c.leave()
				return nil
			}
		}
	}
}

// chat is the state of one Run. The input fields (line, esc, typingSent,
// lastTyping) belong to Run's goroutine; mu guards the output and the
// fields the watcher goroutine shares (names, typing).
type chat struct {
	rm   *room.Room
	h    *doc.Handle // the messages document
	opt  Options
	self room.PeerID

	// Owned by Run's goroutine.
	esc        int // escape-sequence state: 0 none, 1 after ESC, 2 inside CSI
	typingSent bool
	lastTyping time.Time
	lastSent   time.Time // the last line or typing change published, for the flush before the goodbye

	mu     sync.Mutex
	out    io.Writer
	line   []byte // the line being typed (read by the echo redraw)
	names  map[room.PeerID]string
	typing map[room.PeerID]bool // remote peers whose indicator is up
	shown  map[string]bool      // IDs of the lines printed (or sent) here
}

// input handles one chunk of keystrokes. It reports whether to quit.
func (c *chat) input(b []byte) (quit bool) {
	for _, ch := range b {
		switch c.esc {
		case 1: // after ESC: '[' starts a CSI sequence, anything else ends it
			c.esc = 0
			if ch == '[' {
				c.esc = 2
			}
			continue
		case 2: // CSI: parameters until a final byte 0x40..0x7e
			if ch >= 0x40 && ch <= 0x7e {
				c.esc = 0
			}
			continue
		}
		switch {
		case ch == '\r' || ch == '\n':
			if c.submit() {
				return true
			}
		case ch == 0x7f || ch == 0x08: // backspace
			c.mu.Lock()
			if len(c.line) > 0 {
				_, size := utf8.DecodeLastRune(c.line)
				c.line = c.line[:len(c.line)-size]
			}
			empty := len(c.line) == 0
			c.redrawLocked()
			c.mu.Unlock()
			if empty {
				c.stopTyping(false)
			}
		case ch == 0x15: // Ctrl-U
			c.mu.Lock()
			c.line = c.line[:0]
			c.redrawLocked()
			c.mu.Unlock()
			c.stopTyping(false)
		case ch == 0x03: // Ctrl-C (the terminal sends it as a byte with -isig)
			return true
		case ch == 0x04: // Ctrl-D: quit on an empty line
			c.mu.Lock()
			empty := len(c.line) == 0
			c.mu.Unlock()
			if empty {
				return true
			}
		case ch == 0x1b:
			c.esc = 1
		case ch == '\t':
			c.key(' ')
		case ch < 0x20:
			// other control bytes are ignored
		default:
			c.key(ch)
		}
	}
	return false
}

// key appends one byte to the line and keeps the typing indicator up.
func (c *chat) key(ch byte) {
	c.mu.Lock()
	c.line = append(c.line, ch)
	c.redrawLocked()
	c.mu.Unlock()

	now := c.opt.Now()
	if c.typingSent && now.Sub(c.lastTyping) < c.opt.TypingTTL/3 {
		return
	}
	if err := c.rm.SetTTL(typingKey, []byte("true"), c.opt.TypingTTL); err != nil {
		c.printf("! typing indicator: %v", err)
		return
	}
	c.typingSent, c.lastTyping = true, now
	c.lastSent = time.Now()
}

// stopTyping takes the typing indicator down, if it is up: deleted after a
// sent line (the line says it), set to false otherwise, so that the others
// say "stopped typing". A removal and a line travel separately and may
// arrive in either order, so a removal alone cannot tell the two apart.
func (c *chat) stopTyping(sent bool) {
	if !c.typingSent {
		return
	}
	c.typingSent = false
	var err error
	if sent {
		err = c.rm.Delete(typingKey)
	} else {
		err = c.rm.SetTTL(typingKey, []byte("false"), c.opt.TypingTTL)
	}
	if err != nil {
		c.printf("! typing indicator: %v", err)
	}
	c.lastSent = time.Now()
}

// submit handles Enter: a command or a chat line. It reports whether to quit.
func (c *chat) submit() (quit bool) {
	c.mu.Lock()
	text := strings.TrimSpace(string(c.line))
	c.line = c.line[:0]
	c.mu.Unlock()
	if text != "" && !strings.HasPrefix(text, "/") {
		// A chat line: into the document (stored, and synced to the
		// peers), then delete the indicator (the others read the line as
		// the end of typing).
		if err := c.send(text); err != nil {
			c.stopTyping(false)
			c.printf("! not sent: %v", err)
			return false
		}
		c.lastSent = time.Now()
		c.stopTyping(true)
		c.printf("you: %s", clean(text))
		return false
	}
	// A command or an empty line: the indicator goes down at once, and
	// the others see that typing stopped.
	c.stopTyping(false)
	switch {
	case text == "":
		c.redraw()
	case text == "/quit" || text == "/exit":
		return true
	case text == "/who":
		c.printf("* %s here", c.memberList(c.rm.Members()))
	case text == "/history":
		c.showAll()
	case text == "/help":
		c.printf("* Enter sends a line, /who lists members, /history shows every line, /quit leaves")
	default:
		c.printf("* unknown command %s (try /help)", clean(text))
	}
	return false
}

// leave says goodbye, bounded by leaveTimeout, once what was just sent has
// had time to arrive (meet.FlushBeforeLeave): a script that pipes a line
// in and ends must not have its goodbye overtake the line.
func (c *chat) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	meet.FlushBeforeLeave(ctx, c.lastSent)
	_ = c.rm.Leave(ctx)
	c.mu.Lock()
	c.line = nil
	c.mu.Unlock()
	c.printf("* you left %q", c.opt.Room)
}

// watch prints the room's events until the watcher is closed.
func (c *chat) watch(w *room.Watcher) {
	for {
		ev, err := w.Next(context.Background())
		if err != nil {
			return
		}
		c.event(ev)
	}
}

func (c *chat) event(ev room.Event) {
	if ev.Member.Peer == c.self {
		return
	}
	switch ev.Type {
	case room.MemberJoined:
		c.setName(ev.Member.Peer, ev.Member.Name)
		c.printf("* %s joined", c.nameOf(ev.Member.Peer))
	case room.MemberUpdated:
		old := c.nameOf(ev.Member.Peer)
		c.setName(ev.Member.Peer, ev.Member.Name)
		if now := c.nameOf(ev.Member.Peer); now != old {
			c.printf("* %s is now %s", old, now)
		}
	case room.MemberLeft:
		c.setTyping(ev.Member.Peer, false)
		if ev.Reason == room.ReasonTimeout {
			c.printf("* %s timed out", c.nameOf(ev.Member.Peer))
		} else {
			c.printf("* %s left", c.nameOf(ev.Member.Peer))
		}
	case room.PresenceChanged:
		c.presence(ev.Change)
	case room.Lagged:
		c.printf("* (missed %d events)", ev.Dropped)
	}
}

// presence shows typing indicators going up (true), and going down: set
// to false (the author stopped without sending: a /who, a cleared line) or
// expired. A delete follows a chat line and needs no line of its own: the
// chat line says it (and takes the indicator down here if it comes
// first). A member that leaves or times out gets its own line instead.
func (c *chat) presence(ch ephemeral.Change) {
	if ch.Peer == c.self {
		return
	}
	switch {
	case slices.Contains(ch.Added, typingKey) || slices.Contains(ch.Updated, typingKey):
		var on bool
		if ok, err := c.rm.GetJSON(ch.Peer, typingKey, &on); !ok || err != nil {
			return // removed since, or not a boolean: nothing to show
		}
		switch {
		case on && c.setTyping(ch.Peer, true):
			c.printf("* %s is typing…", c.nameOf(ch.Peer))
		case !on && c.setTyping(ch.Peer, false):
			c.printf("* %s stopped typing", c.nameOf(ch.Peer))
		}
	case slices.Contains(ch.Removed, typingKey):
		if c.setTyping(ch.Peer, false) && ch.Cause == ephemeral.CauseTimeout && !ch.Gone {
			c.printf("* %s stopped typing", c.nameOf(ch.Peer))
		}
	}
}

// setTyping records whether peer's indicator is up and reports whether
// that changed.
func (c *chat) setTyping(p room.PeerID, on bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.typing[p] == on {
		return false
	}
	if on {
		c.typing[p] = true
	} else {
		delete(c.typing, p)
	}
	return true
}

func (c *chat) setName(p room.PeerID, name string) {
	c.mu.Lock()
	c.names[p] = name
	c.mu.Unlock()
}

// nameOf is how a peer is shown: its claimed name (cleaned), or the end of
// its peer ID when it has none.
func (c *chat) nameOf(p room.PeerID) string {
	c.mu.Lock()
	name := c.names[p]
	c.mu.Unlock()
	if name == "" {
		id := p.String()
		if len(id) > 6 {
			id = id[len(id)-6:]
		}
		return "…" + id
	}
	return clean(name)
}

func (c *chat) memberList(ms []room.Identity) string {
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Peer == c.self {
			names = append(names, "you")
			continue
		}
		c.setName(m.Peer, m.Name)
		names = append(names, c.nameOf(m.Peer))
	}
	if len(names) == 1 {
		return "only you are"
	}
	return strings.Join(names, ", ") + " are"
}

// printf prints one line of output. With Echo it first clears the input
// line and then redraws it below.
func (c *chat) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opt.Echo {
		fmt.Fprint(c.out, "\r\x1b[K")
	}
	fmt.Fprintf(c.out, format+"\n", args...)
	if c.opt.Echo && c.line != nil {
		fmt.Fprintf(c.out, "> %s", c.line)
	}
}

func (c *chat) redraw() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.redrawLocked()
}

func (c *chat) redrawLocked() {
	if c.opt.Echo {
		fmt.Fprintf(c.out, "\r\x1b[K> %s", c.line)
	}
}

// clean returns s as it is if it is printable UTF-8, else Go-quoted, so
// that a peer cannot drive the terminal with control characters.
func clean(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) }) {
		return strconv.Quote(s)
	}
	return s
}
