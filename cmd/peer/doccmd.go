package main

// Documents in `peer run`: the --data / --no-store flags, the "doc ..."
// stdin commands and the doc-* events. Kept in this file; the hooks in
// flags.go, commands.go and node.go are one line each.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/room"
	"github.com/convene-p2p/convene/storage"
)

// docOptions are the document flags of `peer run`.
type docOptions struct {
	Data    string   // --data DIR; the store is DIR/docs.bolt
	NoStore bool     // --no-store: memory only
	Path    string   // the bbolt file; "" = memory
	Open    []string // --doc ID, repeatable: documents opened at start
}

func registerDocFlags(fs *flag.FlagSet, o *runOptions) {
	fs.StringVar(&o.Docs.Data, "data", "", "")
	fs.BoolVar(&o.Docs.NoStore, "no-store", false, "")
	fs.Var((*stringList)(&o.Docs.Open), "doc", "")
}

// finishDocFlags picks the store: --no-store → memory; --data DIR →
// DIR/docs.bolt; otherwise <config dir>/convene/docs.bolt (docs-<name>.bolt
// with --name, as for the key file), or memory with --ephemeral.
func finishDocFlags(o *runOptions, configDir func() (string, error)) error {
	d := &o.Docs
	for _, id := range d.Open {
		if err := doc.ValidateID(id); err != nil {
			return usagef("peer run: --doc: %v", err)
		}
	}
	switch {
	case d.NoStore && d.Data != "":
		return usagef("peer run: --data and --no-store exclude each other")
	case d.NoStore:
	case d.Data != "":
		d.Path = filepath.Join(d.Data, "docs.bolt")
	case o.Ephemeral:
	default:
		dir, err := configDir()
		if err != nil {
			return fmt.Errorf("peer: no user config directory for the document store (%v); pass --data DIR or --no-store", err)
		}
		file := "docs.bolt"
		if o.Name != "" {
			file = "docs-" + sanitizeFileName(o.Name) + ".bolt"
		}
		d.Path = filepath.Join(dir, "convene", file)
	}
	return nil
}

// openDocStore opens the store chosen by the flags (nil: memory, the
// Repo's default) and returns its closer.
func openDocStore(o docOptions) (storage.Adapter, func(), error) {
	if o.Path == "" {
		return nil, func() {}, nil
	}
	st, err := storage.OpenBolt(o.Path, storage.BoltOptions{})
	if err != nil {
		if errors.Is(err, storage.ErrLocked) {
			return nil, nil, fmt.Errorf("the document store %s is in use by another peer run (use --data DIR or --no-store)", o.Path)
		}
		return nil, nil, err
	}
	return st, func() { _ = st.Close() }, nil
}

const docHelp = `  doc open ID                             open (or create) document ID; it becomes the current document
  doc set [@ID] PATH JSON                 set the value at PATH (a.b.0, or a JSON array ["a.b",0])
  doc append [@ID] PATH JSON              append a value to the list at PATH
  doc get [@ID] [PATH]                    print the value at PATH (default: the whole document)
  doc show [@ID]                          print the whole document as JSON
  doc list                                list the documents in the store
  doc delete ID                           delete document ID here (a tombstone keeps it deleted)
  doc flush                               make every change durable now`

// docShell is the node's document state: the current document and the
// goroutines printing each open document's events. Only the command loop
// calls its methods.
type docShell struct {
	current string
	watched map[string]*doc.Watcher
	wg      sync.WaitGroup
}

// docCommand is a parsed "doc ..." line.
type docCommand struct {
	verb  string
	id    string // @ID or the ID argument; "" = the current document
	path  doc.Path
	value any
}

func parseDocCommand(s string) (docCommand, error) {
	verb, rest := cutWord(s)
	c := docCommand{verb: strings.ToLower(verb)}
	if w, r := cutWord(rest); len(w) > 1 && w[0] == '@' {
		c.id, rest = w[1:], r
	}
	var err error
	switch c.verb {
	case "open", "delete":
		if c.id == "" {
			c.id, rest = cutWord(rest)
		}
		if c.id == "" {
			return c, fmt.Errorf("%s: missing ID", c.verb)
		}
		if rest != "" {
			return c, fmt.Errorf("%s: unexpected %q after ID", c.verb, rest)
		}
	case "set", "append":
		var p string
		p, rest = cutPath(rest)
		if p == "" || rest == "" {
			return c, fmt.Errorf("%s: want PATH JSON", c.verb)
		}
		if c.path, err = parseDocPath(p); err != nil {
			return c, fmt.Errorf("%s: %v", c.verb, err)
		}
		if c.value, err = parseDocValue(rest); err != nil {
			return c, fmt.Errorf("%s: %v", c.verb, err)
		}
	case "get":
		if c.path, err = parseDocPath(rest); err != nil {
			return c, fmt.Errorf("get: %v", err)
		}
	case "show", "list", "flush":
		if rest != "" {
			return c, fmt.Errorf("%s: unexpected %q", c.verb, rest)
		}
	case "":
		return c, errors.New("missing subcommand (try help)")
	default:
		return c, fmt.Errorf("unknown subcommand %q (try help)", verb)
	}
	return c, nil
}

