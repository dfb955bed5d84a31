package looptls

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// errWouldBlock is what the pipe's Read returns in non-blocking mode when it
// has no bytes. It is a net.Error whose Temporary() is true, which crypto/tls
// does not record as a permanent error: the partial record stays in the
// tls.Conn and the next Read carries on from it.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "looptls: no input buffered" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

// maxPooledBuf bounds the buffers returned to inPool.
const maxPooledBuf = 64 << 10

// inPool holds the buffers the pipe copies fed ciphertext into. A pipe holds
// one only while it has unread bytes.
var inPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// pipe is the net.Conn under a tls.Conn. Inbound, it hands out the bytes the
// loop fed; outbound, it passes records to the out callback.
//
// In blocking mode (the handshake, on a worker) Read waits for Feed or
// Close. In non-blocking mode (after the handshake, on the loop) Read
// returns errWouldBlock when it has nothing.
type pipe struct {
	mu       sync.Mutex
	in       []byte  // unread input: owned (inBuf) or borrowed (lend)
	inBuf    *[]byte // pooled backing array of in, when owned
	blocking bool
	wake     chan struct{} // blocking mode: signalled by Feed and Close
	err      error         // set by Close: what Read and Write return
	waited   time.Duration // blocking mode: time Read spent waiting
	closed   atomic.Bool
	out      func([]byte)
	remote   net.Addr
}

// feed appends a copy of b to the unread input. Returns the new unread
// length.
func (p *pipe) feed(b []byte) int {
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return 0
	}
	if p.inBuf == nil {
		p.inBuf = inPool.Get().(*[]byte)
		*p.inBuf = append((*p.inBuf)[:0], p.in...) // a borrowed rest, if any
	}
	if len(p.in) < len(*p.inBuf) {
		// Drop what Read consumed: p.in is a suffix of the buffer.
		*p.inBuf = append((*p.inBuf)[:0], p.in...)
	}
	*p.inBuf = append(*p.inBuf, b...)
	p.in = *p.inBuf
	n := len(p.in)
	w := p.wake
	p.mu.Unlock()
	if w != nil {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	return n
}

// lend makes b the unread input without copying; the caller must call
// unlend before b is reused. Non-blocking mode only.
func (p *pipe) lend(b []byte) {
	p.mu.Lock()
	if p.err == nil {
		if len(p.in) == 0 {
			p.in = b
		} else {
			p.mu.Unlock()
			p.feed(b)
			return
		}
	}
	p.mu.Unlock()
}

// unlend copies what is left of a lent slice into an owned buffer.
func (p *pipe) unlend() {
	p.mu.Lock()
	if p.inBuf == nil && len(p.in) > 0 {
		rest := p.in
		p.in = nil
		p.mu.Unlock()
		p.feed(rest)
		return
	}
	p.mu.Unlock()
}

// peek returns the unread input; the caller must hold no reference past the
// next feed. Used before the handshake starts, on the loop.
func (p *pipe) peek() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.in
}

// releaseLocked drops the buffer once everything is read.
func (p *pipe) releaseLocked() {
	p.in = nil
	if p.inBuf != nil {
		if cap(*p.inBuf) <= maxPooledBuf {
			*p.inBuf = (*p.inBuf)[:0]
			inPool.Put(p.inBuf)
		}
		p.inBuf = nil
	}
}

// Read implements net.Conn.
func (p *pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	for {
		if len(p.in) > 0 {
			n := copy(b, p.in)
			p.in = p.in[n:]
			if len(p.in) == 0 {
				p.releaseLocked()
			}
			p.mu.Unlock()
			return n, nil
		}
		if p.err != nil {
			err := p.err
			p.mu.Unlock()
			return 0, err
		}
		if !p.blocking {
			p.mu.Unlock()
			return 0, errWouldBlock
		}
		w := p.wake
		p.mu.Unlock()
		t := time.Now()
		<-w
		p.mu.Lock()
		p.waited += time.Since(t)
	}
}

// Write implements net.Conn: b goes to out, which must not keep it.
func (p *pipe) Write(b []byte) (int, error) {
	if p.closed.Load() {
		return 0, net.ErrClosed
	}
	p.out(b)
	return len(b), nil
}

// closeWith makes Read and Write fail with err, wakes a blocked Read and
// frees the input. The first reason wins; it returns false if the pipe was
// already closed.
func (p *pipe) closeWith(err error) bool {
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return false
	}
	p.err = err
	p.closed.Store(true)
	p.releaseLocked()
	w := p.wake
	p.mu.Unlock()
	if w != nil {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	return true
}

// reason returns the error the pipe was closed with, or nil.
func (p *pipe) reason() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// setBlocking switches mode; leaving blocking mode drops the wake channel.
func (p *pipe) setBlocking(on bool) {
	p.mu.Lock()
	p.blocking = on
	if on {
		p.wake = make(chan struct{}, 1)
	} else {
		p.wake = nil
	}
	p.mu.Unlock()
}

// Close implements net.Conn.
func (p *pipe) Close() error {
	p.closeWith(net.ErrClosed)
	return nil
}

func (p *pipe) LocalAddr() net.Addr                { return pipeAddr{} }
func (p *pipe) RemoteAddr() net.Addr               { return p.remoteAddr() }
func (p *pipe) SetDeadline(t time.Time) error      { return nil }
func (p *pipe) SetReadDeadline(t time.Time) error  { return nil }
func (p *pipe) SetWriteDeadline(t time.Time) error { return nil }

func (p *pipe) remoteAddr() net.Addr {
	if p.remote == nil {
		return pipeAddr{}
	}
	return p.remote
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "looptls" }
func (pipeAddr) String() string  { return "looptls" }

var _ net.Conn = (*pipe)(nil)
var _ net.Error = wouldBlock{}
