package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"mime"
	"net/http"
	"sync"

	"github.com/convene-p2p/convene/room"
)

// cursorKey is the presence key of a member's cursor: {"x":…,"y":…}, each a
// fraction of the board's width and height (0..1), so that pages of
// different sizes agree on where a cursor is.
const cursorKey = "cursor"

//go:embed index.html
var indexHTML []byte

// Cursor is a position on the board, in fractions of its width and height.
type Cursor struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// Member is one member as the page sees it.
type Member struct {
	Peer   string  `json:"peer"`
	Name   string  `json:"name"`
	Self   bool    `json:"self"`
	Color  string  `json:"color"`
	Cursor *Cursor `json:"cursor"` // nil: not on the board
}

// Snapshot is what the page receives on every change: the whole room.
type Snapshot struct {
	Room    string   `json:"room"`
	Self    string   `json:"self"`
	Members []Member `json:"members"`
}

// Server serves one peer's cursor page for one room:
//
//	GET    /        the page (index.html)
//	GET    /events  Server-Sent Events: a Snapshot now and after every change
//	POST   /cursor  {"x":…,"y":…} sets the local cursor (presence)
//	DELETE /cursor  takes the local cursor off the board
//
// The page may post every mouse move: the room coalesces presence writes
// (one publish per PublishInterval, always the latest value), so the network
// sees at most ~20 updates a second per peer. POST and DELETE need
// Content-Type application/json, which a cross-site page cannot send to
// 127.0.0.1 without a CORS preflight that this server never answers.
type Server struct {
	rm *room.Room
	w  *room.Watcher
	wg sync.WaitGroup

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every room event
	done    chan struct{} // closed by Close
	closed  bool
}

// NewServer starts serving rm's cursors. Close stops it.
func NewServer(rm *room.Room) *Server {
	s := &Server{rm: rm, w: rm.Watch(), changed: make(chan struct{}), done: make(chan struct{})}
	s.wg.Add(1)
	go s.watch()
	return s
}

// Close ends every event stream and stops watching the room. Close it
// before shutting down the http.Server, whose Shutdown waits for handlers
// (an event stream only ends when the browser goes or Close is called).
// It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.w.Close()
	s.wg.Wait()
}

// watch wakes the event streams at every room event.
func (s *Server) watch() {
	defer s.wg.Done()
	for {
		if _, err := s.w.Next(context.Background()); err != nil {
			return
		}
		s.mu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(indexHTML)
	case r.URL.Path == "/events" && r.Method == http.MethodGet:
		s.events(w, r)
	case r.URL.Path == "/cursor" && (r.Method == http.MethodPost || r.Method == http.MethodDelete):
		s.cursor(w, r)
	case r.URL.Path == "/" || r.URL.Path == "/events" || r.URL.Path == "/cursor":
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	default:
		http.NotFound(w, r)
	}
}

// events streams Snapshots: one at once, then one after each change. Changes
// that come while a snapshot is being written are coalesced into the next.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	if _, err := io.WriteString(w, "retry: 1000\n\n"); err != nil {
		return
	}
	for {
		s.mu.Lock()
		changed := s.changed // taken before the snapshot, so no change is missed
		s.mu.Unlock()
		b, err := json.Marshal(s.Snapshot())
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

// cursor sets (POST) or removes (DELETE) the local cursor.
func (s *Server) cursor(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	if r.Method == http.MethodDelete {
		if err := s.rm.Delete(cursorKey); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var c Cursor
	if err := json.NewDecoder(io.LimitReader(r.Body, 1024)).Decode(&c); err != nil {
		http.Error(w, "body must be {\"x\":number,\"y\":number}", http.StatusBadRequest)
		return
	}
	if !inUnit(c.X) || !inUnit(c.Y) {
		http.Error(w, "x and y must be between 0 and 1", http.StatusBadRequest)
		return
	}
	c.X, c.Y = round4(c.X), round4(c.Y)
	if err := s.rm.SetJSON(cursorKey, c); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Snapshot returns the room as the page shows it: every member, the local
// peer included, with its cursor if it is on the board.
func (s *Server) Snapshot() Snapshot {
	self := s.rm.Self().Peer
	snap := Snapshot{Room: s.rm.ID(), Self: self.String(), Members: []Member{}}
	for _, m := range s.rm.Members() {
		id := m.Peer.String()
		mem := Member{Peer: id, Name: m.Name, Self: m.Peer == self, Color: color(m.Peer)}
		if mem.Name == "" {
			mem.Name = "…" + id[max(0, len(id)-6):]
		}
		var c Cursor
		if ok, err := s.rm.GetJSON(m.Peer, cursorKey, &c); ok && err == nil && inUnit(c.X) && inUnit(c.Y) {
			mem.Cursor = &c
		}
		snap.Members = append(snap.Members, mem)
	}
	return snap
}

func inUnit(v float64) bool { return !math.IsNaN(v) && v >= 0 && v <= 1 }

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// color gives a member its colour, derived from its peer ID alone: the
// same on every page and for as long as the peer keeps its ID, whoever
// else joins or leaves. (A colour by position in the member list changed
// whenever a member before it left.) The hue comes from a hash of the ID,
// in 10° steps; saturation and lightness keep white text readable. Two
// members can get the same or close hues; their name labels tell them
// apart.
func color(p room.PeerID) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(p))
	return fmt.Sprintf("hsl(%d, 70%%, 42%%)", h.Sum32()%36*10)
}
