package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/examples/internal/exampletest"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const chromiumPath = "/usr/bin/chromium"

// peerPage is one peer of the test: a repo on loopback, its room and the
// cursor page served for it.
type peerPage struct {
	rp  *repo.Repo
	rm  *room.Room
	srv *Server
	url string
}

// startPeers starts one peer per name in one room, connected to the first,
// each serving its page, and waits until every room has all the members.
func startPeers(t *testing.T, names ...string) []*peerPage {
	t.Helper()
	rps := exampletest.Peers(t, names...)
	rooms := exampletest.Join(t, "cursors-test", rps...)
	var peers []*peerPage
	for i, rm := range rooms {
		srv := NewServer(rm)
		hs := httptest.NewServer(srv)
		// Cleanups run last-in first-out: the event streams end (srv.Close)
		// before the HTTP server waits for its handlers (hs.Close).
		t.Cleanup(hs.Close)
		t.Cleanup(srv.Close)
		peers = append(peers, &peerPage{rp: rps[i], rm: rm, srv: srv, url: hs.URL + "/"})
	}
	exampletest.WaitMembers(t, rooms...)
	return peers
}

// newBrowser starts headless Chromium (Debian's package) and returns the
// context of its first tab. It skips the test when Chromium is missing,
// unless CI is set: CI installs it (.ci/run), so there it is a failure.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s not found (apt-get install chromium); skipping the browser test outside CI", chromiumPath)
		}
		t.Fatalf("%s not found in CI: .ci/run should install Debian's chromium package", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		// Both pages stay live although only one tab is in front.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1280, 800),
		chromedp.UserDataDir(t.TempDir()),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc) // kills the browser if it is still there, and waits for it
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		_ = chromedp.Cancel(browserCtx) // closes the browser gracefully
		cancelBrowser()
	})
	// Start the browser now, so that a failure to start is reported here.
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return browserCtx
}

