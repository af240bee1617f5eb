package doc_test

import (
	"context"
	"fmt"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/storage"
)

// The whole flow of one document: open (with a schema), change, watch,
// read, flush, and open again from storage.
func Example() {
	ctx := context.Background()
	st := storage.NewMemory() // storage.OpenBolt for a durable file
	schema := func(tx *doc.Tx) error { return tx.Set(doc.Path{"messages"}, []any{}) }

	h, err := doc.Open(ctx, "chat-general-messages", doc.Options{Storage: st, Init: schema})
	if err != nil {
		fmt.Println(err)
		return
	}
	w := h.Watch()
	err = h.Change(func(tx *doc.Tx) error {
		return tx.Append(doc.Path{"messages"}, map[string]any{"from": "ana", "text": "hi"})
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ev, _ := w.Next(ctx)
	fmt.Println(ev.Type, ev.Origin, len(ev.Before), "→", len(ev.After), "head")

	text, _, _ := h.Get(doc.Path{"messages", 0, "text"})
	fmt.Println(text)
	_ = h.Flush(ctx) // durable now
	_ = h.Close(ctx)

	again, _ := doc.Open(ctx, "chat-general-messages", doc.Options{Storage: st})
	defer again.Close(ctx)
	v, _ := again.Value()
	fmt.Println(v)
	// Output:
	// changed local 1 → 1 head
	// hi
	// map[messages:[map[from:ana text:hi]]]
}

// Collaborative text and counters.
func ExampleTx_Splice() {
	h, _ := doc.Open(context.Background(), "notes", doc.Options{})
	defer h.Close(context.Background())
	_ = h.Change(func(tx *doc.Tx) error {
		if err := tx.Set(doc.Path{"body"}, doc.Text("hello")); err != nil {
			return err
		}
		if err := tx.Splice(doc.Path{"body"}, 5, 0, ", world"); err != nil {
			return err
		}
		return tx.Increment(doc.Path{"edits"}, 1)
	})
	body, _, _ := h.Get(doc.Path{"body"})
	edits, _, _ := h.Get(doc.Path{"edits"})
	fmt.Println(body, edits)
	// Output: hello, world 1
}
