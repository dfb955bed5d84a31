package wsproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"unsafe"

	"github.com/gobwas/ws"
)

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// cf builds a masked client frame.
func cf(op ws.OpCode, fin bool, payload string) []byte {
	return AppendClientFrame(nil, op, fin, []byte(payload), testMask)
}

// closeBody builds a close payload.
func closeBody(code uint16, reason string) string {
	return string(binary.BigEndian.AppendUint16(nil, code)) + reason
}

func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// withByte0 returns f with its first byte or-ed with bits.
func withByte0(f []byte, bits byte) []byte {
	f = append([]byte(nil), f...)
	f[0] |= bits
	return f
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Header
		wantN   int
		wantErr ws.StatusCode
	}{
		{
			name:  "7-bit length, unmasked",
			in:    []byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'},
			want:  Header{Fin: true, OpCode: ws.OpText, Length: 5, Size: 2},
			wantN: 2,
		},
		{
			name:  "7-bit length 125, masked",
			in:    []byte{0x82, 0x80 | 125, 1, 2, 3, 4},
			want:  Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: [4]byte{1, 2, 3, 4}, Length: 125, Size: 6},
			wantN: 6,
		},
		{
			name:  "16-bit length, masked, RSV1, no FIN",
			in:    []byte{0x41, 0x80 | 126, 0x01, 0x00, 9, 8, 7, 6},
			want:  Header{Fin: false, Rsv: 4, OpCode: ws.OpText, Masked: true, Mask: [4]byte{9, 8, 7, 6}, Length: 256, Size: 8},
			wantN: 8,
		},
		{
			name:  "64-bit length, masked",
			in:    []byte{0x80, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4},
			want:  Header{Fin: true, OpCode: ws.OpContinuation, Masked: true, Mask: [4]byte{1, 2, 3, 4}, Length: 1 << 32, Size: 14},
			wantN: 14,
		},
		{
			name:  "64-bit length, largest allowed",
			in:    []byte{0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			want:  Header{Fin: true, OpCode: ws.OpBinary, Length: 1<<63 - 1, Size: 10},
			wantN: 10,
		},
		{
			name:    "64-bit length with MSB set",
			in:      []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
			wantErr: ws.StatusProtocolError,
		},
		{name: "empty", in: nil},
		{name: "one byte", in: []byte{0x81}},
		{name: "16-bit length cut", in: []byte{0x81, 126, 0x01}},
		{name: "64-bit length cut", in: []byte{0x81, 127, 0, 0, 0, 0, 0, 0, 1}},
		{name: "mask cut", in: []byte{0x81, 0x85, 1, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := ParseHeader(tc.in)
			if got := closeCode(err); got != tc.wantErr {
				t.Fatalf("err = %v, want code %d", err, tc.wantErr)
			}
			if n != tc.wantN {
				t.Fatalf("n = %d, want %d", n, tc.wantN)
			}
			if h != tc.want {
				t.Fatalf("header = %+v, want %+v", h, tc.want)
			}
		})
	}
}

func closeCode(err error) ws.StatusCode {
	if err == nil {
		return 0
	}
	var ce *CloseError
	if !errors.As(err, &ce) {
		return 0xffff
	}
	return ce.Code
}

// decoded is a copy of a Message for comparisons.
type decoded struct {
	op     ws.OpCode
	data   string
	code   ws.StatusCode
	reason string
}

type decodeResult struct {
	msgs     []decoded
	errCode  ws.StatusCode
	errText  string
	consumed int
}

