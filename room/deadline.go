package room

import "time"

// deadline is a time at which the machine has something to do; the zero
// value is not set. Like everything the machine expires, it is due at the
// deadline itself: once now is not before it.
type deadline struct{ at time.Time }

// set schedules d at t.
func (d *deadline) set(t time.Time) { d.at = t }

// clear unsets d.
func (d *deadline) clear() { d.at = time.Time{} }

// isSet reports whether d is scheduled.
func (d deadline) isSet() bool { return !d.at.IsZero() }

// due reports whether d is scheduled and has been reached at now.
func (d deadline) due(now time.Time) bool { return d.isSet() && !now.Before(d.at) }

// lower schedules d at t if d is not set or is later than t.
func (d *deadline) lower(t time.Time) {
	if !d.isSet() || t.Before(d.at) {
		d.at = t
	}
}

// take lowers d to o if o is set and earlier: folding take over several
// deadlines leaves the earliest of those that are set.
func (d *deadline) take(o deadline) {
	if o.isSet() {
		d.lower(o.at)
	}
}