// cutPath takes the PATH word off s: a JSON array (which may hold spaces)
// or one word.
func cutPath(s string) (path, rest string) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		dec := json.NewDecoder(strings.NewReader(s))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == nil {
			n := dec.InputOffset()
			return s[:n], strings.TrimSpace(s[n:])
		}
	}
	return cutWord(s)
}

// parseDocPath parses "a.b.0" (numbers are list indexes), "" or "." (the
// root), or a JSON array of strings and integers.
func parseDocPath(s string) (doc.Path, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "." {
		return doc.Path{}, nil
	}
	if strings.HasPrefix(s, "[") {
		var parts []any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&parts); err != nil {
			return nil, fmt.Errorf("path %s: %v", s, jsonErr(err))
		}
		p := make(doc.Path, 0, len(parts))
		for _, x := range parts {
			switch v := x.(type) {
			case string:
				p = append(p, v)
			case json.Number:
				i, err := strconv.Atoi(v.String())
				if err != nil || i < 0 {
					return nil, fmt.Errorf("path %s: %s is not a list index", s, v)
				}
				p = append(p, i)
			default:
				return nil, fmt.Errorf("path %s: parts are strings or list indexes", s)
			}
		}
		return p, nil
	}
	var p doc.Path
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return nil, fmt.Errorf("path %q: empty part (use a JSON array for keys with dots)", s)
		}
		if i, err := strconv.Atoi(part); err == nil && i >= 0 {
			p = append(p, i)
		} else {
			p = append(p, part)
		}
	}
	return p, nil
}

// parseDocValue parses a JSON value; integral numbers become int64.
func parseDocValue(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("malformed JSON value: %v", jsonErr(err))
	}
	if dec.More() {
		return nil, errors.New("malformed JSON value: more after the value")
	}
	return fromJSON(v)
}

