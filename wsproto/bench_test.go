package wsproto

import (
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func BenchmarkParseRequest(b *testing.B) {
	buf := []byte(pusherJSRequest)
	var r Request
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := ParseRequest(buf, 8192, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpgrade answers an already parsed handshake into a reused buffer.
func BenchmarkUpgrade(b *testing.B) {
	var r Request
	if _, err := ParseRequest([]byte(pusherJSRequest), 8192, &r); err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = Upgrade(dst[:0], &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAndUpgrade is the whole handshake as the transport runs it:
// parse the head, then answer it into a new buffer.
func BenchmarkParseAndUpgrade(b *testing.B) {
	buf := []byte(pusherJSRequest)
	b.ReportAllocs()
	for b.Loop() {
		var r Request
		if _, err := ParseRequest(buf, 8192, &r); err != nil {
			b.Fatal(err)
		}
		if _, err := Upgrade(nil, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecoderText decodes a 100-byte masked text frame. Next unmasks in
// place, so each iteration restores the frame with a 106-byte copy.
func BenchmarkDecoderText(b *testing.B) {
	frame := AppendClientFrame(nil, ws.OpText, true, []byte(strings.Repeat(`{"a":1}`, 14)+"xx"), [4]byte{1, 2, 3, 4})
	buf := make([]byte, len(frame))
	d := Decoder{MaxMessageSize: 1 << 16, MaxFragments: 64}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		copy(buf, frame)
		if _, _, err := d.Next(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendText(b *testing.B) {
	payload := []byte(`{"event":"App\\Events\\OrderShipped","channel":"orders","data":"{\"id\":123,\"status\":\"shipped\",\"total\":42.5}"}`)
	dst := make([]byte, 0, len(payload)+10)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		dst = AppendText(dst[:0], payload)
	}
}
