package wsproto

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// MaxCloseReason is the longest close reason that fits in a control frame
// (125 bytes of payload minus the 2-byte status code).
const MaxCloseReason = ws.MaxControlFramePayloadSize - 2

// appendHeader appends a frame header with the given first byte, mask bit
// and minimal length encoding.
func appendHeader(dst []byte, b0 byte, maskBit byte, n int) []byte {
	switch {
	case n <= 125:
		return append(dst, b0, maskBit|byte(n))
	case n <= 0xffff:
		return append(dst, b0, maskBit|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, maskBit|127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// AppendFrame appends to dst a single server frame (FIN set, unmasked,
// minimal length encoding) with the given opcode and payload, and returns
// the extended slice. Server frames are not masked, so one encoded frame can
// be written to every subscriber of a channel. AppendFrame is pure and does
// not allocate when dst has room for len(payload)+10 more bytes.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	dst = appendHeader(dst, 0x80|byte(op&0x0f), 0, len(payload))
	return append(dst, payload...)
}

// AppendText appends a single unmasked text frame carrying payload to dst;
// see AppendFrame.
func AppendText(dst, payload []byte) []byte {
	return AppendFrame(dst, ws.OpText, payload)
}

// CloseFrame returns a server close frame with the given status code and
// reason. The reason is trimmed (at a UTF-8 character boundary) to
// MaxCloseReason bytes so that the payload stays within 125 bytes. A code
// of 0 or one of the codes that must never be sent (1005 no status, 1006
// abnormal closure, 1015 TLS handshake) gives a close frame with an empty
// body. CloseFrame is pure.
func CloseFrame(code ws.StatusCode, reason string) []byte {
	if code == 0 || code.IsProtocolReserved() {
		return []byte{0x80 | byte(ws.OpClose), 0}
	}
	if len(reason) > MaxCloseReason {
		cut := MaxCloseReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	b := make([]byte, 0, 4+len(reason))
	b = append(b, 0x80|byte(ws.OpClose), byte(2+len(reason)), byte(code>>8), byte(code))
	return append(b, reason...)
}

// AppendClientFrame appends to dst a masked client frame with the given
// opcode, FIN bit, payload (masked with mask while copying; payload itself
// is not modified) and masking key. It is meant for tests and the benchmark
// client. It is pure.
func AppendClientFrame(dst []byte, op ws.OpCode, fin bool, payload []byte, mask [4]byte) []byte {
	b0 := byte(op & 0x0f)
	if fin {
		b0 |= 0x80
	}
	dst = appendHeader(dst, b0, 0x80, len(payload))
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}
