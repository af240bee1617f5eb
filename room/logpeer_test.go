package room

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLogsShowPeerIDsAsText(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "peer", logPeer("\x62\x62\x62"))
	if !strings.Contains(buf.String(), "peer=a3gV") {
		t.Errorf("log line %q does not show the peer in base58", buf.String())
	}
}
