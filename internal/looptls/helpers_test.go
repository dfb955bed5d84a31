package looptls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

var (
	certOnce sync.Once
	testCert tls.Certificate
	testPool *x509.CertPool
)

// cert returns a self-signed ECDSA P-256 certificate for "localhost".
func cert(tb testing.TB) (tls.Certificate, *x509.CertPool) {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "localhost"},
			DNSNames:              []string{"localhost"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
		testPool = x509.NewCertPool()
		testPool.AddCert(leaf)
	})
	return testCert, testPool
}

func serverConfig(tb testing.TB) *tls.Config {
	c, _ := cert(tb)
	return &tls.Config{Certificates: []tls.Certificate{c}}
}

func clientConfig(tb testing.TB) *tls.Config {
	_, pool := cert(tb)
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// loop stands in for a gnet event loop: closures run one at a time on one
// goroutine.
type loop struct {
	ch   chan func()
	quit chan struct{}
	wg   sync.WaitGroup
}

func newLoop() *loop {
	l := &loop{ch: make(chan func(), 4096), quit: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			select {
			case f := <-l.ch:
				f()
			case <-l.quit:
				return
			}
		}
	}()
	return l
}

// run queues f on the loop (like gnet's Wake/Execute). Goroutine-safe.
func (l *loop) run(f func()) {
	select {
	case l.ch <- f:
	case <-l.quit:
	}
}

// do runs f on the loop and waits for it.
func (l *loop) do(f func()) {
	done := make(chan struct{})
	l.run(func() { f(); close(done) })
	select {
	case <-done:
	case <-l.quit:
	}
}

func (l *loop) stop() { close(l.quit); l.wg.Wait() }

// pair is a crypto/tls client connected to a server Conn driven by a loop.
type pair struct {
	l      *loop
	c      *Conn
	cp     *pipe     // the client's transport (blocking)
	client *tls.Conn // the client
	split  func([]byte) [][]byte
	zero   bool // use Decrypt instead of Feed+Read

	// loop-only
	plain  []byte
	rerr   error
	ferr   error
	doneCh chan error // the server's done
	recvCh chan struct{}
}

// newPair wires a client to srv's new Conn on loop l; split cuts the
// client's ciphertext into the pieces fed to the server (nil: whole).
func newPair(srv *Server, l *loop, ccfg *tls.Config, split func([]byte) [][]byte) *pair {
	p := &pair{l: l, split: split, doneCh: make(chan error, 1), recvCh: make(chan struct{}, 1)}
	p.cp = &pipe{}
	p.cp.setBlocking(true)
	l.do(func() {
		p.c = srv.NewConn(nil, func(b []byte) { p.cp.feed(b) }, func(err error) {
			p.doneCh <- err
			if err == nil {
				l.run(p.read) // re-enter the loop: input may be buffered
			}
		})
	})
	p.cp.out = func(b []byte) {
		b = append([]byte(nil), b...)
		l.run(func() { p.onTraffic(b) })
	}
	p.client = tls.Client(p.cp, ccfg)
	return p
}

// onTraffic runs on the loop with bytes "read from the socket".
func (p *pair) onTraffic(b []byte) {
	if p.ferr != nil || p.rerr != nil {
		return
	}
	pieces := [][]byte{b}
	if p.split != nil {
		pieces = p.split(b)
	}
	for _, piece := range pieces {
		if p.zero {
			var err error
			p.plain, err = p.c.Decrypt(p.plain, piece)
			if err != nil {
				p.rerr = err
				p.notify()
				return
			}
			p.notify()
			continue
		}
		if err := p.c.Feed(piece); err != nil {
			p.ferr = err
			p.notify()
			return
		}
		p.read()
	}
}

func (p *pair) read() {
	var err error
	n := len(p.plain)
	p.plain, err = p.c.Read(p.plain)
	if err != nil && p.rerr == nil {
		p.rerr = err
	}
	if len(p.plain) != n || err != nil {
		p.notify()
	}
}

func (p *pair) notify() {
	select {
	case p.recvCh <- struct{}{}:
	default:
	}
}

// waitPlain waits until the loop has received want plaintext bytes in all.
func (p *pair) waitPlain(tb testing.TB, want int) []byte {
	tb.Helper()
	deadline := time.After(10 * time.Second)
	for {
		var got []byte
		var err error
		p.l.do(func() { got = append([]byte(nil), p.plain...); err = p.rerr })
		if len(got) >= want {
			return got
		}
		if err != nil {
			tb.Fatalf("server read: %v (after %d bytes)", err, len(got))
		}
		select {
		case <-p.recvCh:
		case <-deadline:
			tb.Fatalf("server got %d plaintext bytes, want %d", len(got), want)
		}
	}
}

// handshake runs both sides and fails on error.
func (p *pair) handshake(tb testing.TB) {
	tb.Helper()
	cerr := make(chan error, 1)
	go func() { cerr <- p.client.Handshake() }()
	select {
	case err := <-p.doneCh:
		if err != nil {
			tb.Fatalf("server handshake: %v", err)
		}
	case <-time.After(10 * time.Second):
		tb.Fatal("server handshake did not finish")
	}
	select {
	case err := <-cerr:
		if err != nil {
			tb.Fatalf("client handshake: %v", err)
		}
	case <-time.After(10 * time.Second):
		tb.Fatal("client handshake did not finish")
	}
}

// close closes both sides (the client's transport first, unblocking it).
func (p *pair) close() {
	p.cp.Close()
	p.l.do(p.c.Close)
}

// splitAt returns a splitter cutting every chunk into n-byte pieces.
func splitEvery(n int) func([]byte) [][]byte {
	return func(b []byte) [][]byte {
		var out [][]byte
		for len(b) > n {
			out = append(out, b[:n])
			b = b[n:]
		}
		return append(out, b)
	}
}

// splitRandom cuts every chunk at random points.
func splitRandom(r *mrand.Rand) func([]byte) [][]byte {
	var mu sync.Mutex
	return func(b []byte) [][]byte {
		mu.Lock()
		defer mu.Unlock()
		var out [][]byte
		for len(b) > 0 {
			n := 1 + r.IntN(len(b))
			out = append(out, b[:n])
			b = b[n:]
		}
		return out
	}
}

// waitGoroutines waits until the goroutine count is back to base.
func waitGoroutines(tb testing.TB, base int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			tb.Fatalf("goroutines: %d, want <= %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor polls cond until it holds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// setOut replaces an established Conn's out callback. Loop-only.
func setOut(c *Conn, out func([]byte)) {
	if r := c.lean(); r != nil {
		r.send = out
		return
	}
	c.pp.Load().out = out
}
