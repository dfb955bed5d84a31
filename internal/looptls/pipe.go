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

	// hs is the handshake bookkeeping of a server Conn's pipe, set while
	// its worker runs the handshake (nil otherwise, and for stdlibOnly).
	hs *pipeHS
}

// pipeHS is what the lean record layer needs from the handshake. Only the
// handshake's worker uses it (Read also takes p.mu).
type pipeHS struct {
	hdr        [recordHeaderLen]byte
	hdrN       int    // bytes of hdr read so far
	bodyLeft   int    // bytes of the current record's body not yet read
	lastApp    []byte // copy of the last application_data record written
	misaligned bool   // a Write did not hold whole records
	// Traffic secrets, from the key log (keyLog).
	clientSecret, serverSecret []byte
}

// endHandshake drops the handshake bookkeeping and leaves blocking mode.
// Worker only, before the Conn becomes ready.
func (p *pipe) endHandshake() {
	p.mu.Lock()
	if hs := p.hs; hs != nil {
		clear(hs.clientSecret)
		clear(hs.serverSecret)
		p.hs = nil
	}
	p.mu.Unlock()
	p.setBlocking(false)
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
			n := len(b)
			if p.hs != nil {
				n = p.hs.recordLimit(b, p.in)
			}
			n = copy(b[:n], p.in)
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

// recordLimit returns how many bytes Read may hand out of in, at most
// len(b), without going past the end of the current record, and advances
// the record bookkeeping by that many. crypto/tls then never holds bytes
// beyond the record it is reading: when the handshake returns, every byte
// after the client's Finished is still in the pipe. Called with p.mu held.
func (hs *pipeHS) recordLimit(b, in []byte) int {
	n := 0
	for n < len(b) && n < len(in) {
		if hs.hdrN < recordHeaderLen {
			k := min(recordHeaderLen-hs.hdrN, len(b)-n, len(in)-n)
			copy(hs.hdr[hs.hdrN:], in[n:n+k])
			hs.hdrN += k
			n += k
			if hs.hdrN < recordHeaderLen {
				continue
			}
			hs.bodyLeft = int(hs.hdr[3])<<8 | int(hs.hdr[4])
		} else {
			k := min(hs.bodyLeft, len(b)-n, len(in)-n)
			hs.bodyLeft -= k
			n += k
		}
		if hs.bodyLeft == 0 {
			hs.hdrN = 0 // the record is complete: stop at its end
			break
		}
	}
	return n
}

// atRecordStart reports whether the input read so far ends at a record
// boundary. Worker only.
func (p *pipe) atRecordStart() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hs != nil && p.hs.hdrN == 0
}

// noteWrite remembers the last application_data record of b (whole records
// as crypto/tls writes them) for finding the write sequence number.
func (hs *pipeHS) noteWrite(b []byte) {
	var last []byte
	for len(b) >= recordHeaderLen {
		n := recordHeaderLen + (int(b[3])<<8 | int(b[4]))
		if n > len(b) {
			break
		}
		if b[0] == recTypeAppData {
			last = b[:n]
		}
		b = b[n:]
	}
	if len(b) != 0 {
		hs.misaligned = true
	}
	if last != nil {
		hs.lastApp = append(hs.lastApp[:0], last...)
	}
}

// Write implements net.Conn: b goes to out, which must not keep it.
func (p *pipe) Write(b []byte) (int, error) {
	if p.closed.Load() {
		return 0, net.ErrClosed
	}
	if p.hs != nil {
		p.hs.noteWrite(b)
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
