package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/room"
)

// Presence keys of a player. Values are JSON.
const (
	keyReady     = "ready"     // true or false
	keyCharacter = "character" // one of Characters
	keyPos       = "pos"       // {"x":…,"y":…} on the arena grid
)

// Characters a player can choose from.
var Characters = []string{"knight", "wizard", "archer", "rogue"}

// The arena is a grid of ArenaW × ArenaH cells.
const (
	ArenaW = 48
	ArenaH = 12
)

// TickRate is how often the game loop publishes the local position: 10 Hz.
// (The room would coalesce faster writes anyway, to one per ~50 ms.)
const TickRate = 100 * time.Millisecond

// Pos is a cell of the arena.
type Pos struct {
	X int `json:"x"`
	Y int `json:"y"`
}

func (p Pos) clamp() Pos {
	return Pos{X: min(max(p.X, 0), ArenaW-1), Y: min(max(p.Y, 0), ArenaH-1)}
}

// Player is one member of the lobby as this peer sees it.
type Player struct {
	Peer      room.PeerID
	Name      string // display name, cleaned of control characters
	Self      bool
	Ready     bool
	Character string // "" until chosen; "?" for a value this version does not know
	Pos       *Pos   // nil until the player's first position arrives
}

// Lobby is a game lobby over one room: each player's ready flag, character
// and position are its presence; the local position is published by Play at
// TickRate. Safe for concurrent use.
type Lobby struct {
	rm *room.Room

	mu     sync.Mutex
	pos    Pos
	sent   Pos
	posSet bool
	tick   int
}

// NewLobby makes a lobby over rm, the local player starting at a position
// of its own (derived from its peer ID).
func NewLobby(rm *room.Room) *Lobby {
	h := hash(string(rm.Self().Peer))
	return &Lobby{rm: rm, pos: Pos{X: int(h % ArenaW), Y: int(h / ArenaW % ArenaH)}}
}

// Room is the lobby's room.
func (l *Lobby) Room() *room.Room { return l.rm }

// SetReady sets the local ready flag.
func (l *Lobby) SetReady(ready bool) error { return l.rm.SetJSON(keyReady, ready) }

// Choose picks the local player's character.
func (l *Lobby) Choose(character string) error {
	if !slices.Contains(Characters, character) {
		return fmt.Errorf("lobby: unknown character %q (choose one of %s)", character, strings.Join(Characters, ", "))
	}
	return l.rm.SetJSON(keyCharacter, character)
}

// Step moves the local player by (dx, dy) cells, within the arena. The move
// is published at the next tick.
func (l *Lobby) Step(dx, dy int) {
	l.mu.Lock()
	l.pos = Pos{X: l.pos.X + dx, Y: l.pos.Y + dy}.clamp()
	l.mu.Unlock()
}

// Pos is the local player's position.
func (l *Lobby) Pos() Pos {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pos
}

// Tick publishes the local position if it changed since the last tick. With
// wander, the player first takes one step along a path of its own (a
// Lissajous curve), as a bot or a demo would.
func (l *Lobby) Tick(wander bool) error {
	l.mu.Lock()
	if wander {
		l.tick++
		ph := float64(hash(string(l.rm.Self().Peer))%628) / 100
		t := float64(l.tick) / 10 // seconds at 10 Hz
		l.pos = Pos{
			X: int(math.Round((ArenaW - 1) * (0.5 + 0.45*math.Sin(0.9*t+ph)))),
			Y: int(math.Round((ArenaH - 1) * (0.5 + 0.45*math.Sin(1.3*t+2*ph)))),
		}.clamp()
	}
	pos, changed := l.pos, !l.posSet || l.pos != l.sent
	l.mu.Unlock()
	if !changed {
		return nil
	}
	if err := l.rm.SetJSON(keyPos, pos); err != nil {
		return err
	}
	l.mu.Lock()
	l.sent, l.posSet = pos, true
	l.mu.Unlock()
	return nil
}

// Play is the game loop: it calls Tick every TickRate until ctx ends, and
// returns nil then (or Tick's error).
func (l *Lobby) Play(ctx context.Context, wander bool) error {
	t := time.NewTicker(TickRate)
	defer t.Stop()
	if err := l.Tick(wander); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := l.Tick(wander); err != nil {
				return err
			}
		}
	}
}

// Players returns every member of the lobby, the local player included,
// sorted by name (then peer ID).
func (l *Lobby) Players() []Player {
	self := l.rm.Self().Peer
	var out []Player
	for _, m := range l.rm.Members() {
		p := Player{Peer: m.Peer, Name: displayName(m), Self: m.Peer == self}
		_, _ = l.rm.GetJSON(m.Peer, keyReady, &p.Ready)
		var c string
		if ok, err := l.rm.GetJSON(m.Peer, keyCharacter, &c); ok {
			p.Character = "?"
			if err == nil && slices.Contains(Characters, c) {
				p.Character = c
			}
		}
		var pos Pos
		if ok, err := l.rm.GetJSON(m.Peer, keyPos, &pos); ok && err == nil {
			pos = pos.clamp()
			p.Pos = &pos
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Player) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(string(a.Peer), string(b.Peer))
	})
	return out
}

// AllReady reports whether the game can start: at least two players, every
// one of them ready and with a character.
func AllReady(players []Player) bool {
	if len(players) < 2 {
		return false
	}
	for _, p := range players {
		if !p.Ready || p.Character == "" || p.Character == "?" {
			return false
		}
	}
	return true
}