// decodeStream feeds data to d the way a gnet loop does: chunks (of the
// given sizes, then the rest) are appended to a pending buffer, complete
// frames are decoded and the consumed bytes dropped from the buffer. It
// stops at the first error.
func decodeStream(t testing.TB, d *Decoder, data []byte, sizes []int) decodeResult {
	var res decodeResult
	var pending []byte
	feed := func(chunk []byte) bool {
		pending = append(pending, chunk...)
		for {
			before := append([]byte(nil), pending...)
			m, n, err := d.Next(pending)
			if err != nil {
				var ce *CloseError
				if !errors.As(err, &ce) {
					t.Fatalf("Next returned %T %v, want *CloseError", err, err)
				}
				if n != 0 {
					t.Fatalf("Next returned n = %d with an error", n)
				}
				res.errCode, res.errText = ce.Code, ce.Error()
				return false
			}
			if n == 0 {
				if m.OpCode != 0 || m.Payload != nil {
					t.Fatalf("need-more result carries a message: %+v", m)
				}
				if !bytes.Equal(before, pending) {
					t.Fatalf("Next modified the buffer while asking for more bytes")
				}
				return true
			}
			if n > len(pending) {
				t.Fatalf("n = %d > len(buf) = %d", n, len(pending))
			}
			res.msgs = append(res.msgs, decoded{m.OpCode, string(m.Payload), m.CloseCode, m.CloseReason})
			res.consumed += n
			// Drop consumed bytes into a fresh buffer, so a payload kept
			// past this point would be caught by the comparisons.
			pending = append([]byte(nil), pending[n:]...)
		}
	}
	for _, s := range sizes {
		if s > len(data) {
			s = len(data)
		}
		if !feed(data[:s]) {
			return res
		}
		data = data[s:]
	}
	feed(data)
	return res
}

func msg(op ws.OpCode, data string) decoded { return decoded{op: op, data: data} }

func closeMsg(code ws.StatusCode, reason string) decoded {
	body := ""
	if code != ws.StatusNoStatusRcvd {
		body = closeBody(uint16(code), reason)
	}
	return decoded{op: ws.OpClose, data: body, code: code, reason: reason}
}

var frag = decoded{} // a consumed non-final fragment

