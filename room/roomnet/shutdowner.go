package roomnet

import "context"

// Shutdowner is an optional extension of Network, for a network that can
// close gracefully: Shutdown closes it as Close does, after waiting,
// bounded by ctx, until the room's own messages already published (a
// goodbye) are on their way. It returns ctx's error (possibly joined with
// a close error) if ctx ended first. The gossip package's topic is one.
// room.Room.Shutdown closes its network with it (with Shutdown's ctx), and
// so does the end of the linger after Leave (bounded by 2 s);
// room.Room.Close calls Close.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}
