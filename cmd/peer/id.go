package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/convene-p2p/convene/p2p"
)

type idEvent struct {
	Peer    string   `json:"peer"`
	Key     string   `json:"key"`
	Created bool     `json:"created"`
	Addrs   []string `json:"addrs"`
}

func (idEvent) eventType() string { return "id" }

func (e idEvent) human() string {
	var b strings.Builder
	b.WriteString(e.Peer)
	for _, a := range e.Addrs {
		b.WriteString("\n")
		b.WriteString(a)
	}
	return b.String()
}

// runID prints the peer ID of a key file (`peer id`).
func runID(o idOptions, stdout, stderr io.Writer) int {
	created := false
	if _, err := os.Stat(o.KeyFile); errors.Is(err, fs.ErrNotExist) {
		if !o.Create {
			return fail(stderr, exitRuntime, "peer id: no key file at %s (peer run creates it on first start; peer id --create creates it now)", o.KeyFile)
		}
		created = true
	}
	k, err := p2p.LoadOrCreateKey(o.KeyFile)
	if err != nil {
		return fail(stderr, exitRuntime, "peer id: %v", err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return fail(stderr, exitRuntime, "peer id: key file %s: %v", o.KeyFile, err)
	}
	ev := idEvent{Peer: id.String(), Key: o.KeyFile, Created: created, Addrs: []string{}}
	p2pPart, err := multiaddr.NewComponent("p2p", id.String())
	if err != nil {
		return fail(stderr, exitRuntime, "peer id: %v", err)
	}
	for _, a := range o.Listen {
		ev.Addrs = append(ev.Addrs, a.Encapsulate(p2pPart.Multiaddr()).String())
	}
	newPrinter(stdout, stderr, o.JSON).emit(ev)
	if created && !o.JSON {
		fmt.Fprintf(stderr, "created key file %s\n", o.KeyFile)
	}
	return exitOK
}
