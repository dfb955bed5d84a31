package wsproto

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Header is a parsed WebSocket frame header.
type Header struct {
	// Fin is the FIN bit: this frame ends a message.
	Fin bool
	// Rsv holds the three RSV bits in its low bits (RSV1 is 0x4).
	Rsv byte
	// OpCode is the frame's opcode.
	OpCode ws.OpCode
	// Masked is the MASK bit.
	Masked bool
	// Mask is the masking key when Masked is set.
	Mask [4]byte
	// Length is the declared payload length.
	Length int64
	// Size is the number of header bytes (2 to 14).
	Size int
}

// ParseHeader parses a frame header at the start of buf. It returns n == 0
// and a nil error when buf holds only part of a header. A 64-bit length with
// its most significant bit set is rejected with a *CloseError carrying
// 1002 (protocol error). ParseHeader only reads buf and is pure.
func ParseHeader(buf []byte) (h Header, n int, err error) {
	if len(buf) < 2 {
		return h, 0, nil
	}
	b0, b1 := buf[0], buf[1]
	size := 2
	switch b1 & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if b1&0x80 != 0 {
		size += 4
	}
	if len(buf) < size {
		return h, 0, nil
	}
	h.Fin = b0&0x80 != 0
	h.Rsv = (b0 >> 4) & 0x7
	h.OpCode = ws.OpCode(b0 & 0x0f)
	h.Masked = b1&0x80 != 0
	h.Size = size
	p := 2
	switch l := b1 & 0x7f; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(buf[2:4]))
		p = 4
	case 127:
		u := binary.BigEndian.Uint64(buf[2:10])
		if u>>63 != 0 {
			return Header{}, 0, &CloseError{Code: ws.StatusProtocolError, Reason: "Invalid frame length"}
		}
		h.Length = int64(u)
		p = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], buf[p:p+4])
	}
	return h, size, nil
}

// CloseError is a protocol failure that must end the connection with a
// close frame carrying Code and Reason (see CloseFrame).
type CloseError struct {
	// Code is the close status code to send.
	Code ws.StatusCode
	// Reason is the close reason to send; it is at most 123 bytes.
	Reason string
}

// Error implements the error interface.
func (e *CloseError) Error() string {
	return "websocket: close " + strconv.Itoa(int(e.Code)) + ": " + e.Reason
}

// Close reasons used by Decoder.
const (
	ReasonMessageTooBig    = "Maximum message size exceeded"
	ReasonTooManyFragments = "Too many message fragments"
)

func protocolError(reason string) error {
	return &CloseError{Code: ws.StatusProtocolError, Reason: reason}
}

// Message is one thing decoded by Decoder.Next.
type Message struct {
	// OpCode is OpText or OpBinary for a whole (reassembled) data message,
	// OpPing, OpPong or OpClose for a control frame, and 0 when there is
	// nothing to deliver (a non-final fragment was consumed).
	OpCode ws.OpCode
	// Payload is the unmasked payload (for OpClose the whole close body,
	// status code included), inflated when the message was compressed. It
	// aliases the buffer given to Next, the decoder's fragment buffer or
	// the inflated copy: it is valid only until the next
	// call to Next and until the caller discards or reuses that buffer.
	Payload []byte
	// CloseCode is, for OpClose, the status code sent by the peer, or
	// 1005 (ws.StatusNoStatusRcvd) when the close body is empty.
	CloseCode ws.StatusCode
	// CloseReason is, for OpClose, the reason sent by the peer (a copy).
	CloseReason string
}

