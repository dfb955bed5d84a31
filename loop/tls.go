package loop

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// TLS: gnet has no TLS, so when Config.TLS is set the server terminates TLS
// in front of the engine. A crypto/tls listener on the public address
// accepts connections, completes the handshake within HandshakeTimeout, and
// relays the plaintext, byte for byte, to the engine on a private Unix
// socket (no ephemeral ports are used, so there is no 28k limit). Each TLS
// connection costs two goroutines, the TLS record buffers and three file
// descriptors; for large deployments terminate TLS at a reverse proxy
// instead (see the README).

// tlsRelay is the TLS front of a server.
type tlsRelay struct {
	ln      net.Listener
	backend string // path of the engine's Unix socket
	timeout time.Duration
	closed  atomic.Bool
}

// relayBufSize is the copy buffer of each direction: WebSocket traffic is
// small messages, so a small buffer keeps idle connections cheap.
const relayBufSize = 4 << 10

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// newTLSSocket returns a fresh path for the engine's private Unix socket.
func newTLSSocket() (string, func(), error) {
	dir, err := os.MkdirTemp("", "reverb-tls-")
	if err != nil {
		return "", nil, err
	}
	return filepath.Join(dir, "engine.sock"), func() { _ = os.RemoveAll(dir) }, nil
}

func (r *tlsRelay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if r.closed.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and the like: back off briefly instead of spinning.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go r.relay(c.(*tls.Conn))
	}
}

func (r *tlsRelay) relay(c *tls.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(r.timeout))
	if err := c.Handshake(); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	b, err := net.Dial("unix", r.backend)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() {
		pipe(b, c)
		// The client is done sending: let the engine see EOF.
		_ = b.(*net.UnixConn).CloseWrite()
		close(done)
	}()
	// A client that stops reading must not hold the relay forever: each
	// write to it has a deadline (the engine has closed its side as a slow
	// consumer long before).
	pipe(deadlineWriter{c, max(r.timeout, 30*time.Second)}, b)
	_ = c.CloseWrite()
	_ = c.Close()
	<-done
}

// deadlineWriter sets a write deadline before every write.
type deadlineWriter struct {
	c net.Conn
	d time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(w.d))
	return w.c.Write(p)
}

// pipe copies src to dst with a pooled buffer until either side fails.
func pipe(dst io.Writer, src io.Reader) {
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	_, _ = io.CopyBuffer(dst, src, *bp)
}

func (r *tlsRelay) close() {
	r.closed.Store(true)
	_ = r.ln.Close()
}
