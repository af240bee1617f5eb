package main

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer echoes every connection back until it closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// The proxy counts every byte both ways (the figure the benchmark reports
// as bytes on the wire), and Cut parts the peers: open connections end and
// new ones are refused until Restore.
func TestProxyCountsBothWaysAndCuts(t *testing.T) {
	px, err := newProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	c, err := net.Dial("tcp", px.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("convene"), 1000) // 7000 B
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("the proxy changed the bytes")
	}
	if n := px.Bytes(); n != int64(2*len(msg)) {
		t.Fatalf("counted %d B, want %d (both ways)", n, 2*len(msg))
	}

	px.Cut()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(got); err == nil || isTimeout(err) {
		t.Fatalf("a connection through the proxy survived Cut (%v)", err)
	}
	// A connection made while cut is closed at once.
	c2, err := net.Dial("tcp", px.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c2.Read(got); err == nil || isTimeout(err) {
		t.Fatalf("a connection made while cut was served (%v)", err)
	}
	c2.Close()

	px.Restore()
	c3, err := net.Dial("tcp", px.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, err := c3.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = c3.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c3, got[:1]); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
