package main

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// mono is CLOCK_MONOTONIC in nanoseconds: one clock for every process on
// the machine (Node's process.hrtime reads it too), so a send time read in
// one process and a receive time read in another compare directly.
func mono() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// tcpBytes sums the kernel's byte counters (TCP_INFO bytes_acked, i.e.
// payload sent and acknowledged, and bytes_received) over every TCP socket
// this process holds open: TCP payload, so libp2p's TLS records and yamux
// frames included, TCP/IP headers not. Sockets closed meanwhile take their
// counts with them.
func tcpBytes() (tx, rx int64) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, 0
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			continue
		}
		tx += int64(info.Bytes_acked)
		rx += int64(info.Bytes_received)
	}
	return tx, rx
}
