package room

import (
	"maps"
	"slices"
)

// view is an immutable snapshot of what readers see. The shell publishes
// it after every input; any goroutine may read it.
type view struct {
	status  Status
	epoch   uint64
	members []Identity                   // sorted by peer; self included while joined
	states  map[PeerID]map[string][]byte // members only; inner maps never change
}

// view returns the snapshot after the latest inputs, reusing what did not
// change from prev (which may be nil).
func (m *machine) view(prev *view) *view {
	if prev != nil && !m.dirtyStatus && !m.dirtyMembers && len(m.dirtyPeers) == 0 {
		return prev
	}
	v := &view{status: m.status, epoch: m.epoch()}
	if prev != nil && !m.dirtyMembers {
		v.members = prev.members
	} else {
		v.members = make([]Identity, 0, len(m.members)+1)
		if m.status == Joined {
			v.members = append(v.members, cloneIdentity(m.self))
		}
		for _, mem := range m.members {
			v.members = append(v.members, cloneIdentity(mem.id))
		}
		slices.SortFunc(v.members, func(a, b Identity) int {
			switch {
			case a.Peer < b.Peer:
				return -1
			case a.Peer > b.Peer:
				return 1
			}
			return 0
		})
	}
	if prev != nil {
		// Every membership change marks the peer dirty, so patching the
		// previous states is enough.
		v.states = maps.Clone(prev.states)
		for p := range m.dirtyPeers {
			m.refreshState(v.states, p)
		}
	} else {
		v.states = make(map[PeerID]map[string][]byte, len(m.members)+1)
		m.refreshState(v.states, m.self.Peer)
		for p := range m.members {
			m.refreshState(v.states, p)
		}
	}
	clear(m.dirtyPeers)
	m.dirtyMembers, m.dirtyStatus = false, false
	return v
}

func (m *machine) refreshState(states map[PeerID]map[string][]byte, p PeerID) {
	isMember := m.members[p] != nil || (p == m.self.Peer && m.status == Joined)
	if !isMember {
		delete(states, p)
		return
	}
	s := m.store.State(p)
	if s == nil {
		s = map[string][]byte{}
	}
	states[p] = s
}
