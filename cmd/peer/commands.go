package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// command is one parsed stdin line.
type command struct {
	Name  string        // canonical name: set, del, join, leave, use, members, state, say, wait, rooms, addrs, help, quit; "" for a blank or comment line
	Room  string        // the room named by the command; "" = the current room
	Key   string        // set, del
	Value []byte        // set: compact JSON
	TTL   time.Duration // set --ttl
	Text  string        // say; doc: the words after "doc"
	N     int           // wait: other members to wait for
	Wait  time.Duration // wait: how long at most
}

// defaultWaitTimeout bounds a wait command (and --wait-members) that
// names no timeout.
const defaultWaitTimeout = 30 * time.Second

// commandHelp is what the help command prints.
const commandHelp = `commands (one per line; "#" starts a comment):
  set [@room] [--ttl DURATION] KEY JSON   set your presence KEY to a JSON value
  del [@room] KEY                         delete your presence KEY
  say [@room] TEXT                        broadcast a line to the room ("say -- @x" sends "@x")
  wait [@room] [N] [TIMEOUT]              wait until N other members are in the room (default 1,
                                          at most 30s): a script's first command
  join ROOM                               join a room (it becomes the current room if there is none)
  leave [ROOM]                            leave a room (goodbye sent); default: the current room
  use ROOM                                make ROOM the current room
  members [ROOM]                          list a room's members
  state [ROOM]                            show every member's presence in a room
  rooms                                   list joined rooms; * marks the current one
  addrs                                   show your peer ID and addresses
  help                                    this text
  quit                                    leave every room and exit (also: exit, EOF)
` + docHelp + `
Without @room or ROOM a command applies to the current room: the first --room,
or the one chosen with "use".`

// parseCommand parses one stdin line. It never fails on a blank line or a
// comment (Name ""); every error message names the command.
func parseCommand(line string) (command, error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return command{}, nil
	}
	name, rest := cutWord(line)
	c := command{Name: strings.ToLower(name)}
	switch c.Name {
	case "set":
		c.Room, rest = cutRoom(rest)
		if w, r := cutWord(rest); w == "--ttl" || strings.HasPrefix(w, "--ttl=") {
			var ds string
			if v, ok := strings.CutPrefix(w, "--ttl="); ok {
				ds, rest = v, r
			} else {
				ds, rest = cutWord(r)
			}
			d, err := time.ParseDuration(ds)
			if err != nil || d <= 0 {
				return c, fmt.Errorf("set: --ttl %q: want a positive duration with a unit, such as 10s", ds)
			}
			c.TTL = d
		}
		c.Key, rest = cutWord(rest)
		if c.Key == "" {
			return c, errors.New("set: missing KEY and JSON value (set KEY JSON)")
		}
		if rest == "" {
			return c, fmt.Errorf("set %s: missing JSON value (set KEY JSON)", c.Key)
		}
		// Unmarshal reports where a syntax error is; Compact does not.
		var raw json.RawMessage
		if err := json.Unmarshal([]byte(rest), &raw); err != nil {
			return c, fmt.Errorf("set %s: malformed JSON value: %v", c.Key, jsonErr(err))
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return c, fmt.Errorf("set %s: malformed JSON value: %v", c.Key, jsonErr(err))
		}
		c.Value = buf.Bytes()
	case "del", "delete":
		c.Name = "del"
		c.Room, rest = cutRoom(rest)
		c.Key, rest = cutWord(rest)
		if c.Key == "" {
			return c, errors.New("del: missing KEY (del KEY)")
		}
		if rest != "" {
			return c, fmt.Errorf("del: unexpected %q after KEY", rest)
		}
	case "say":
		c.Room, rest = cutRoom(rest)
		if w, r := cutWord(rest); w == "--" {
			rest = r
		}
		if rest == "" {
			return c, errors.New("say: nothing to say (say TEXT)")
		}
		c.Text = rest
	case "join", "use":
		w, r := cutWord(rest)
		c.Room = strings.TrimPrefix(w, "@")
		if c.Room == "" {
			return c, fmt.Errorf("%s: missing ROOM (%s ROOM)", c.Name, c.Name)
		}
		if r != "" {
			return c, fmt.Errorf("%s: one room at a time (unexpected %q)", c.Name, r)
		}
	case "leave", "members", "state":
		w, r := cutWord(rest)
		c.Room = strings.TrimPrefix(w, "@")
		if w != "" && c.Room == "" {
			return c, fmt.Errorf("%s: empty room name", c.Name)
		}
		if r != "" {
			return c, fmt.Errorf("%s: unexpected %q after ROOM", c.Name, r)
		}
	case "doc": // doccmd.go parses the rest
		c.Text = rest
	case "wait":
		c.Room, rest = cutRoom(rest)
		if err := parseWait(&c, rest); err != nil {
			return c, err
		}
	case "rooms", "addrs", "help", "quit", "exit":
		if c.Name == "exit" {
			c.Name = "quit"
		}
		if rest != "" {
			return c, fmt.Errorf("%s: takes no arguments", c.Name)
		}
	default:
		return command{Name: c.Name}, fmt.Errorf("unknown command %q (try help)", name)
	}
	return c, nil
}

