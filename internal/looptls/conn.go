package looptls

import (
	"crypto/tls"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Conn states.
const (
	stHello       int32 = iota // waiting for the client's first record
	stQueued                   // waiting for a worker
	stHandshaking              // on a worker
	stReady                    // handshake done; the loop owns the record layer
	stFailed                   // handshake failed or timed out
	stClosed                   // closed by Close
)

// recordHeaderLen is the TLS record header size; maxCiphertext the largest
// record length crypto/tls accepts (TLS 1.2).
const (
	recordHeaderLen = 5
	maxCiphertext   = 16384 + 2048
)

// readChunk is the room Read makes in dst before each tls.Conn.Read.
const readChunk = 1 << 10

// Conn is a server-side TLS connection whose record layer runs on the
// caller's goroutine (a gnet loop) once the handshake, run by a worker of
// its Server, is done.
//
// Concurrency: Feed, Read, Write and CloseNotify are loop-only: one
// goroutine at a time, the loop that owns the socket. Close, Ready and
// ConnectionState are goroutine-safe.
type Conn struct {
	srv *Server
	// pp is the transport of tc; nil once the loop has moved to rec (the
	// lean path), which it does on the first call after the handshake.
	pp atomic.Pointer[pipe]
	// The record layer, set by the worker before stReady: tc (crypto/tls,
	// TLS 1.2 and fallback) or rec (TLS 1.3) with cs, the handshake's
	// ConnectionState.
	tc    *tls.Conn
	rec   *rec13
	cs    *tls.ConnectionState
	done  func(error)
	state atomic.Int32

	tmu   sync.Mutex // guards timer
	timer *time.Timer
}

// Feed passes bytes read from the socket. During the handshake they are
// copied for the worker; after it, they are decrypted by the next Read (call
// Read in the same callback). A non-nil error ends the connection: close
// it. For ErrOverloaded, ErrServerClosed and ErrInputTooLarge done is not
// called; any other error is the one that ended the Conn before (done had
// it, or will have it). Loop-only.
func (c *Conn) Feed(ciphertext []byte) error {
	switch st := c.state.Load(); st {
	case stReady:
		if r := c.lean(); r != nil {
			r.feed(ciphertext)
			return nil
		}
		c.pp.Load().feed(ciphertext)
		return nil
	case stHello:
		n := c.pp.Load().feed(ciphertext)
		if n == 0 {
			return c.err()
		}
		if !firstRecordDone(c.pp.Load().peek()) {
			return nil
		}
		if !c.state.CompareAndSwap(stHello, stQueued) {
			return c.err()
		}
		if err := c.srv.submit(c); err != nil {
			if !c.state.CompareAndSwap(stQueued, stFailed) {
				return c.err() // the timer won
			}
			if err == ErrOverloaded {
				c.srv.refused.Add(1)
			}
			c.finish(err)
			return err
		}
		return nil
	case stQueued, stHandshaking:
		if c.pp.Load().feed(ciphertext) <= c.srv.opts.MaxPending {
			return c.err()
		}
		for {
			switch st := c.state.Load(); st {
			case stQueued, stHandshaking:
				if c.state.CompareAndSwap(st, stFailed) {
					c.srv.failed.Add(1)
					c.finish(ErrInputTooLarge)
					return ErrInputTooLarge
				}
			case stReady:
				return nil // the loop's Read takes it from here
			default:
				return c.err()
			}
		}
	default:
		return c.err()
	}
}

// firstRecordDone reports whether b holds the client's first record, or
// enough of it to tell it is not TLS: then the handshake can start without
// a worker waiting on a slow client.
func firstRecordDone(b []byte) bool {
	if len(b) < recordHeaderLen {
		// Not a handshake record, or not TLS 1.x.
		return len(b) > 0 && b[0] != 0x16 || len(b) > 1 && b[1] != 3
	}
	n := int(b[3])<<8 | int(b[4])
	return b[0] != 0x16 || b[1] != 3 || n > maxCiphertext || len(b) >= recordHeaderLen+n
}

// Read appends the plaintext decrypted from the fed bytes to dst and returns
// it; with no complete record it returns dst and nil. Before the handshake
// ends it returns dst unchanged. An error is final (io.EOF after the
// client's close_notify): close the connection. Read may call out (a TLS
// 1.3 KeyUpdate reply, or the alert that goes with a fatal error).
// Loop-only.
func (c *Conn) Read(dst []byte) ([]byte, error) {
	switch c.state.Load() {
	case stReady:
	case stFailed, stClosed:
		return dst, c.err()
	default:
		return dst, nil
	}
	if r := c.lean(); r != nil {
		return r.read(dst)
	}
	for {
		if cap(dst)-len(dst) < readChunk {
			dst = slices.Grow(dst, readChunk)
		}
		n, err := c.tc.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err != nil {
			if err == errWouldBlock {
				return dst, nil
			}
			return dst, err
		}
	}
}

// Decrypt is Feed then Read without copying ciphertext when nothing else is
// buffered (the loop's usual case): it appends the plaintext to dst. Before
// the handshake ends it is Feed. Loop-only.
func (c *Conn) Decrypt(dst, ciphertext []byte) ([]byte, error) {
	if c.state.Load() != stReady {
		if err := c.Feed(ciphertext); err != nil {
			return dst, err
		}
		return c.Read(dst)
	}
	if r := c.lean(); r != nil {
		return r.decrypt(dst, ciphertext)
	}
	p := c.pp.Load()
	p.lend(ciphertext)
	dst, err := c.Read(dst)
	p.unlend()
	return dst, err
}

// Write encrypts plaintext into records passed to out, before it returns.
// Records are at most 16 KiB of plaintext. Loop-only: records must reach
// the socket in the order they are made, so off-loop writers must hop onto
// the loop first. Returns ErrNotReady before done(nil).
func (c *Conn) Write(plaintext []byte) error {
	if c.state.Load() != stReady {
		if err := c.err(); err != nil {
			return err
		}
		return ErrNotReady
	}
	if r := c.lean(); r != nil {
		return r.write(plaintext)
	}
	_, err := c.tc.Write(plaintext)
	return err
}

// Shrink frees what an idle TLS 1.3 connection can do without: the
// expanded cipher state (about 1.5 KB with AES-GCM), rebuilt from the keys
// by the next record. The loop calls it for connections that have been
// idle for a while. It does nothing on the crypto/tls path or before the
// handshake ends. Loop-only.
func (c *Conn) Shrink() {
	if c.state.Load() != stReady {
		return
	}
	if r := c.lean(); r != nil {
		r.shrink()
	}
}

// CloseNotify sends a close_notify alert through out; later Writes fail.
// Loop-only.
func (c *Conn) CloseNotify() error {
	if c.state.Load() != stReady {
		return ErrNotReady
	}
	if r := c.lean(); r != nil {
		return r.closeNotify()
	}
	return c.tc.CloseWrite()
}

// Close ends the connection without sending anything, stops a handshake in
// progress (done is then not called unless it is already on its way) and
// frees buffered input (on the lean TLS 1.3 path, a partial record stays
// for the GC: the loop owns it). Goroutine-safe and idempotent.
func (c *Conn) Close() {
	for {
		st := c.state.Load()
		switch st {
		case stClosed:
			return
		case stReady, stFailed:
			if c.state.CompareAndSwap(st, stClosed) {
				if p := c.pp.Load(); p != nil {
					p.closeWith(errClosed)
				}
				return
			}
		default:
			if c.state.CompareAndSwap(st, stClosed) {
				c.finish(errClosed)
				return
			}
		}
	}
}

// errClosed is what a closed Conn's methods return.
var errClosed = errors.New("looptls: connection closed")

// Ready reports whether the handshake succeeded and the Conn is open.
// Goroutine-safe.
func (c *Conn) Ready() bool { return c.state.Load() == stReady }

// ConnectionState returns the TLS parameters; the zero value before the
// handshake ends. Goroutine-safe after done(nil).
func (c *Conn) ConnectionState() tls.ConnectionState {
	if c.state.Load() != stReady {
		return tls.ConnectionState{}
	}
	if c.cs != nil {
		return *c.cs
	}
	return c.tc.ConnectionState()
}

// err returns why the Conn ended, or nil.
func (c *Conn) err() error {
	if p := c.pp.Load(); p != nil {
		if err := p.reason(); err != nil {
			return err
		}
	}
	if c.state.Load() == stClosed {
		return errClosed
	}
	return nil
}

// finish ends a Conn that has not finished its handshake, after the caller
// won the state transition: it stops the timer, closes the pipe with err and
// leaves the in-progress count.
func (c *Conn) finish(err error) {
	c.stopTimer()
	c.pp.Load().closeWith(err)
	c.srv.inProgress.Add(-1)
}

// fail ends the handshake from state from with err, counts it in n (if not
// nil) and reports it to done. Returns false if another transition won.
func (c *Conn) fail(err error, from int32, n *atomic.Int64) bool {
	if !c.state.CompareAndSwap(from, stFailed) {
		return false
	}
	c.finish(err)
	if n != nil {
		n.Add(1)
	}
	if c.done != nil {
		c.done(err)
	}
	return true
}

func (c *Conn) stopTimer() {
	c.tmu.Lock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.tmu.Unlock()
}

// expire runs on the timer's goroutine at HandshakeTimeout.
func (c *Conn) expire() {
	for {
		st := c.state.Load()
		switch st {
		case stHello, stQueued:
			if c.fail(ErrHandshakeTimeout, st, &c.srv.timedOut) {
				return
			}
		case stHandshaking:
			// The worker's Read fails; the worker reports it.
			c.pp.Load().closeWith(ErrHandshakeTimeout)
			return
		default:
			return
		}
	}
}

// handshake runs on a worker.
func (c *Conn) handshake() {
	if !c.state.CompareAndSwap(stQueued, stHandshaking) {
		return // timed out or closed while queued
	}
	p := c.pp.Load()
	if !c.srv.stdlibOnly {
		p.hs = &pipeHS{}
	}
	p.setBlocking(true)
	c.tc = tls.Server(p, c.srv.cfg)
	start := time.Now()
	err := c.tc.Handshake()
	p.mu.Lock()
	busy := time.Since(start) - p.waited
	p.waited = 0
	p.mu.Unlock()
	c.srv.busy.Add(int64(busy))
	if err == nil {
		err = p.reason() // closed at the last moment
	}
	if err == nil {
		c.switchLean(p)
		p.endHandshake()
		if c.state.CompareAndSwap(stHandshaking, stReady) {
			c.stopTimer()
			c.srv.inProgress.Add(-1)
			c.srv.completed.Add(1)
			if c.rec != nil {
				c.srv.lean.Add(1)
			}
			if done := c.done; done != nil {
				done(nil)
			}
			c.done = nil // only read before stReady
		}
		return
	}
	if r := p.reason(); r == ErrHandshakeTimeout || r == ErrInputTooLarge {
		err = r
	}
	n := &c.srv.failed
	if err == ErrHandshakeTimeout {
		n = &c.srv.timedOut
	}
	c.fail(err, stHandshaking, n)
}

// switchLean sets up the lean record layer after a successful TLS 1.3
// handshake, from the traffic secrets the key log captured, and drops the
// tls.Conn. It leaves the Conn on crypto/tls when anything is missing (TLS
// 1.2, a cipher suite it does not implement, input not at a record
// boundary). Worker only, before stReady.
func (c *Conn) switchLean(p *pipe) {
	if c.srv.stdlibOnly {
		return
	}
	cs := c.tc.ConnectionState()
	hs := p.hs
	if cs.Version != tls.VersionTLS13 || hs == nil || hs.clientSecret == nil ||
		hs.serverSecret == nil || hs.misaligned || !p.atRecordStart() {
		return
	}
	r, err := newRec13(cs.CipherSuite, hs.clientSecret, hs.serverSecret, p.out)
	if err != nil {
		return
	}
	// crypto/tls may have sent a NewSessionTicket under the server's
	// application key: then the last record it wrote opens with that key,
	// at sequence number 0 (one ticket), and ours starts after it.
	if hs.lastApp != nil {
		for seq := range uint64(4) {
			if r.out.opens(hs.lastApp, seq) {
				r.out.seq = seq + 1
				break
			}
		}
	}
	c.rec, c.cs, c.tc = r, &cs, nil
}

// lean returns the lean record layer, or nil on the crypto/tls path. On
// its first call it takes over the input the pipe still holds (bytes the
// client sent after its Finished) and drops the pipe. Loop-only, stReady.
func (c *Conn) lean() *rec13 {
	r := c.rec
	if r == nil {
		return nil
	}
	if p := c.pp.Load(); p != nil {
		p.mu.Lock()
		switch {
		case p.inBuf != nil && len(p.in) > 0:
			buf := p.inBuf
			*buf = (*buf)[:copy(*buf, p.in)]
			r.part = buf
			p.inBuf, p.in = nil, nil
		case len(p.in) > 0: // borrowed (lend); not used on this path
			r.feed(p.in)
		}
		p.releaseLocked()
		p.mu.Unlock()
		c.pp.Store(nil)
	}
	return r
}
