package room

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/convene-p2p/convene/ephemeral"
)

func TestValidateID(t *testing.T) {
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{"lobby", true},
		{"chat-général", true},
		{strings.Repeat("x", MaxIDLen), true},
		{strings.Repeat("x", MaxIDLen+1), false},
		{"", false},
		{"a/b", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"bad\xffutf8", false},
	} {
		err := ValidateID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateID(%q) = %v", tt.id, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, not ErrInvalidID", tt.id, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	zero, err := Config{}.validate()
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultConfig()
	if zero.Timeout != def.Timeout || zero.HeartbeatInterval != def.HeartbeatInterval ||
		zero.PublishInterval != def.PublishInterval || zero.Linger != def.Linger || zero.Logger == nil ||
		zero.Clock != (realClock{}) || zero.WatchBuffer != DefaultWatchBuffer || zero.Seed != 0 {
		t.Errorf("zero config = %+v, want the defaults %+v", zero, def)
	}
	if _, err := LocalConfig().validate(); err != nil {
		t.Errorf("LocalConfig: %v", err)
	}
	if c, _ := (Config{Timeout: 9 * time.Second}).validate(); c.HeartbeatInterval != 3*time.Second || c.Linger != 9*time.Second {
		t.Errorf("derived defaults: %+v", c)
	}
	for name, c := range map[string]Config{
		"negative timeout":     {Timeout: -1},
		"heartbeat >= timeout": {Timeout: time.Second, HeartbeatInterval: time.Second},
		"publish >= heartbeat": {HeartbeatInterval: time.Second, PublishInterval: time.Second},
		"negative publish":     {PublishInterval: -time.Millisecond},
		"negative limit":       {Limits: ephemeral.Limits{MaxPeers: -1}},
		"negative WatchBuffer": {WatchBuffer: -1},
	} {
		if _, err := c.validate(); err == nil || !strings.HasPrefix(err.Error(), "room: ") {
			t.Errorf("%s: validate() = %v", name, err)
		}
	}
}

func TestStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{Joined.String(), "joined"},
		{Left.String(), "left"},
		{Closed.String(), "closed"},
		{Status(0).String(), "unknown"},
		{MemberJoined.String(), "member-joined"},
		{MemberLeft.String(), "member-left"},
		{MemberUpdated.String(), "member-updated"},
		{PresenceChanged.String(), "presence-changed"},
		{Broadcast.String(), "broadcast"},
		{Lagged.String(), "lagged"},
		{RoomDestroyed.String(), "room-destroyed"},
		{EventType(0).String(), "unknown"},
		{ReasonLeft.String(), "left"},
		{ReasonTimeout.String(), "timeout"},
		{LeaveReason(0).String(), "unknown"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
