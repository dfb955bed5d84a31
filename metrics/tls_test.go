package metrics

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/reverbgo/reverb/internal/testkit"
	"github.com/reverbgo/reverb/loop"
)

// TestTLSHandshakeMetrics: handshakes in progress, failed and timed out are
// exported.
func TestTLSHandshakeMetrics(t *testing.T) {
	cert, _ := testkit.SelfSigned(t)
	const timeout = 500 * time.Millisecond
	n := newNodeWith(t, Options{}, func(c *loop.Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.HandshakeTimeout = timeout
	})
	n.wsAddr = testkit.Serve(t, n.srv)
	// One request over TLS, so that Stats is ordered after gnet registered
	// its loops (see run).
	c, err := tls.Dial("tcp", n.wsAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /up over TLS: %v %v", resp, err)
	}
	c.Close()

	silent, err := net.Dial("tcp", n.wsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// The listeners defer accepting until the first bytes arrive.
	if _, err := silent.Write([]byte{0x16}); err != nil {
		t.Fatal(err)
	}
	n.expectSamples(map[string]float64{
		"reverb_tls_handshakes_in_progress":   1,
		"reverb_tls_handshakes_failed_total":  0,
		"reverb_tls_handshakes_refused_total": 0,
	})
	garbage, err := net.Dial("tcp", n.wsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	_, _ = io.WriteString(garbage, "GET / HTTP/1.1\r\n\r\n")
	n.expectSamples(map[string]float64{
		"reverb_tls_handshakes_failed_total":    1,
		"reverb_tls_handshakes_timed_out_total": 1,
		"reverb_tls_handshakes_in_progress":     0,
	})
}
