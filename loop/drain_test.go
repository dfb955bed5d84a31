package loop

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/reverbgo/reverb/pusher"
)

func TestDrainClosesSessionsWith4200(t *testing.T) {
	srv, addr := startServer(t, pusher.Options{}, Config{Loops: 2})
	var clients []*wsClient
	for range 5 {
		c := connect(t, addr, testKey, "")
		c.established()
		c.subscribe("news")
		clients = append(clients, c)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Drain(context.Background(), 2*time.Second) }()
	for i, c := range clients {
		e := c.expectEvent("pusher:error")
		if !strings.Contains(e.DataString(), `"code":4200`) {
			t.Fatalf("client %d: %s", i, e.DataString())
		}
		if code := c.expectClose(); code != 4200 {
			t.Fatalf("client %d: close code %d", i, code)
		}
		c.expectEOF()
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return")
	}
}
