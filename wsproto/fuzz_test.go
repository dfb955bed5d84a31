package wsproto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// splitSizes reads the split plan at the start of a fuzz input: the low 3
// bits of data[0] give the number of chunk sizes that follow, each byte b
// meaning a chunk of b%64+1 bytes. It returns the sizes and the rest.
func splitSizes(data []byte) (sizes []int, rest []byte) {
	if len(data) == 0 {
		return nil, nil
	}
	k := int(data[0] & 7)
	data = data[1:]
	for i := 0; i < k && len(data) > 0; i++ {
		sizes = append(sizes, int(data[0]%64)+1)
		data = data[1:]
	}
	return sizes, data
}

type parseResult struct {
	n   int
	err error
	r   Request
}

// parseSplit feeds growing prefixes of data (the chunk boundaries given by
// sizes, then all of it) to ParseRequest until it reports a result.
func parseSplit(data []byte, max int, sizes []int) parseResult {
	end := 0
	for _, s := range sizes {
		end += s
		if end >= len(data) {
			break
		}
		var res parseResult
		res.n, res.err = ParseRequest(data[:end], max, &res.r)
		if res.n > 0 || res.err != nil {
			return res
		}
	}
	var res parseResult
	res.n, res.err = ParseRequest(data, max, &res.r)
	return res
}

func FuzzParseRequest(f *testing.F) {
	for _, tc := range requestCases {
		f.Add(append([]byte{0x03, 5, 17, 40}, tc.in...))
		f.Add(append([]byte{0x80}, tc.in...))
	}
	f.Add(append([]byte{0x07, 0, 0, 1, 2, 3, 63, 9}, pusherJSRequest...))
	f.Add(append([]byte{0x00}, pusherJSRequest+"\x81\x85abcdefghi"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		max := 4096
		if data[0]&0x80 != 0 {
			max = 64
		}
		sizes, in := splitSizes(data)
		in = append([]byte(nil), in...)
		orig := append([]byte(nil), in...)

		var whole parseResult
		whole.n, whole.err = ParseRequest(in, max, &whole.r)
		split := parseSplit(in, max, sizes)
		if split.n != whole.n || split.err != whole.err || split.r != whole.r {
			t.Fatalf("split result %+v differs from whole %+v", split, whole)
		}
		if !bytes.Equal(in, orig) {
			t.Fatal("ParseRequest modified its input")
		}

		switch {
		case whole.err != nil:
			if !errors.Is(whole.err, ErrBadRequest) && !errors.Is(whole.err, ErrHeadTooLarge) {
				t.Fatalf("unexpected error %v", whole.err)
			}
			if whole.n != 0 {
				t.Fatalf("n = %d with error", whole.n)
			}
			if errors.Is(whole.err, ErrHeadTooLarge) && len(in) < max {
				t.Fatalf("too large with %d < %d bytes", len(in), max)
			}
		case whole.n == 0:
			if len(in) >= max {
				t.Fatalf("need more with %d >= %d bytes", len(in), max)
			}
		default:
			r := &whole.r
			if whole.n != r.HeadLen || whole.n > len(in) || whole.n > max {
				t.Fatalf("n = %d, HeadLen = %d, len = %d", whole.n, r.HeadLen, len(in))
			}
			if in[whole.n-1] != '\n' {
				t.Fatalf("head does not end with LF: %q", in[:whole.n])
			}
			if r.Method == "" || r.Target == "" || (r.ProtoMinor != 0 && r.ProtoMinor != 1) || r.ContentLength < -1 {
				t.Fatalf("bad request fields %+v", r)
			}
			path, query, hasQuery := strings.Cut(r.Target, "?")
			if r.RawQuery != query || (!hasQuery && r.RawQuery != "") {
				t.Fatalf("RawQuery %q from target %q", r.RawQuery, r.Target)
			}
			if !strings.Contains(path, "%") && r.Path != path {
				t.Fatalf("Path %q from target %q", r.Path, r.Target)
			}
			if r.IsUpgrade() {
				res, err := Upgrade(in[:whole.n])
				if len(res.Response) == 0 {
					t.Fatalf("Upgrade wrote no response (err %v)", err)
				}
				if err == nil && !bytes.HasPrefix(res.Response, []byte("HTTP/1.1 101 ")) {
					t.Fatalf("Upgrade succeeded with %q", res.Response)
				}
			}
		}
	})
}