func TestDecoderNext(t *testing.T) {
	longText := strings.Repeat("€", 100) // 300 bytes, 16-bit length
	tests := []struct {
		name     string
		maxSize  int64
		maxFrags int
		in       []byte
		want     []decoded
		wantErr  ws.StatusCode
	}{
		{
			name: "text",
			in:   cf(ws.OpText, true, "hello"),
			want: []decoded{msg(ws.OpText, "hello")},
		},
		{
			name: "empty text",
			in:   cf(ws.OpText, true, ""),
			want: []decoded{msg(ws.OpText, "")},
		},
		{
			name: "binary need not be UTF-8",
			in:   cf(ws.OpBinary, true, "\xff\xfe"),
			want: []decoded{msg(ws.OpBinary, "\xff\xfe")},
		},
		{
			name: "16-bit length text",
			in:   cf(ws.OpText, true, longText),
			want: []decoded{msg(ws.OpText, longText)},
		},
		{
			name: "two frames back to back",
			in:   cat(cf(ws.OpText, true, "a"), cf(ws.OpBinary, true, "b")),
			want: []decoded{msg(ws.OpText, "a"), msg(ws.OpBinary, "b")},
		},
		{
			name: "ping and pong",
			in:   cat(cf(ws.OpPing, true, "p"), cf(ws.OpPong, true, "")),
			want: []decoded{msg(ws.OpPing, "p"), msg(ws.OpPong, "")},
		},
		{
			name: "ping of 125 bytes",
			in:   cf(ws.OpPing, true, strings.Repeat("x", 125)),
			want: []decoded{msg(ws.OpPing, strings.Repeat("x", 125))},
		},
		{
			name:    "unmasked frame",
			in:      []byte{0x81, 0x02, 'h', 'i'},
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "RSV1 set",
			in:      withByte0(cf(ws.OpText, true, "hi"), 0x40),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "RSV3 set",
			in:      withByte0(cf(ws.OpText, true, "hi"), 0x10),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "reserved data opcode 3",
			in:      cf(3, true, "hi"),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "reserved control opcode 0xB",
			in:      cf(0xb, true, ""),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "fragmented ping",
			in:      cf(ws.OpPing, false, "p"),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "ping of 126 bytes",
			in:      cf(ws.OpPing, true, strings.Repeat("x", 126)),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "continuation without a start",
			in:      cf(ws.OpContinuation, true, "x"),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "new data frame while fragmented",
			in:      cat(cf(ws.OpText, false, "a"), cf(ws.OpText, true, "b")),
			want:    []decoded{frag},
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "invalid UTF-8 text",
			in:      cf(ws.OpText, true, "a\xc3("),
			wantErr: ws.StatusInvalidFramePayloadData,
		},
		{
			name: "fragmented text splitting a UTF-8 sequence",
			in:   cat(cf(ws.OpText, false, "\xe2\x82"), cf(ws.OpContinuation, true, "\xac!")),
			want: []decoded{frag, msg(ws.OpText, "€!")},
		},
		{
			name:    "fragmented invalid UTF-8 text",
			in:      cat(cf(ws.OpText, false, "ok"), cf(ws.OpContinuation, true, "\xff")),
			want:    []decoded{frag},
			wantErr: ws.StatusInvalidFramePayloadData,
		},
		{
			name: "fragments with interleaved ping and pong",
			in: cat(
				cf(ws.OpText, false, "Hel"),
				cf(ws.OpPing, true, "x"),
				cf(ws.OpContinuation, false, "lo "),
				cf(ws.OpPong, true, ""),
				cf(ws.OpContinuation, true, "world"),
				cf(ws.OpText, true, "next"),
			),
			want: []decoded{frag, msg(ws.OpPing, "x"), frag, msg(ws.OpPong, ""), msg(ws.OpText, "Hello world"), msg(ws.OpText, "next")},
		},
		{
			name: "fragmented binary with empty fragments",
			in:   cat(cf(ws.OpBinary, false, ""), cf(ws.OpContinuation, false, "\x00"), cf(ws.OpContinuation, true, "")),
			want: []decoded{frag, frag, msg(ws.OpBinary, "\x00")},
		},
		{
			name: "close without body",
			in:   cf(ws.OpClose, true, ""),
			want: []decoded{closeMsg(ws.StatusNoStatusRcvd, "")},
		},
		{
			name: "close 1000 with reason",
			in:   cf(ws.OpClose, true, closeBody(1000, "bye")),
			want: []decoded{closeMsg(1000, "bye")},
		},
		{
			name: "close 3000",
			in:   cf(ws.OpClose, true, closeBody(3000, "")),
			want: []decoded{closeMsg(3000, "")},
		},
		{
			name: "close 4999",
			in:   cf(ws.OpClose, true, closeBody(4999, "é")),
			want: []decoded{closeMsg(4999, "é")},
		},
		{
			name: "close between fragments",
			in:   cat(cf(ws.OpText, false, "a"), cf(ws.OpClose, true, closeBody(1001, ""))),
			want: []decoded{frag, closeMsg(1001, "")},
		},
		{
			name:    "close with 1-byte body",
			in:      cf(ws.OpClose, true, "\x03"),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "close code 999",
			in:      cf(ws.OpClose, true, closeBody(999, "")),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "close code 1004",
			in:      cf(ws.OpClose, true, closeBody(1004, "")),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "close code 1005 on the wire",
			in:      cf(ws.OpClose, true, closeBody(1005, "")),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "close code 1006 on the wire",
			in:      cf(ws.OpClose, true, closeBody(1006, "")),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "close code 1016",
			in:      cf(ws.OpClose, true, closeBody(1016, "")),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "close code 5000",
			in:      cf(ws.OpClose, true, closeBody(5000, "")),
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "close with invalid UTF-8 reason",
			in:      cf(ws.OpClose, true, closeBody(1000, "\xc3")),
			wantErr: ws.StatusInvalidFramePayloadData,
		},
		{
			name:    "message of exactly MaxMessageSize",
			maxSize: 10,
			in:      cf(ws.OpText, true, "0123456789"),
			want:    []decoded{msg(ws.OpText, "0123456789")},
		},
		{
			name:    "message one byte over MaxMessageSize",
			maxSize: 10,
			in:      cf(ws.OpText, true, "0123456789a"),
			wantErr: ws.StatusMessageTooBig,
		},
		{
			name:    "fragmented message of exactly MaxMessageSize",
			maxSize: 10,
			in:      cat(cf(ws.OpBinary, false, "01234"), cf(ws.OpContinuation, true, "56789")),
			want:    []decoded{frag, msg(ws.OpBinary, "0123456789")},
		},
		{
			name:    "fragmented message one byte over MaxMessageSize",
			maxSize: 10,
			in:      cat(cf(ws.OpBinary, false, "01234"), cf(ws.OpContinuation, true, "56789a")),
			want:    []decoded{frag},
			wantErr: ws.StatusMessageTooBig,
		},
		{
			name:    "control frames are not counted in MaxMessageSize",
			maxSize: 2,
			in:      cat(cf(ws.OpText, false, "ab"), cf(ws.OpPing, true, "ping"), cf(ws.OpContinuation, true, "")),
			want:    []decoded{frag, msg(ws.OpPing, "ping"), msg(ws.OpText, "ab")},
		},
		{
			name:     "MaxFragments frames allowed",
			maxFrags: 3,
			in:       cat(cf(ws.OpText, false, "a"), cf(ws.OpContinuation, false, "b"), cf(ws.OpContinuation, true, "c")),
			want:     []decoded{frag, frag, msg(ws.OpText, "abc")},
		},
		{
			name:     "one frame over MaxFragments",
			maxFrags: 2,
			in:       cat(cf(ws.OpText, false, "a"), cf(ws.OpContinuation, false, "b"), cf(ws.OpContinuation, true, "c")),
			want:     []decoded{frag, frag},
			wantErr:  ws.StatusPolicyViolation,
		},
		{
			name:     "MaxFragments counts per message",
			maxFrags: 2,
			in: cat(cf(ws.OpText, false, "a"), cf(ws.OpContinuation, true, "b"),
				cf(ws.OpText, false, "c"), cf(ws.OpContinuation, true, "d")),
			want: []decoded{frag, msg(ws.OpText, "ab"), frag, msg(ws.OpText, "cd")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			whole := &Decoder{MaxMessageSize: tc.maxSize, MaxFragments: tc.maxFrags}
			got := decodeStream(t, whole, append([]byte(nil), tc.in...), nil)
			if got.errCode != tc.wantErr {
				t.Fatalf("error code = %d (%s), want %d", got.errCode, got.errText, tc.wantErr)
			}
			if len(got.msgs) != len(tc.want) {
				t.Fatalf("messages = %+v, want %+v", got.msgs, tc.want)
			}
			for i := range got.msgs {
				if got.msgs[i] != tc.want[i] {
					t.Fatalf("message %d = %+v, want %+v", i, got.msgs[i], tc.want[i])
				}
			}
			if tc.wantErr == 0 && got.consumed != len(tc.in) {
				t.Fatalf("consumed %d of %d bytes", got.consumed, len(tc.in))
			}

			// Byte by byte gives the same result.
			ones := make([]int, len(tc.in))
			for i := range ones {
				ones[i] = 1
			}
			split := decodeStream(t, &Decoder{MaxMessageSize: tc.maxSize, MaxFragments: tc.maxFrags}, append([]byte(nil), tc.in...), ones)
			if !equalResults(split, got) {
				t.Fatalf("byte-by-byte result %+v differs from %+v", split, got)
			}
		})
	}
}

