package wsproto

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

func TestAppendFrameKnownBytes(t *testing.T) {
	tests := []struct {
		name    string
		op      ws.OpCode
		payload []byte
		want    []byte // the header; the payload follows unchanged
	}{
		{
			name:    "empty text",
			op:      ws.OpText,
			payload: nil,
			want:    []byte{0x81, 0x00},
		},
		{
			name:    "hello",
			op:      ws.OpText,
			payload: []byte("hello"),
			want:    []byte{0x81, 0x05},
		},
		{
			name:    "125 bytes binary",
			op:      ws.OpBinary,
			payload: bytes.Repeat([]byte{'x'}, 125),
			want:    []byte{0x82, 125},
		},
		{
			name:    "126 bytes uses 16-bit length",
			op:      ws.OpText,
			payload: bytes.Repeat([]byte{'x'}, 126),
			want:    []byte{0x81, 126, 0x00, 0x7e},
		},
		{
			name:    "65535 bytes uses 16-bit length",
			op:      ws.OpText,
			payload: bytes.Repeat([]byte{'x'}, 65535),
			want:    []byte{0x81, 126, 0xff, 0xff},
		},
		{
			name:    "65536 bytes uses 64-bit length",
			op:      ws.OpText,
			payload: bytes.Repeat([]byte{'x'}, 65536),
			want:    []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0},
		},
		{
			name:    "pong",
			op:      ws.OpPong,
			payload: []byte("p"),
			want:    []byte{0x8a, 0x01},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := append(append([]byte(nil), tc.want...), tc.payload...)
			prefix := []byte("prefix")
			got := AppendFrame(prefix, tc.op, tc.payload)
			if !bytes.Equal(got[:6], []byte("prefix")) || !bytes.Equal(got[6:], want) {
				t.Fatalf("frame header = % x, want % x", got[6:min(len(got), 6+len(tc.want))], tc.want)
			}
			if tc.op == ws.OpText && !bytes.Equal(AppendText(nil, tc.payload), want) {
				t.Fatal("AppendText differs from AppendFrame(OpText)")
			}
			// gobwas agrees on the header.
			h, n, err := ParseHeader(got[6:])
			if err != nil || n != len(tc.want) || !h.Fin || h.Masked || h.OpCode != tc.op || h.Length != int64(len(tc.payload)) {
				t.Fatalf("ParseHeader = %+v, %d, %v", h, n, err)
			}
			wh, err := ws.ReadHeader(bytes.NewReader(got[6:]))
			if err != nil || wh.Length != int64(len(tc.payload)) || wh.OpCode != tc.op || !wh.Fin || wh.Masked {
				t.Fatalf("ws.ReadHeader = %+v, %v", wh, err)
			}
		})
	}
}

func TestAppendTextAllocs(t *testing.T) {
	payload := []byte(strings.Repeat("a", 200))
	dst := make([]byte, 0, len(payload)+10)
	allocs := testing.AllocsPerRun(100, func() {
		dst = AppendText(dst[:0], payload)
	})
	if allocs != 0 {
		t.Fatalf("AppendText allocates %v times", allocs)
	}
}

func TestCloseFrame(t *testing.T) {
	long := strings.Repeat("a", 200)
	// 122 ASCII bytes then a 2-byte rune crossing the 123-byte limit.
	crossing := strings.Repeat("a", 122) + "é" + "tail"
	tests := []struct {
		name   string
		code   ws.StatusCode
		reason string
		want   []byte
	}{
		{
			name:   "normal closure with reason",
			code:   ws.StatusNormalClosure,
			reason: "bye",
			want:   []byte{0x88, 0x05, 0x03, 0xe8, 'b', 'y', 'e'},
		},
		{
			name:   "pusher code without reason",
			code:   4009,
			reason: "",
			want:   []byte{0x88, 0x02, 0x0f, 0xa9},
		},
		{
			name:   "1005 gives an empty body",
			code:   ws.StatusNoStatusRcvd,
			reason: "ignored",
			want:   []byte{0x88, 0x00},
		},
		{
			name:   "zero code gives an empty body",
			code:   0,
			reason: "",
			want:   []byte{0x88, 0x00},
		},
		{
			name:   "long reason trimmed to 123 bytes",
			code:   ws.StatusMessageTooBig,
			reason: long,
			want:   append([]byte{0x88, 125, 0x03, 0xf1}, long[:123]...),
		},
		{
			name:   "trimmed at a UTF-8 boundary",
			code:   ws.StatusPolicyViolation,
			reason: crossing,
			want:   append([]byte{0x88, 124, 0x03, 0xf0}, crossing[:122]...),
		},
		{
			name:   "exactly 123 bytes kept",
			code:   ws.StatusGoingAway,
			reason: long[:123],
			want:   append([]byte{0x88, 125, 0x03, 0xe9}, long[:123]...),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := CloseFrame(tc.code, tc.reason)
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("CloseFrame = % x\nwant % x", got, tc.want)
			}
			if len(got) > 4 && !utf8.Valid(got[4:]) {
				t.Fatal("reason is not valid UTF-8")
			}
			if len(got)-2 > ws.MaxControlFramePayloadSize {
				t.Fatalf("payload of %d bytes", len(got)-2)
			}
		})
	}
}

// TestClientFrameRoundTrip encodes client frames and decodes them.
func TestClientFrameRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 125, 126, 1000, 65535, 65536, 70000} {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte('a' + i%26)
		}
		orig := append([]byte(nil), payload...)
		mask := [4]byte{byte(size), 0x5a, 0xa5, 0xff}
		for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary} {
			frame := AppendClientFrame([]byte("x"), op, true, payload, mask)[1:]
			if !bytes.Equal(payload, orig) {
				t.Fatal("AppendClientFrame modified the payload")
			}
			var d Decoder
			m, n, err := d.Next(frame)
			if err != nil || n != len(frame) || m.OpCode != op || !bytes.Equal(m.Payload, orig) {
				t.Fatalf("size %d op %v: n = %d/%d, err = %v, op = %v", size, op, n, len(frame), err, m.OpCode)
			}
		}
	}
	// A non-final client frame has FIN clear.
	f := AppendClientFrame(nil, ws.OpText, false, []byte("a"), testMask)
	if f[0] != 0x01 || f[1] != 0x81 {
		t.Fatalf("non-final header = % x", f[:2])
	}
	// gobwas decodes our client frames too.
	frame := AppendClientFrame(nil, ws.OpText, true, []byte("hello gobwas"), testMask)
	h, err := ws.ReadHeader(bytes.NewReader(frame))
	if err != nil || !h.Masked || h.Mask != testMask || h.Length != 12 {
		t.Fatalf("ws.ReadHeader = %+v, %v", h, err)
	}
	p := append([]byte(nil), frame[6:]...)
	ws.Cipher(p, h.Mask, 0)
	if string(p) != "hello gobwas" {
		t.Fatalf("payload = %q", p)
	}
}