// Decoder is the per-connection, server-side frame decoder: it validates
// client frames and reassembles fragmented messages.
//
// Its zero value, with the limits set, is ready to use. It is loop-only:
// use it from one goroutine at a time. The fragment buffer is allocated
// only when a fragmented message arrives and is released when it completes.
type Decoder struct {
	// MaxMessageSize is the maximum number of payload bytes of one data
	// message, over all its fragments; 0 means unlimited. It is checked
	// against the declared frame length as soon as the header arrives,
	// before waiting for the payload, and failure is a *CloseError with
	// 1009 (ws.StatusMessageTooBig) and ReasonMessageTooBig. A message of
	// exactly MaxMessageSize bytes is accepted. With 0 a peer may declare
	// a frame of up to 2^63-1 bytes and Next keeps asking for more, so the
	// caller's own buffer limit is then the only bound: set a limit.
	MaxMessageSize int64
	// MaxFragments is the maximum number of frames of one fragmented data
	// message; 0 means unlimited. The frame that exceeds it is refused,
	// when its header arrives, with a *CloseError carrying 1008
	// (ws.StatusPolicyViolation) and ReasonTooManyFragments: the frame
	// count is a policy of this server, not a size. Unfragmented messages
	// are one frame.
	MaxFragments int

	frag   []byte    // payload of the fragmented message so far
	nfrag  int32     // frames of the fragmented message so far
	fragOp ws.OpCode // opcode of the fragmented message; 0 when none
	fragZ  bool      // the fragmented message is compressed

	// Deflate says permessage-deflate was negotiated: RSV1 on the first
	// frame of a data message marks it compressed, and Next inflates it
	// (see Next). Without it RSV1 is a protocol error (1002). (It is last
	// to keep the Decoder, one per connection, at 48 bytes.)
	Deflate bool
}

// Reset drops any fragment state and its buffer. The limits are kept.
func (d *Decoder) Reset() {
	d.frag = nil
	d.nfrag = 0
	d.fragOp = 0
	d.fragZ = false
}

// deflatedLimit is how many compressed bytes a message of at most max bytes
// may take on the wire: deflate may expand incompressible data a little
// (stored blocks), as zlib's deflateBound allows.
func deflatedLimit(max int64) int64 {
	if max <= 0 {
		return 0
	}
	return max + max>>10 + 64
}