func equalResults(a, b decodeResult) bool {
	if a.errCode != b.errCode || a.errText != b.errText || a.consumed != b.consumed || len(a.msgs) != len(b.msgs) {
		return false
	}
	for i := range a.msgs {
		if a.msgs[i] != b.msgs[i] {
			return false
		}
	}
	return true
}

// TestDecoderSizeCheckedBeforePayload checks that the size limit is applied
// to the declared length as soon as the header is complete.
func TestDecoderSizeCheckedBeforePayload(t *testing.T) {
	tests := []struct {
		name    string
		maxSize int64
		in      []byte // a header only
		wantErr ws.StatusCode
	}{
		{
			name:    "exactly the limit waits for the payload",
			maxSize: 10,
			in:      cf(ws.OpText, true, "0123456789")[:6],
			wantErr: 0,
		},
		{
			name:    "one more is refused without the payload",
			maxSize: 10,
			in:      cf(ws.OpText, true, "0123456789a")[:6],
			wantErr: ws.StatusMessageTooBig,
		},
		{
			name:    "huge 64-bit declared length",
			maxSize: 1 << 20,
			in:      []byte{0x82, 0x80 | 127, 0, 0, 0x10, 0, 0, 0, 0, 0, 1, 2, 3, 4},
			wantErr: ws.StatusMessageTooBig,
		},
		{
			name:    "huge 64-bit declared length, no limit, waits",
			maxSize: 0,
			in:      []byte{0x82, 0x80 | 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4},
			wantErr: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decoder{MaxMessageSize: tc.maxSize}
			m, n, err := d.Next(tc.in)
			if n != 0 || m.OpCode != 0 {
				t.Fatalf("n = %d, m = %+v", n, m)
			}
			if got := closeCode(err); got != tc.wantErr {
				t.Fatalf("err = %v, want code %d", err, tc.wantErr)
			}
			if tc.wantErr == ws.StatusMessageTooBig && err.(*CloseError).Reason != "Maximum message size exceeded" {
				t.Fatalf("reason = %q", err.(*CloseError).Reason)
			}
		})
	}
}