// Narrate prints the lobby's events as lines on out until ctx ends or the
// room is destroyed: joins and leaves, characters chosen, ready flags, and
// when everyone is ready. Positions are not narrated (see Render).
//
// The room's state runs ahead of its events (it is updated before the
// events describing it are delivered, and the narration may lag behind).
// So "all ready" is judged only over the players the narration has
// introduced, the ones present when it started and those whose join it
// has told: it never announces a start that counts a player before saying
// that player joined.
func Narrate(ctx context.Context, l *Lobby, out io.Writer) {
	w := l.rm.Watch() // then the members: a join in between is in both, and told once
	defer w.Close()
	known := map[room.PeerID]string{} // introduced players, by the label last told
	for _, m := range l.rm.Members() {
		known[m.Peer] = displayName(m)
	}
	players := func() []Player {
		return slices.DeleteFunc(l.Players(), func(p Player) bool { _, ok := known[p.Peer]; return !ok })
	}
	wasReady := AllReady(players())
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			return
		}
		name := func(p room.PeerID) string {
			for _, m := range l.rm.Members() {
				if m.Peer == p {
					if p == l.rm.Self().Peer {
						return displayName(m) + " (you)"
					}
					return displayName(m)
				}
			}
			return shortID(p)
		}
		switch ev.Type {
		case room.MemberJoined:
			if _, ok := known[ev.Member.Peer]; !ok {
				// The name may still be empty (a member admitted by a
				// delta): it is shown by its short peer ID until then.
				known[ev.Member.Peer] = displayName(ev.Member)
				fmt.Fprintf(out, "%s joined\n", displayName(ev.Member))
			}
		case room.MemberUpdated:
			if old, ok := known[ev.Member.Peer]; ok && old != displayName(ev.Member) {
				known[ev.Member.Peer] = displayName(ev.Member)
				fmt.Fprintf(out, "%s is now %s\n", old, displayName(ev.Member))
			}
		case room.MemberLeft:
			delete(known, ev.Member.Peer)
			if ev.Member.Peer != l.rm.Self().Peer {
				fmt.Fprintf(out, "%s left (%s)\n", displayName(ev.Member), ev.Reason)
			}
		case room.PresenceChanged:
			narrateChange(out, l, ev.Change, name(ev.Change.Peer))
		}
		if ps := players(); AllReady(ps) != wasReady {
			wasReady = !wasReady
			if wasReady {
				fmt.Fprintf(out, "all %d players ready: the game starts!\n", len(ps))
			} else {
				fmt.Fprintln(out, "waiting for players again")
			}
		}
	}
}

func narrateChange(out io.Writer, l *Lobby, ch ephemeral.Change, who string) {
	if ch.Gone {
		return
	}
	changed := append(slices.Clone(ch.Added), ch.Updated...)
	if slices.Contains(changed, keyCharacter) {
		var c string
		if ok, err := l.rm.GetJSON(ch.Peer, keyCharacter, &c); ok && err == nil {
			fmt.Fprintf(out, "%s chose %s\n", who, clean(c))
		}
	}
	if slices.Contains(changed, keyReady) {
		var r bool
		if ok, _ := l.rm.GetJSON(ch.Peer, keyReady, &r); ok && r {
			fmt.Fprintf(out, "%s is ready\n", who)
		} else if ok {
			fmt.Fprintf(out, "%s is not ready\n", who)
		}
	}
}

// Render draws the arena (each player as the first letter of its
// character, or '@' before it has one; the local player in bold) and the
// roster below it.
func Render(w io.Writer, roomID string, players []Player, ansi bool) {
	grid := make([][]string, ArenaH)
	for y := range grid {
		grid[y] = slices.Repeat([]string{" "}, ArenaW)
	}
	for _, p := range players {
		if p.Pos != nil {
			grid[p.Pos.Y][p.Pos.X] = glyph(p, ansi)
		}
	}
	ready := 0
	for _, p := range players {
		if p.Ready {
			ready++
		}
	}
	fmt.Fprintf(w, "Convene lobby %q: %s, %d ready\n", roomID, count(len(players), "player"), ready)
	fmt.Fprintf(w, "┌%s┐\n", strings.Repeat("─", ArenaW))
	for _, row := range grid {
		fmt.Fprintf(w, "│%s│\n", strings.Join(row, ""))
	}
	fmt.Fprintf(w, "└%s┘\n", strings.Repeat("─", ArenaW))
	for _, p := range players {
		name := p.Name
		if p.Self {
			name += " (you)"
		}
		char := p.Character
		if char == "" {
			char = "-"
		}
		state := "not ready"
		if p.Ready {
			state = "READY"
		}
		where := "-"
		if p.Pos != nil {
			where = fmt.Sprintf("(%d,%d)", p.Pos.X, p.Pos.Y)
		}
		fmt.Fprintf(w, " %s  %-24s %-7s %-9s %s\n", glyph(p, ansi), name, char, state, where)
	}
	if AllReady(players) {
		fmt.Fprintf(w, "\nAll %d players ready: the game starts!\n", len(players))
	}
}

// count says "1 player", "2 players".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func glyph(p Player, ansi bool) string {
	g := "@"
	if p.Character != "" && p.Character != "?" {
		g = strings.ToUpper(p.Character[:1])
	}
	if p.Self && ansi {
		return "\x1b[1;32m" + g + "\x1b[0m"
	}
	return g
}

func displayName(m room.Identity) string {
	if m.Name == "" {
		return shortID(m.Peer)
	}
	return clean(m.Name)
}

func shortID(p room.PeerID) string {
	id := p.String()
	return "…" + id[max(0, len(id)-6):]
}

func hash(s string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return h.Sum32()
}

// clean returns s as it is if it is printable UTF-8, else Go-quoted, so
// that a peer cannot drive the terminal with control characters.
func clean(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return strconv.Quote(s)
	}
	return s
}