// decoderSeeds are client frame streams for FuzzDecoder.
func decoderSeeds() [][]byte {
	m1 := [4]byte{1, 2, 3, 4}
	m2 := [4]byte{0xde, 0xad, 0xbe, 0xef}
	c := func(op ws.OpCode, fin bool, p string, mask [4]byte) []byte {
		return AppendClientFrame(nil, op, fin, []byte(p), mask)
	}
	return [][]byte{
		c(ws.OpText, true, `{"event":"pusher:ping","data":{}}`, m1),
		c(ws.OpBinary, true, "\x00\xff", m2),
		c(ws.OpText, true, strings.Repeat("é", 80), m1),
		c(ws.OpText, true, strings.Repeat("x", 70000), m2)[:300],
		cat(c(ws.OpText, false, "Hel", m1), c(ws.OpPing, true, "x", m2), c(ws.OpContinuation, false, "lo ", m1),
			c(ws.OpPong, true, "", m2), c(ws.OpContinuation, true, "world", m1), c(ws.OpText, true, "next", m2)),
		cat(c(ws.OpBinary, false, "", m1), c(ws.OpContinuation, false, "a", m1), c(ws.OpContinuation, false, "b", m1),
			c(ws.OpContinuation, true, "c", m1)),
		cat(c(ws.OpText, false, "\xe2\x82", m1), c(ws.OpContinuation, true, "\xac", m2)),
		cat(c(ws.OpText, false, "a", m1), c(ws.OpText, true, "b", m1)),
		c(ws.OpContinuation, true, "x", m1),
		c(ws.OpClose, true, "", m1),
		c(ws.OpClose, true, "\x03\xe8bye", m2),
		c(ws.OpClose, true, "\x03", m1),
		c(ws.OpClose, true, "\x13\x88", m1),
		c(ws.OpClose, true, "\x03\xe8\xc3", m1),
		c(ws.OpPing, false, "p", m1),
		c(ws.OpPing, true, strings.Repeat("p", 126), m1),
		c(3, true, "r", m1),
		c(ws.OpText, true, "a\xc3(", m1),
		withByte0(c(ws.OpText, true, "rsv", m1), 0x40),
		{0x81, 0x02, 'h', 'i'},
		{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		{0x82, 0x80 | 127, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 2, 3, 4},
	}
}

// decoderLimits picks the decoder limits from bits 3-6 of the first byte.
func decoderLimits(b byte) Decoder {
	sizes := [4]int64{0, 16, 300, 70000}
	frags := [4]int{0, 1, 2, 5}
	return Decoder{MaxMessageSize: sizes[(b>>3)&3], MaxFragments: frags[(b>>5)&3]}
}

func FuzzDecoder(f *testing.F) {
	for i, s := range decoderSeeds() {
		ctrl := byte(i*11) & 0x7f
		f.Add(append([]byte{ctrl&^7 | 3, byte(i), 1, 7}, s...))
		f.Add(append([]byte{0x00}, s...))
		f.Add(append([]byte{0x08 | 0x40 | 7, 0, 0, 0, 1, 1, 1, 2}, s...))
	}
	f.Add(append([]byte{0x00}, bytes.Join(decoderSeeds()[:7], nil)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		limits := decoderLimits(data[0])
		sizes, in := splitSizes(data)

		d1 := limits
		whole := decodeStream(t, &d1, append([]byte(nil), in...), nil)
		d2 := limits
		split := decodeStream(t, &d2, append([]byte(nil), in...), sizes)
		if !equalResults(whole, split) {
			t.Fatalf("split result %+v differs from whole %+v", split, whole)
		}
		if whole.consumed > len(in) {
			t.Fatalf("consumed %d > %d", whole.consumed, len(in))
		}
		for _, m := range whole.msgs {
			switch m.op {
			case 0:
			case ws.OpText:
				if !utf8.ValidString(m.data) {
					t.Fatalf("invalid UTF-8 text delivered: %q", m.data)
				}
				fallthrough
			case ws.OpBinary:
				if limits.MaxMessageSize > 0 && int64(len(m.data)) > limits.MaxMessageSize {
					t.Fatalf("message of %d bytes over the limit %d", len(m.data), limits.MaxMessageSize)
				}
			case ws.OpPing, ws.OpPong:
				if len(m.data) > 125 {
					t.Fatalf("control payload of %d bytes", len(m.data))
				}
			case ws.OpClose:
				if !utf8.ValidString(m.reason) || (m.code == ws.StatusNoStatusRcvd) != (m.data == "") {
					t.Fatalf("bad close %+v", m)
				}
			default:
				t.Fatalf("unexpected opcode %v", m.op)
			}
		}
	})
}

// FuzzUpgrade runs the handshake the way the transport does: ParseRequest
// first, then Upgrade over exactly the head of an upgrade request. Upgrade
// must never panic and must always produce an HTTP response; a 101 must carry
// Sec-WebSocket-Accept. (Upgrade on its own is laxer than ParseRequest, e.g.
// about an empty request target, which is why it always runs second.)
func FuzzUpgrade(f *testing.F) {
	f.Add([]byte("GET /app/key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	f.Add([]byte("POST /app/key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n"))
	f.Add([]byte("GET /app/key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!\r\nSec-WebSocket-Version: 8\r\n\r\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Request
		n, err := ParseRequest(in, 1<<16, &r)
		if err != nil || n == 0 || !r.IsUpgrade() {
			return
		}
		res, err := Upgrade(in[:n])
		if !bytes.HasPrefix(res.Response, []byte("HTTP/1.")) {
			t.Fatalf("no HTTP response: %q (err %v)", res.Response, err)
		}
		if err == nil && !bytes.Contains(res.Response, []byte("Sec-WebSocket-Accept: ")) {
			t.Fatalf("101 without Sec-WebSocket-Accept: %q", res.Response)
		}
	})
}