func fromJSON(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		f, err := x.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s out of range", x)
		}
		return f, nil
	case map[string]any:
		for k, e := range x {
			c, err := fromJSON(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
	case []any:
		for i, e := range x {
			c, err := fromJSON(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
	}
	return v, nil
}

// The document events.
type docOpenedEvent struct {
	Doc   string   `json:"doc"`
	Heads []string `json:"heads"`
}

type docChangedEvent struct {
	Doc    string   `json:"doc"`
	Origin string   `json:"origin"` // "local" or the remote peer ID
	Heads  []string `json:"heads"`
	name   string   // text only: the origin's name, if a room knows it
}

type docValueEvent struct {
	Doc   string          `json:"doc"`
	Path  []any           `json:"path"`
	Value json.RawMessage `json:"value"` // null when nothing is there
}

type docsEvent struct {
	Current string   `json:"current"`
	Docs    []string `json:"docs"`
}

type docDeletedEvent struct {
	Doc string `json:"doc"`
}

type docLaggedEvent struct {
	Doc     string `json:"doc"`
	Dropped int    `json:"dropped"`
}

func (docOpenedEvent) eventType() string  { return "doc-opened" }
func (docChangedEvent) eventType() string { return "doc-changed" }
func (docValueEvent) eventType() string   { return "doc-value" }
func (docsEvent) eventType() string       { return "docs" }
func (docDeletedEvent) eventType() string { return "doc-deleted" }
func (docLaggedEvent) eventType() string  { return "doc-lagged" }

func (e docOpenedEvent) human() string {
	return fmt.Sprintf("{%s} open (%d changes at the heads)", clean(e.Doc), len(e.Heads))
}

func (e docChangedEvent) human() string {
	by := "here"
	if e.Origin != "local" {
		by = "by " + who(e.Origin, e.name, false)
	}
	return fmt.Sprintf("{%s} changed %s, heads %s", clean(e.Doc), by, shortHeads(e.Heads))
}

// shortHeads shows heads by their first 8 hex digits.
func shortHeads(h []string) string {
	if len(h) == 0 {
		return "none"
	}
	parts := make([]string, len(h))
	for i, x := range h {
		parts[i] = x[:min(8, len(x))]
	}
	return strings.Join(parts, ",")
}

func (e docValueEvent) human() string {
	return fmt.Sprintf("{%s} %s = %s", clean(e.Doc), pathString(e.Path), clean(string(e.Value)))
}

func (e docsEvent) human() string {
	if len(e.Docs) == 0 {
		return "no documents"
	}
	var b strings.Builder
	for i, d := range e.Docs {
		if i > 0 {
			b.WriteByte('\n')
		}
		mark := "  "
		if d == e.Current {
			mark = "* "
		}
		b.WriteString(mark + clean(d))
	}
	return b.String()
}

func (e docDeletedEvent) human() string { return fmt.Sprintf("{%s} deleted", clean(e.Doc)) }
func (e docLaggedEvent) human() string {
	return fmt.Sprintf("{%s} %d change events dropped", clean(e.Doc), e.Dropped)
}

func pathString(p []any) string {
	if len(p) == 0 {
		return "."
	}
	parts := make([]string, len(p))
	for i, x := range p {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ".")
}

func headStrings(h doc.Heads) []string {
	out := make([]string, len(h))
	for i, x := range h {
		out[i] = x.String()
	}
	return out
}

// execDoc runs one "doc ..." command.
func (n *node) execDoc(ctx context.Context, line string) error {
	c, err := parseDocCommand(line)
	if err != nil {
		return err
	}
	d := &n.docs
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	switch c.verb {
	case "list":
		ids := n.repo.DocIDs()
		sort.Strings(ids)
		n.out.emit(docsEvent{Current: d.current, Docs: ids})
		return nil
	case "flush":
		return n.repo.FlushDocs(cctx)
	case "delete":
		if err := n.repo.DeleteDoc(cctx, c.id); err != nil {
			return err
		}
		if d.current == c.id {
			d.current = ""
		}
		delete(d.watched, c.id) // its watcher ends with the Deleted event
		n.out.emit(docDeletedEvent{Doc: c.id})
		return nil
	}
	id := c.id
	if id == "" {
		id = d.current
		if id == "" {
			return errors.New("no current document (doc open ID first)")
		}
	}
	h, err := n.openDoc(cctx, id)
	if err != nil {
		return err
	}
	switch c.verb {
	case "open":
		d.current = id
		n.out.emit(docOpenedEvent{Doc: id, Heads: headStrings(h.Heads())})
		return nil
	case "set":
		return h.Change(func(tx *doc.Tx) error { return tx.Set(c.path, c.value) })
	case "append":
		return h.Change(func(tx *doc.Tx) error { return tx.Append(c.path, c.value) })
	case "get", "show":
		v, _, err := h.Get(c.path)
		if err != nil {
			return err
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		_ = json.Compact(&buf, raw)
		p := []any(c.path)
		if p == nil {
			p = []any{}
		}
		n.out.emit(docValueEvent{Doc: id, Path: p, Value: buf.Bytes()})
		return nil
	}
	return fmt.Errorf("unknown subcommand %q", c.verb)
}

// openDoc opens a document and, the first time, starts printing its
// change events.
func (n *node) openDoc(ctx context.Context, id string) (*doc.Handle, error) {
	h, err := n.repo.Doc(ctx, id)
	if err != nil {
		return nil, err
	}
	d := &n.docs
	if d.watched == nil {
		d.watched = map[string]*doc.Watcher{}
	}
	if _, ok := d.watched[id]; ok {
		return h, nil
	}
	w := h.Watch()
	d.watched[id] = w
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			ev, err := w.Next(context.Background())
			if err != nil {
				return
			}
			switch ev.Type {
			case doc.Changed:
				e := docChangedEvent{Doc: id, Origin: ev.Origin.String(), Heads: headStrings(ev.After)}
				if !ev.Origin.Local() {
					e.name = n.peerName(ev.Origin.Peer)
				}
				n.out.emit(e)
			case doc.Lagged:
				n.out.emit(docLaggedEvent{Doc: id, Dropped: ev.Dropped})
			case doc.Deleted:
				return
			}
		}
	}()
	return h, nil
}

// peerName is the name a room this node is in knows for p ("" if none).
// Safe off the command loop: it reads the Repo's rooms, not the node's.
func (n *node) peerName(p room.PeerID) string {
	for _, rm := range n.repo.Rooms() {
		for _, m := range rm.Members() {
			if m.Peer == p && m.Name != "" {
				return m.Name
			}
		}
	}
	return ""
}

// openStartDocs opens the --doc documents (the first becomes the current
// one) and prints doc-opened for each; from then on their changes, local
// and remote, print doc-changed.
func (n *node) openStartDocs(ctx context.Context) error {
	for i, id := range n.opts.Docs.Open {
		cctx, cancel := context.WithTimeout(ctx, commandTimeout)
		h, err := n.openDoc(cctx, id)
		cancel()
		if err != nil {
			return fmt.Errorf("--doc %s: %w", id, err)
		}
		if i == 0 {
			n.docs.current = id
		}
		n.out.emit(docOpenedEvent{Doc: id, Heads: headStrings(h.Heads())})
	}
	return nil
}

// stopDocWatchers ends the document event goroutines (after the Repo
// closed the handles, their watchers end by themselves).
func (n *node) stopDocWatchers() {
	for _, w := range n.docs.watched {
		w.Close()
	}
	n.docs.wg.Wait()
}
