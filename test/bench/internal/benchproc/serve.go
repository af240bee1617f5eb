package benchproc

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
)

// Serve is the child side of the line protocol, for a harness's own binary
// started again as a peer process: it reads one JSON request per line from
// in until in ends or a request has op "quit", decodes each into an R,
// answers each on its own goroutine with handle and writes the reply with
// write (handle's map with the request's id set; on error only the id and
// "error"). Lines that do not decode are skipped. It returns when reading
// ends; wait waits for the answers still in flight.
func Serve[R any](in io.Reader, handle func(R) (map[string]any, error), write func(map[string]any)) (wait func()) {
	var wg sync.WaitGroup
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		var head struct {
			ID int    `json:"id"`
			Op string `json:"op"`
		}
		var req R
		if json.Unmarshal(sc.Bytes(), &head) != nil || json.Unmarshal(sc.Bytes(), &req) != nil {
			continue
		}
		if head.Op == "quit" {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := handle(req)
			if err != nil {
				res = map[string]any{"error": err.Error()}
			} else if res == nil {
				res = map[string]any{}
			}
			res["id"] = head.ID
			write(res)
		}()
	}
	return wg.Wait
}