// Next decodes the next complete frame at the start of buf, unmasks its
// payload in place (modifying buf) and reports how many bytes it consumed.
// n == 0 with a nil error means more bytes are needed; nothing was consumed
// or modified. On error the connection must be closed with the returned
// *CloseError's code and reason; the decoder is then unusable until Reset.
//
// It enforces RFC 6455 for a server: client frames must be masked (1002),
// RSV bits must be 0 unless permessage-deflate allows RSV1 (1002), reserved
// opcodes are refused (1002), control frames must have FIN set and at most
// 125 bytes of payload (1002), a continuation frame needs a started message
// and a new data frame may not start while one is fragmented (1002), text
// messages must be valid UTF-8 (1007, checked on the completed message and
// without copying when not fragmented), and a close body must not be one
// byte long (1002), must carry a valid code (per ws.CheckCloseFrameData,
// and below 5000; 1002) and a UTF-8 reason (1007). Control frames may
// arrive between the fragments of a message. Limits: see MaxMessageSize and
// MaxFragments.
//
// With Deflate set, a text or binary frame that starts a message may carry
// RSV1: the message (all its fragments) is compressed. RSV1 on a
// continuation or control frame is still a protocol error (1002). Before the
// payload arrives the compressed size is checked against MaxMessageSize plus
// deflate's worst-case expansion; once the message is complete it is
// inflated into a new slice, and a message that inflates past
// MaxMessageSize (16 MiB when 0) is refused with 1009 as soon as the
// output passes it, so a decompression bomb costs at most that much memory.
// Data that does not inflate is refused with 1007. UTF-8 is checked on the
// inflated text.
//
// Next does not allocate except to hold the fragments of a fragmented
// message, to inflate a compressed message and to copy a close reason.
func (d *Decoder) Next(buf []byte) (m Message, n int, err error) {
	h, hn, err := ParseHeader(buf)
	if hn == 0 {
		return m, 0, err
	}
	compressed := false
	if d.Deflate && h.Rsv&0x4 != 0 && (h.OpCode == ws.OpText || h.OpCode == ws.OpBinary) {
		compressed = true
		h.Rsv &^= 0x4
	}
	switch {
	case h.Rsv != 0:
		return m, 0, protocolError("Reserved bits set")
	case h.OpCode.IsReserved():
		return m, 0, protocolError("Reserved opcode")
	case !h.Masked:
		return m, 0, protocolError("Client frames must be masked")
	}
	if h.OpCode.IsControl() {
		if !h.Fin {
			return m, 0, protocolError("Fragmented control frame")
		}
		if h.Length > ws.MaxControlFramePayloadSize {
			return m, 0, protocolError("Control frame too long")
		}
	} else {
		total := h.Length
		limit := d.MaxMessageSize
		if compressed || (h.OpCode == ws.OpContinuation && d.fragZ) {
			limit = deflatedLimit(limit)
		}
		if h.OpCode == ws.OpContinuation {
			if d.fragOp == 0 {
				return m, 0, protocolError("Unexpected continuation frame")
			}
			total += int64(len(d.frag)) // no overflow: len(d.frag) is real memory
			if d.MaxFragments > 0 && int64(d.nfrag) >= int64(d.MaxFragments) {
				return m, 0, &CloseError{Code: ws.StatusPolicyViolation, Reason: ReasonTooManyFragments}
			}
		} else if d.fragOp != 0 {
			return m, 0, protocolError("Expected continuation frame")
		}
		if total < 0 || (limit > 0 && total > limit) {
			return m, 0, &CloseError{Code: ws.StatusMessageTooBig, Reason: ReasonMessageTooBig}
		}
	}
	if h.Length > int64(len(buf)-hn) {
		return Message{}, 0, nil // wait for the payload
	}
	n = hn + int(h.Length)
	payload := buf[hn:n:n]
	ws.Cipher(payload, h.Mask, 0)

	switch h.OpCode {
	case ws.OpPing, ws.OpPong:
		return Message{OpCode: h.OpCode, Payload: payload}, n, nil

	case ws.OpClose:
		m = Message{OpCode: ws.OpClose, Payload: payload, CloseCode: ws.StatusNoStatusRcvd}
		switch len(payload) {
		case 0:
			return m, n, nil
		case 1:
			return Message{}, 0, protocolError("Invalid close frame payload")
		}
		code := ws.StatusCode(binary.BigEndian.Uint16(payload))
		if code >= 5000 || ws.CheckCloseFrameData(code, "") != nil {
			return Message{}, 0, protocolError("Invalid close code")
		}
		if !utf8.Valid(payload[2:]) {
			return Message{}, 0, &CloseError{Code: ws.StatusInvalidFramePayloadData, Reason: "Invalid UTF-8 in close reason"}
		}
		m.CloseCode = code
		m.CloseReason = string(payload[2:])
		return m, n, nil

	case ws.OpText, ws.OpBinary:
		if !h.Fin {
			d.fragOp = h.OpCode
			d.fragZ = compressed
			d.nfrag = 1
			d.frag = append(d.frag[:0], payload...)
			return Message{}, n, nil
		}
		if compressed {
			if payload, err = inflate(payload, d.MaxMessageSize); err != nil {
				return Message{}, 0, err
			}
		}
		if h.OpCode == ws.OpText && !utf8.Valid(payload) {
			return Message{}, 0, invalidUTF8()
		}
		return Message{OpCode: h.OpCode, Payload: payload}, n, nil
	}

	// Continuation of a fragmented message.
	d.frag = append(d.frag, payload...)
	if d.nfrag < math.MaxInt32 {
		d.nfrag++
	}
	if !h.Fin {
		return Message{}, n, nil
	}
	op, msg, z := d.fragOp, d.frag, d.fragZ
	d.Reset()
	if z {
		if msg, err = inflate(msg, d.MaxMessageSize); err != nil {
			return Message{}, 0, err
		}
	}
	if op == ws.OpText && !utf8.Valid(msg) {
		return Message{}, 0, invalidUTF8()
	}
	return Message{OpCode: op, Payload: msg}, n, nil
}

func invalidUTF8() error {
	return &CloseError{Code: ws.StatusInvalidFramePayloadData, Reason: "Invalid UTF-8 in text message"}
}