// openPage opens url in a new tab of the browser (or its first tab) and
// waits until the page's live event stream lists n members.
func openPage(t *testing.T, parent context.Context, first bool, url string, n int) context.Context {
	t.Helper()
	tab := parent
	if !first {
		var cancel context.CancelFunc
		tab, cancel = chromedp.NewContext(parent)
		t.Cleanup(cancel)
		// The first Run on a context opens its tab, which then lives as long
		// as the context of that Run: so not the timed one below.
		if err := chromedp.Do(tab); err != nil {
			t.Fatalf("opening a tab: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("board")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelectorAll("#members li").length === %d`, n),
			chromedp.WithPollingInterval(20*time.Millisecond)),
	)
	if err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	return tab
}

// remoteCursor is what a page draws for one remote member's cursor.
type remoteCursor struct {
	Found bool    `json:"found"`
	X     float64 `json:"x"`
	Y     float64 `json:"y"`
	Left  string  `json:"left"`
	Top   string  `json:"top"`
	Name  string  `json:"name"`
	Shown bool    `json:"shown"`
}

func readCursor(tab context.Context, peer string) (remoteCursor, error) {
	ctx, cancel := context.WithTimeout(tab, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[remoteCursor](fmt.Sprintf(`(() => {
		const el = document.querySelector('.cursor[data-peer=%q]');
		if (!el) return {found: false};
		const label = el.querySelector('.name');
		const r = el.getBoundingClientRect();
		return {found: true, x: +el.dataset.x, y: +el.dataset.y, left: el.style.left, top: el.style.top,
			name: label.textContent, shown: r.width > 0 && getComputedStyle(el).display !== 'none'};
	})()`, peer)))
}

// The scenario the issue asks for, in a real browser: two peers, each with
// its page open; the mouse moves in page 1; page 2 draws peer 1's cursor at
// the moved position (as board fractions) with peer 1's name. Then the mouse
// leaves page 1's board and the cursor disappears from page 2.
func TestCursorMovedInOnePageAppearsInTheOther(t *testing.T) {
	browser := newBrowser(t)
	peers := startPeers(t, "alice", "bob", "carol")
	alice, bob, carol := peers[0], peers[1], peers[2]
	alicePeer := alice.rp.ID().String()

	page1 := openPage(t, browser, true, alice.url, 3)
	page2 := openPage(t, browser, false, bob.url, 3)

	// Carol has no browser: her cursor is posted to her page's server.
	res, err := http.Post(carol.url+"cursor", "application/json", strings.NewReader(`{"x":0.7,"y":0.65}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /cursor for carol: status %d", res.StatusCode)
	}

	// Where page 1's board is on its screen.
	rect, err := chromedp.Run(page1, chromedp.Evaluate[struct{ Left, Top, Width, Height float64 }](
		`(() => { const r = document.getElementById("board").getBoundingClientRect(); return {left: r.left, top: r.top, width: r.width, height: r.height}; })()`))
	if err != nil {
		t.Fatal(err)
	}
	if rect.Width < 100 || rect.Height < 100 {
		t.Fatalf("board is too small to test: %+v", rect)
	}

	// Move the mouse across page 1's board, ending at (25%, 40%).
	const wantX, wantY = 0.25, 0.40
	var moves []chromedp.Action[chromedp.Void]
	for i := 0; i <= 10; i++ {
		f := float64(i) / 10
		x := rect.Left + rect.Width*(0.8+(wantX-0.8)*f)
		y := rect.Top + rect.Height*(0.1+(wantY-0.1)*f)
		moves = append(moves, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y))
	}
	if err := chromedp.Do(page1, moves...); err != nil {
		t.Fatal(err)
	}

	// Page 2 shows alice's cursor where page 1's mouse stopped, with her name.
	var got remoteCursor
	exampletest.WaitFor(t, 10*time.Second, "page 2 to draw alice's cursor at the final position", func() bool {
		c, err := readCursor(page2, alicePeer)
		if err != nil {
			t.Fatal(err)
		}
		got = c
		return c.Found && math.Abs(c.X-wantX) < 0.005 && math.Abs(c.Y-wantY) < 0.005
	})
	if got.Name != "alice" || !got.Shown {
		t.Fatalf("page 2 draws alice's cursor as %+v, want it visible and named alice", got)
	}
	if got.Left != fmt.Sprintf("%v%%", got.X*100) || got.Top != fmt.Sprintf("%v%%", got.Y*100) {
		t.Fatalf("cursor element placed at left=%s top=%s, want %v%% %v%%", got.Left, got.Top, got.X*100, got.Y*100)
	}
	// What page 1 sent is exactly what page 2 shows, and what bob's room holds.
	sent, err := chromedp.Run(page1, chromedp.Evaluate[struct{ X, Y float64 }](`window.convene.lastSent`))
	if err != nil {
		t.Fatal(err)
	}
	var held Cursor
	if ok, err := bob.rm.GetJSON(alice.rm.Self().Peer, cursorKey, &held); !ok || err != nil {
		t.Fatalf("bob's room holds no cursor for alice (ok=%v, err=%v)", ok, err)
	}
	if sent.X != got.X || sent.Y != got.Y || held.X != got.X || held.Y != got.Y {
		t.Fatalf("page 1 sent %+v, bob's room holds %+v, page 2 shows (%v, %v)", sent, held, got.X, got.Y)
	}
	// Carol's cursor is drawn too, with her name.
	exampletest.WaitFor(t, 10*time.Second, "page 2 to draw carol's cursor", func() bool {
		c, err := readCursor(page2, carol.rp.ID().String())
		if err != nil {
			t.Fatal(err)
		}
		return c.Found && c.X == 0.7 && c.Y == 0.65 && c.Name == "carol" && c.Shown
	})
	// Page 2 does not draw bob's own cursor: that is the real mouse pointer.
	if c, err := readCursor(page2, bob.rp.ID().String()); err != nil || c.Found {
		t.Fatalf("page 2 draws its own peer's cursor (%+v, %v)", c, err)
	}

	if path := os.Getenv("CURSORS_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(page2, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Clean(path), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of page 2 in %s", path)
	}

	// The mouse leaves page 1's board: alice's cursor disappears from page 2.
	if err := chromedp.Do(page1, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, rect.Left+rect.Width+5, rect.Top+rect.Height+5)); err != nil {
		t.Fatal(err)
	}
	exampletest.WaitFor(t, 10*time.Second, "alice's cursor to leave page 2", func() bool {
		c, err := readCursor(page2, alicePeer)
		if err != nil {
			t.Fatal(err)
		}
		return !c.Found
	})
}

// The HTTP API without a browser: the event stream starts with a snapshot,
// a posted cursor becomes presence, and bad input is refused.
func TestServerAPI(t *testing.T) {
	p := startPeers(t, "carol")[0]
	self := p.rm.Self().Peer

	post := func(method, ctype, body string) int {
		req, err := http.NewRequest(method, p.url+"cursor", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post(http.MethodPost, "application/json", `{"x":0.5,"y":0.123456}`); code != http.StatusNoContent {
		t.Fatalf("POST /cursor: status %d", code)
	}
	var c Cursor
	if ok, err := p.rm.GetJSON(self, cursorKey, &c); !ok || err != nil || c != (Cursor{0.5, 0.1235}) {
		t.Fatalf("presence after POST: %+v ok=%v err=%v, want {0.5 0.1235}", c, ok, err)
	}
	snap := p.srv.Snapshot()
	if len(snap.Members) != 1 || !snap.Members[0].Self || snap.Members[0].Name != "carol" || snap.Members[0].Cursor == nil || *snap.Members[0].Cursor != c {
		t.Fatalf("snapshot: %+v", snap)
	}
	for _, bad := range []struct{ ctype, body string }{
		{"text/plain", `{"x":0.5,"y":0.5}`}, // a cross-site form could send this
		{"application/json", `{"x":2,"y":0.5}`},
		{"application/json", `{"x":-0.1,"y":0.5}`},
		{"application/json", `nonsense`},
	} {
		if code := post(http.MethodPost, bad.ctype, bad.body); code < 400 {
			t.Errorf("POST %s %q: status %d, want an error", bad.ctype, bad.body, code)
		}
	}
	if ok, _ := p.rm.GetJSON(self, cursorKey, &c); !ok || c != (Cursor{0.5, 0.1235}) {
		t.Fatalf("a refused POST changed the cursor to %+v", c)
	}
	if code := post(http.MethodDelete, "application/json", `{}`); code != http.StatusNoContent {
		t.Fatalf("DELETE /cursor: status %d", code)
	}
	if _, ok := p.rm.Get(self, cursorKey); ok {
		t.Fatal("cursor still set after DELETE")
	}

	// The event stream's first message is the snapshot.
	res, err := http.Get(p.url + "events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events Content-Type %q", ct)
	}
	buf := make([]byte, 4096)
	var got strings.Builder
	for !strings.Contains(got.String(), "\n\ndata: ") || !strings.HasSuffix(got.String(), "\n\n") {
		n, err := res.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("reading events: %v (got %q)", err, got.String())
		}
	}
	if !strings.Contains(got.String(), `"name":"carol","self":true`) {
		t.Fatalf("first event is not the snapshot: %q", got.String())
	}
}

// A member's colour follows its peer ID: when a member listed before it
// leaves, it keeps its colour, and every page shows it in the same one.
// (With colours by position in the member list, the members after the one
// that left changed colour.)
func TestColourFollowsPeerNotListOrder(t *testing.T) {
	peers := startPeers(t, "alice", "bob", "carol")
	alice := peers[0]
	colours := func(pp *peerPage) map[string]string {
		c := map[string]string{}
		for _, m := range pp.srv.Snapshot().Members {
			c[m.Peer] = m.Color
		}
		return c
	}
	before := colours(alice)
	if other := colours(peers[1]); fmt.Sprint(other) != fmt.Sprint(before) {
		t.Fatalf("pages disagree on colours: alice's %v, bob's %v", before, other)
	}
	// The leaver: the first member in the list other than alice, so that at
	// least one member after it stays.
	var leaver *peerPage
	for _, m := range alice.rm.Members() {
		for _, pp := range peers[1:] {
			if pp.rm.Self().Peer == m.Peer && leaver == nil {
				leaver = pp
			}
		}
	}
	if err := leaver.rm.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	exampletest.WaitFor(t, 10*time.Second, "alice to see the leaver go", func() bool { return len(alice.rm.Members()) == 2 })
	after := colours(alice)
	for id, c := range after {
		if before[id] != c {
			t.Errorf("member %s changed colour from %s to %s when another left", id, before[id], c)
		}
	}
}
