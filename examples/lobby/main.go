// Command lobby is a game lobby over a Convene room: every player's ready
// flag, character choice and position (published at 10 Hz) are presence.
//
//	go run ./examples/lobby --name alice --character wizard   # terminal 1
//	go run ./examples/lobby --name bob --bot --ready          # terminal 2: a bot that wanders
//
// In a terminal it draws the arena live: WASD or the arrow keys move, 1-4
// choose a character, r toggles ready, q quits. With stdin not a terminal it
// reads line commands and narrates the lobby instead. See README.md.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/convene-p2p/convene/examples/internal/node"
	"github.com/convene-p2p/convene/room"
)

func main() {
	os.Exit(run())
}

func run() int {
	var nf node.Flags
	nf.Register(flag.CommandLine, "lobby", "room of the lobby")
	var (
		character = flag.String("character", "", "character to start with: "+strings.Join(Characters, ", "))
		ready     = flag.Bool("ready", false, "start ready")
		bot       = flag.Bool("bot", false, "wander around by yourself (and keep running after stdin ends)")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "lobby: unexpected argument %q\n", flag.Arg(0))
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rp, err := nf.Start(ctx, os.Stdout, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "lobby: %v\n", err)
		return 1
	}
	defer node.Shutdown(rp) // says goodbye: the others see us leave at once
	rm, err := rp.JoinRoom(ctx, nf.Room, room.Config{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "lobby: %v\n", err)
		return 1
	}
	l := NewLobby(rm)
	if *character != "" {
		if err := l.Choose(*character); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	if err := l.SetReady(*ready); err != nil {
		fmt.Fprintf(os.Stderr, "lobby: %v\n", err)
		return 1
	}

	if restore, ok := rawTerminal(); ok {
		defer restore()
		addr := ""
		if as := rp.Addrs(); len(as) > 0 {
			addr = as[0].String()
		}
		err = playTerminal(ctx, l, nf.Room, addr, *bot)
	} else {
		err = playLines(ctx, l, *bot)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lobby: %v\n", err)
		return 1
	}
	return 0
}

// playTerminal draws the arena at 10 Hz and takes single keys.
// addr is shown so that another player can --bootstrap to this one.
func playTerminal(ctx context.Context, l *Lobby, roomID, addr string, bot bool) error {
	keys := make(chan byte, 64)
	go func() { // ends with the process: a terminal read cannot be interrupted
		buf := make([]byte, 64)
		for {
			n, err := os.Stdin.Read(buf)
			for _, b := range buf[:n] {
				keys <- b
			}
			if err != nil {
				close(keys)
				return
			}
		}
	}()
	tick := time.NewTicker(TickRate)
	defer tick.Stop()
	var esc int
	var msg string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := l.Tick(bot); err != nil {
				return err
			}
			fmt.Print("\x1b[H\x1b[J")
			Render(os.Stdout, roomID, l.Players(), true)
			fmt.Printf("\nothers can connect with --bootstrap %s\n", addr)
			fmt.Printf("[WASD/arrows] move  [1-4] %s  [r] ready  [q] quit  %s", strings.Join(Characters, "/"), msg)
		case b, ok := <-keys:
			if !ok {
				return nil
			}
			switch {
			case esc == 1 && b == '[':
				esc = 2
				continue
			case esc == 2:
				esc = 0
				b = map[byte]byte{'A': 'w', 'B': 's', 'C': 'd', 'D': 'a'}[b]
			case b == 0x1b:
				esc = 1
				continue
			}
			esc = 0
			var err error
			switch b {
			case 'w', 'W':
				l.Step(0, -1)
			case 's', 'S':
				l.Step(0, 1)
			case 'a', 'A':
				l.Step(-1, 0)
			case 'd', 'D':
				l.Step(1, 0)
			case '1', '2', '3', '4':
				err = l.Choose(Characters[b-'1'])
			case 'r', 'R':
				var r bool
				_, _ = l.Room().GetJSON(l.Room().Self().Peer, keyReady, &r)
				err = l.SetReady(!r)
			case 'q', 'Q', 0x03, 0x04:
				return nil
			}
			msg = ""
			if err != nil {
				msg = err.Error()
			}
		}
	}
}

// playLines narrates the lobby and reads line commands: ready, unready,
// char NAME, move DX DY, players, quit.
func playLines(ctx context.Context, l *Lobby, bot bool) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	var mu sync.Mutex // one writer at a time on stdout
	out := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return os.Stdout.Write(p)
	})
	wg.Add(2)
	go func() { defer wg.Done(); Narrate(ctx, l, out) }()
	playErr := make(chan error, 1)
	go func() { defer wg.Done(); playErr <- l.Play(ctx, bot) }()

	lines := make(chan string)
	go func() { // ends with the process: a read of stdin cannot be interrupted
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-playErr:
			return err
		case line, ok := <-lines:
			if !ok {
				if bot {
					lines = nil // a bot keeps playing until it is stopped
					continue
				}
				return nil
			}
			if quit := command(l, strings.Fields(line), out); quit {
				return nil
			}
		}
	}
}

// command runs one line command; it reports whether to quit.
func command(l *Lobby, f []string, out io.Writer) (quit bool) {
	var err error
	switch {
	case len(f) == 0:
	case f[0] == "quit" || f[0] == "exit":
		return true
	case f[0] == "ready":
		err = l.SetReady(true)
	case f[0] == "unready":
		err = l.SetReady(false)
	case f[0] == "char" && len(f) == 2:
		err = l.Choose(f[1])
	case f[0] == "move" && len(f) == 3:
		dx, e1 := strconv.Atoi(f[1])
		dy, e2 := strconv.Atoi(f[2])
		if e1 != nil || e2 != nil {
			err = fmt.Errorf("usage: move DX DY (whole numbers)")
			break
		}
		l.Step(dx, dy)
	case f[0] == "players":
		Render(out, l.Room().ID(), l.Players(), false)
	default:
		err = fmt.Errorf("commands: ready, unready, char %s, move DX DY, players, quit", strings.Join(Characters, "|"))
	}
	if err != nil {
		fmt.Fprintf(out, "! %v\n", err)
	}
	return false
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// rawTerminal switches a terminal on stdin to single keys without echo,
// hides the cursor, and reports false (changing nothing) when stdin or
// stdout is not a terminal or stty is missing.
func rawTerminal() (restore func(), ok bool) {
	reset, ok := node.RawTerminal(os.Stdin, os.Stdout)
	if !ok {
		return nil, false
	}
	fmt.Print("\x1b[?25l") // hide the cursor
	return func() {
		reset()
		fmt.Print("\x1b[?25h\n")
	}, true
}
