package main

// The chat's messages document: every line sent is appended to the list
// "messages" of one Automerge document (by default "<room>-messages", the
// seed's convention), which the Repo stores and syncs with the peers that
// open the same ID. So a node that restarts shows the history from its
// store, a node that was offline gets the lines it missed when it meets a
// peer that has them, and lines written on both sides of a partition are
// all kept when the two sides meet (the document merges).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/room"
)

// messagesKey is the list of chat lines in the messages document.
const messagesKey = "messages"

// DefaultHistory is how many earlier lines Run shows when it starts.
const DefaultHistory = 50

// messagesInit is the messages document's genesis: the empty list, made
// as a deterministic change (doc.Options.Init) so that it is the same list
// on every peer. Without it, two peers that each created the list while
// apart would hold two lists, and one peer's lines would be hidden after
// the merge (Automerge's rule for concurrent containers).
func messagesInit(tx *doc.Tx) error {
	return tx.Set(doc.Path{messagesKey}, []any{})
}

// message is one chat line in the document. Author and Name are what the
// writer put there, self-asserted like a member's name: a peer that can
// write the document can write lines under any name (docs: README).
type message struct {
	ID     string // random, to tell lines apart (and to show each once)
	Author string // the writer's peer ID
	Name   string // the writer's display name
	Text   string
	At     int64 // the writer's clock, Unix milliseconds: informative only
}

func (m message) value() map[string]any {
	return map[string]any{"id": m.ID, "author": m.Author, "name": m.Name, "text": m.Text, "at": m.At}
}

// newMessage makes a line written here now.
func newMessage(self room.PeerID, name, text string, now time.Time) message {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return message{ID: hex.EncodeToString(b[:]), Author: self.String(), Name: name, Text: text, At: now.UnixMilli()}
}

// readMessages returns the lines in h, in list order. Entries that are
// not well-formed lines (anyone who can write the document can put
// anything there) are skipped.
func readMessages(h *doc.Handle) ([]message, error) {
	v, ok, err := h.Get(doc.Path{messagesKey})
	if err != nil || !ok {
		return nil, err
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New("chat: the messages document's \"messages\" is not a list")
	}
	out := make([]message, 0, len(list))
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		msg := message{ID: str(m["id"]), Author: str(m["author"]), Name: str(m["name"]), Text: str(m["text"])}
		if at, ok := m["at"].(int64); ok {
			msg.At = at
		}
		if msg.ID == "" || strings.TrimSpace(msg.Text) == "" {
			continue
		}
		out = append(out, msg)
	}
	return out, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// send appends a line written here to the document. It counts as shown:
// Run prints it as "you: ...".
func (c *chat) send(text string) error {
	m := newMessage(c.self, c.rm.Self().Name, text, time.Now())
	c.mu.Lock()
	c.shown[m.ID] = true
	c.mu.Unlock()
	return c.h.Change(func(tx *doc.Tx) error { return tx.Append(doc.Path{messagesKey}, m.value()) })
}

// history shows the last Options.History lines of the document, at
// start, and marks every line as shown.
func (c *chat) history() error {
	msgs, err := readMessages(c.h)
	if err != nil {
		return err
	}
	c.mu.Lock()
	for _, m := range msgs {
		c.shown[m.ID] = true
	}
	c.mu.Unlock()
	if c.opt.History < 0 || len(msgs) == 0 {
		return nil
	}
	if len(msgs) > c.opt.History {
		c.printf("* %d earlier lines in %q; the last %d:", len(msgs), c.opt.Doc, c.opt.History)
		msgs = msgs[len(msgs)-c.opt.History:]
	} else {
		c.printf("* %s in %q:", lines(len(msgs), "earlier line"), c.opt.Doc)
	}
	for _, m := range msgs {
		c.printf("%s: %s", c.lineName(m), clean(m.Text))
	}
	c.printf("* end of history")
	return nil
}

// showAll prints every line of the document (/history), in its order:
// after a merge, lines written apart are interleaved as the document
// orders them, the same on every peer.
func (c *chat) showAll() {
	msgs, err := readMessages(c.h)
	if err != nil {
		c.printf("! history: %v", err)
		return
	}
	c.printf("* %s in %q:", lines(len(msgs), "line"), c.opt.Doc)
	for _, m := range msgs {
		c.printf("%s: %s", c.lineName(m), clean(m.Text))
	}
	c.printf("* end of history")
}

// watchDoc prints the lines others add to the document (synced from a
// peer: live, or missed while this node was offline or apart) until the
// watcher is closed. Each line is printed once, in document order.
func (c *chat) watchDoc(w *doc.Watcher) {
	for {
		ev, err := w.Next(context.Background())
		if err != nil {
			return
		}
		switch ev.Type {
		case doc.Changed:
			if ev.Origin.Local() {
				continue // this node's own lines are printed when sent
			}
		case doc.Lagged:
		default:
			return
		}
		msgs, err := readMessages(c.h)
		if err != nil {
			continue
		}
		for _, m := range msgs {
			c.mu.Lock()
			seen := c.shown[m.ID]
			c.shown[m.ID] = true
			c.mu.Unlock()
			if seen {
				continue
			}
			c.typingDownFor(m.Author) // a line ends its author's typing; its removal follows
			c.printf("%s: %s", c.lineName(m), clean(m.Text))
		}
	}
}

// typingDownFor clears the typing indicator of the peer whose ID prints
// as author.
func (c *chat) typingDownFor(author string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.typing {
		if p.String() == author {
			delete(c.typing, p)
		}
	}
}

// lineName is how a line's author is shown: "you" for this peer's own
// lines (also from an earlier run with the same key), else the name the
// line carries, else the name the room knows, else the end of the peer ID.
func (c *chat) lineName(m message) string {
	if m.Author == c.self.String() {
		return "you"
	}
	if m.Name != "" {
		return clean(m.Name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, name := range c.names {
		if p.String() == m.Author && name != "" {
			return clean(name)
		}
	}
	if len(m.Author) > 6 {
		return "…" + m.Author[len(m.Author)-6:]
	}
	return "…" + m.Author
}

// lines is "1 line", "2 lines" (n and what, plural unless n is 1).
func lines(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
