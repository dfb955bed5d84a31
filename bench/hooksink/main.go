// Command hooksink is a webhook receiver for benchmarks: it answers every
// POST with 204, counts the events in the bodies ({"events":[...]}) by name,
// and serves the counts as JSON on GET /count. It checks nothing else.
//
//	hooksink -addr 127.0.0.1:9800
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"sync"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9800", "listen address")
	flag.Parse()
	var mu sync.Mutex
	counts := map[string]int64{}
	var bodies int64
	http.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		out := map[string]any{"bodies": bodies, "events": counts}
		b, _ := json.Marshal(out)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Events []struct {
				Name string `json:"name"`
			} `json:"events"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		bodies++
		for _, e := range body.Events {
			counts[e.Name]++
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