func TestDecoderNoCopyAndInPlace(t *testing.T) {
	buf := cf(ws.OpText, true, "hello")
	var d Decoder
	m, n, err := d.Next(buf)
	if err != nil || n != len(buf) {
		t.Fatalf("n = %d, err = %v", n, err)
	}
	if &m.Payload[0] != &buf[6] {
		t.Fatal("payload of an unfragmented frame was copied")
	}
	if string(buf[6:]) != "hello" {
		t.Fatalf("buffer not unmasked in place: %q", buf[6:])
	}
}

func TestDecoderFragmentBufferReleased(t *testing.T) {
	var d Decoder
	in := cat(cf(ws.OpText, false, "ab"), cf(ws.OpContinuation, true, "cd"))
	got := decodeStream(t, &d, in, nil)
	if got.errCode != 0 || len(got.msgs) != 2 || got.msgs[1].data != "abcd" {
		t.Fatalf("result %+v", got)
	}
	if d.frag != nil || d.fragOp != 0 || d.nfrag != 0 {
		t.Fatalf("fragment state kept: %+v", d)
	}

	// Reset in the middle of a message.
	if _, _, err := d.Next(cf(ws.OpText, false, "ab")); err != nil {
		t.Fatal(err)
	}
	if d.frag == nil {
		t.Fatal("fragment not buffered")
	}
	d.Reset()
	if d.frag != nil || d.fragOp != 0 || d.nfrag != 0 {
		t.Fatalf("Reset kept state: %+v", d)
	}
	if _, _, err := d.Next(cf(ws.OpContinuation, true, "x")); closeCode(err) != ws.StatusProtocolError {
		t.Fatalf("continuation after Reset: err = %v", err)
	}
}

func TestDecoderSize(t *testing.T) {
	if s := unsafe.Sizeof(Decoder{}); s > 48 {
		t.Fatalf("Decoder is %d bytes, want <= 48", s)
	}
}

func TestDecoderAllocs(t *testing.T) {
	frame := cf(ws.OpText, true, strings.Repeat("a", 100))
	buf := make([]byte, len(frame))
	d := Decoder{MaxMessageSize: 1 << 16}
	allocs := testing.AllocsPerRun(100, func() {
		copy(buf, frame)
		if _, _, err := d.Next(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Next allocates %v times", allocs)
	}
}

func TestCloseErrorError(t *testing.T) {
	e := &CloseError{Code: 1009, Reason: "Maximum message size exceeded"}
	if got := e.Error(); got != "websocket: close 1009: Maximum message size exceeded" {
		t.Fatalf("Error() = %q", got)
	}
}