// waitUsage is the syntax a wait error recalls.
const waitUsage = "wait [@room] [N] [TIMEOUT], e.g. wait 2 10s"

// parseWait parses the arguments of wait: an optional count N (a whole
// number, at least 1; "members N" reads the same) and an optional
// TIMEOUT (a duration with a unit), in either order.
func parseWait(c *command, rest string) error {
	var haveN, haveT bool
	if w, r := cutWord(rest); strings.EqualFold(w, "members") {
		if n, _ := cutWord(r); !isCount(n) {
			return fmt.Errorf("wait: members needs a count N (%s)", waitUsage)
		}
		rest = r
	}
	for rest != "" {
		var w string
		w, rest = cutWord(rest)
		if isCount(w) {
			n, err := strconv.Atoi(w)
			switch {
			case haveN:
				return fmt.Errorf("wait: two counts (%s)", waitUsage)
			case err != nil || n < 1:
				return fmt.Errorf("wait: count %q: want a whole number of other members, at least 1 (%s)", w, waitUsage)
			}
			c.N, haveN = n, true
			continue
		}
		d, err := time.ParseDuration(w)
		switch {
		case err != nil || d <= 0:
			return fmt.Errorf("wait: %q is neither a count nor a timeout with a unit such as 10s (%s)", w, waitUsage)
		case haveT:
			return fmt.Errorf("wait: two timeouts (%s)", waitUsage)
		}
		c.Wait, haveT = d, true
	}
	if !haveN {
		c.N = 1
	}
	if !haveT {
		c.Wait = defaultWaitTimeout
	}
	return nil
}

// isCount reports whether w is all ASCII digits (and not empty).
func isCount(w string) bool {
	return w != "" && strings.Trim(w, "0123456789") == ""
}

// cutWord splits s at the first run of spaces or tabs; both results are
// trimmed.
func cutWord(s string) (word, rest string) {
	s = strings.TrimLeft(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// cutRoom takes a leading "@room" word off s.
func cutRoom(s string) (room, rest string) {
	w, r := cutWord(s)
	if len(w) > 1 && w[0] == '@' {
		return w[1:], r
	}
	return "", strings.TrimSpace(s)
}

// jsonErr shortens encoding/json's messages for one-line output.
func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) && se.Offset > 0 {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	return err.Error()
}

// maxLine bounds one stdin line; longer lines are reported and skipped.
const maxLine = 1 << 20

// errLineTooLong is reported for a stdin line longer than maxLine.
var errLineTooLong = fmt.Errorf("line longer than %d bytes skipped", maxLine)

// lineReader reads lines of at most max bytes, without the line ending
// ("\n" or "\r\n"). A longer line is consumed and reported as
// errLineTooLong; the reader stays usable. The last line need not end
// with a newline. At the end it returns io.EOF (or the read error).
type lineReader struct {
	r   *bufio.Reader
	max int
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

func (l *lineReader) next() (string, error) {
	var (
		buf     []byte
		tooLong bool
	)
	for {
		chunk, err := l.r.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > l.max+2 { // +2: room for the line ending
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return "", errLineTooLong
			}
			return trimEOL(buf, l.max)
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default: // io.EOF or a read error
			if tooLong {
				return "", errLineTooLong
			}
			if len(buf) > 0 {
				return trimEOL(buf, l.max)
			}
			return "", err
		}
	}
}

func trimEOL(b []byte, max int) (string, error) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) > max {
		return "", errLineTooLong
	}
	return string(b), nil
}
