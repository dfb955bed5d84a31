package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// TLS on the bench's side.
//
// A wss:// connection is dialed, handshaken, upgraded and subscribed with a
// blocking crypto/tls client over its socket (the handshake counts in the
// connect+subscribe latency). With the goroutine runtime the tls.Conn is
// then read by the connection's goroutine. With the gnet runtime the socket
// is handed to a gnet client loop and the tls.Conn stays on top of a
// tlsTransport that switches from the socket to memory: the loop feeds it
// the ciphertext it read and decrypts by calling tls.Conn.Read until the
// transport has nothing left, which it reports as a temporary net.Error
// (crypto/tls keeps a partial record and does not make such an error
// sticky). Encrypted records go out through gnet's AsyncWrite. So an idle
// TLS connection costs its tls.Conn and buffers, no goroutine.

// loadCAPool reads a PEM file of certificates to trust.
func loadCAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// tlsClientConfig returns the client configuration of c for a server
// dialed as host. A session cache is given only with TLSResume; cache is
// shared by the caller's dialers.
func (c *Config) tlsClientConfig(host string, cache tls.ClientSessionCache) (*tls.Config, error) {
	tc := &tls.Config{
		ServerName:         c.TLSServerName,
		InsecureSkipVerify: c.TLSInsecure, //nolint:gosec // asked for with --tls-insecure
		MinVersion:         tls.VersionTLS12,
	}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if c.TLSCA != "" {
		pool, err := loadCAPool(c.TLSCA)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if c.TLSResume {
		tc.ClientSessionCache = cache
	}
	return tc, nil
}

// sessionCache is the process's shared session cache (used with TLSResume only); goroutine-safe.
var sessionCache = sync.OnceValue(func() tls.ClientSessionCache { return tls.NewLRUClientSessionCache(1 << 16) })

// errWouldBlock is what a tlsTransport in memory mode returns when it has
// no more ciphertext. It is a temporary net.Error, which crypto/tls does not
// record as the connection's final error.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "no more input" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

// tlsTransport is the net.Conn under a client tls.Conn. Until detach it is
// the socket. After it, Read returns the bytes given to feed (errWouldBlock
// when there are none) and Write sends through the gnet connection given
// to attach (queued until then).
//
// Concurrency: Read is called by one goroutine at a time (the dialing
// goroutine, then the gnet loop that owns the connection, through
// tls.Conn.Read); feed is loop-only; Write is goroutine-safe (tls.Conn
// serializes its writes, and the queue is locked).
type tlsTransport struct {
	net.Conn
	mem atomic.Bool
	in  []byte // loop only

	mu      sync.Mutex
	gc      gnet.Conn
	pending [][]byte
}

func (t *tlsTransport) Read(p []byte) (int, error) {
	if !t.mem.Load() {
		return t.Conn.Read(p)
	}
	if len(t.in) == 0 {
		return 0, errWouldBlock
	}
	n := copy(p, t.in)
	t.in = t.in[n:]
	return n, nil
}

func (t *tlsTransport) Write(p []byte) (int, error) {
	if !t.mem.Load() {
		return t.Conn.Write(p)
	}
	// crypto/tls reuses its output buffer: copy.
	b := append([]byte(nil), p...)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gc == nil {
		t.pending = append(t.pending, b)
		return len(p), nil
	}
	if err := t.gc.AsyncWrite(b, nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SetDeadline and friends are no-ops once the socket belongs to gnet.
func (t *tlsTransport) SetDeadline(d time.Time) error {
	if t.mem.Load() {
		return nil
	}
	return t.Conn.SetDeadline(d)
}

func (t *tlsTransport) SetReadDeadline(d time.Time) error {
	if t.mem.Load() {
		return nil
	}
	return t.Conn.SetReadDeadline(d)
}

func (t *tlsTransport) SetWriteDeadline(d time.Time) error {
	if t.mem.Load() {
		return nil
	}
	return t.Conn.SetWriteDeadline(d)
}

// detach switches t to memory mode and returns the socket for gnet. Call it
// with no Read or Write in progress.
func (t *tlsTransport) detach() net.Conn {
	t.mem.Store(true)
	return t.Conn
}

// attach gives t the gnet connection and sends what was queued. Loop-only.
func (t *tlsTransport) attach(gc gnet.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gc = gc
	for _, b := range t.pending {
		_ = gc.AsyncWrite(b, nil)
	}
	t.pending = nil
}

// tlsConn is a client TLS connection with its transport.
type tlsConn struct {
	*tls.Conn
	t *tlsTransport
}

// dialTLS wraps a dialed socket in a client TLS connection and runs the
// handshake.
func dialTLS(ctx context.Context, raw net.Conn, cfg *tls.Config, timeout time.Duration) (*tlsConn, error) {
	t := &tlsTransport{Conn: raw}
	tc := tls.Client(t, cfg)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return &tlsConn{Conn: tc, t: t}, nil
}

// tlsTraffic decrypts the ciphertext a gnet loop read for wc (nil to only
// work through what crypto/tls already holds) and handles the complete
// frames. Loop-only.
func (wc *wsConn) tlsTraffic(cipher []byte, now time.Time) error {
	t := wc.tls.t
	t.in = cipher
	defer func() { t.in = nil }()
	st := wc.stats
	buf := append(st.scratch[:0], wc.leftover...)
	for {
		if cap(buf)-len(buf) < 4096 {
			nb := make([]byte, len(buf), 2*cap(buf)+4096)
			copy(nb, buf)
			buf = nb
		}
		n, err := wc.tls.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if errors.Is(err, errWouldBlock) {
				break
			}
			return err
		}
	}
	st.scratch = buf[:0]
	k, err := wc.consume(buf, now, wc)
	wc.leftover = nil
	if k < len(buf) {
		wc.leftover = append([]byte(nil), buf[k:]...)
	}
	return err
}
