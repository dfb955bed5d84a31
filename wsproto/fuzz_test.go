package wsproto

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strconv"
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
			if whole.n > len(in) || whole.n > max {
				t.Fatalf("n = %d, len = %d", whole.n, len(in))
			}
			if in[whole.n-1] != '\n' {
				t.Fatalf("head does not end with LF: %q", in[:whole.n])
			}
			target := targetOf(in[:whole.n])
			if r.Method == "" || target == "" || (r.ProtoMinor != 0 && r.ProtoMinor != 1) || r.ContentLength < -1 {
				t.Fatalf("bad request fields %+v", r)
			}
			path, query, hasQuery := strings.Cut(target, "?")
			if r.RawPath != path || r.RawQuery != query || (!hasQuery && r.RawQuery != "") {
				t.Fatalf("RawPath %q, RawQuery %q from target %q", r.RawPath, r.RawQuery, target)
			}
			if !strings.Contains(path, "%") && r.Path != path {
				t.Fatalf("Path %q from target %q", r.Path, target)
			}
			if r.IsUpgrade() {
				out, err := Upgrade(nil, r)
				if len(out) == 0 {
					t.Fatalf("Upgrade wrote no response (err %v)", err)
				}
				if err == nil && !bytes.HasPrefix(out, []byte("HTTP/1.1 101 ")) {
					t.Fatalf("Upgrade succeeded with %q", out)
				}
			}
		}
	})
}

// targetOf returns the request-target of the request line of a head.
func targetOf(head []byte) string {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	_, rest, _ := bytes.Cut(line, []byte(" "))
	target, _, _ := bytes.Cut(rest, []byte(" "))
	return string(target)
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

// decoderLimits picks the decoder limits from bits 3-6 of the first byte
// and permessage-deflate from bit 7.
func decoderLimits(b byte) Decoder {
	sizes := [4]int64{0, 16, 300, 70000}
	frags := [4]int{0, 1, 2, 5}
	return Decoder{MaxMessageSize: sizes[(b>>3)&3], MaxFragments: frags[(b>>5)&3], Deflate: b&0x80 != 0}
}

func FuzzDecoder(f *testing.F) {
	for i, s := range decoderSeeds() {
		ctrl := byte(i*11) & 0x7f
		f.Add(append([]byte{ctrl&^7 | 3, byte(i), 1, 7}, s...))
		f.Add(append([]byte{0x00}, s...))
		f.Add(append([]byte{0x08 | 0x40 | 7, 0, 0, 0, 1, 1, 1, 2}, s...))
	}
	f.Add(append([]byte{0x00}, bytes.Join(decoderSeeds()[:7], nil)...))
	// Compressed messages, whole and fragmented, on a deflate decoder.
	z := strings.Repeat(`{"event":"client-x","data":"abc"}`, 8)
	for i, s := range [][]byte{
		compressedClientFrames(f, ws.OpText, []byte(z), 1),
		compressedClientFrames(f, ws.OpText, []byte(z), 3),
		compressedClientFrames(f, ws.OpBinary, make([]byte, 5000), 2),
		cat(compressedClientFrames(f, ws.OpText, []byte(z), 2), AppendClientFrame(nil, ws.OpText, true, []byte("plain"), testMask)),
	} {
		f.Add(append([]byte{0x80 | 0x18 | 4, byte(i), 3, 40, 9}, s...))
		f.Add(append([]byte{0x80 | 0x18 | 0x40}, s...))
		f.Add(append([]byte{0x18}, s...))
	}
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
// first, then Upgrade on the parsed request. Upgrade must never panic and
// must always produce an HTTP response; a 101 must carry
// Sec-WebSocket-Accept. It must also answer as gobwas/ws's Upgrader does
// over the same head (which the server used before), except where Upgrade is
// documented to differ: a malformed Sec-WebSocket-Key is reported first, two
// different keys are refused, and when several headers are wrong the one
// reported (400 or 426) may differ.
func FuzzUpgrade(f *testing.F) {
	f.Add([]byte("GET /app/key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	f.Add([]byte("POST /app/key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n"))
	f.Add([]byte("GET /app/key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!\r\nSec-WebSocket-Version: 8\r\n\r\n"))
	f.Add([]byte("GET /app/key HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nUpgrade: websocket\r\nConnection: keep-alive, upgrade\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Request
		n, err := ParseRequest(in, 4096, &r)
		if err != nil || n == 0 || !r.IsUpgrade() {
			return
		}
		out, err := Upgrade(nil, &r)
		if !bytes.HasPrefix(out, []byte("HTTP/1.1 ")) || len(out) < 12 {
			t.Fatalf("no HTTP response: %q (err %v)", out, err)
		}
		if (err == nil) != bytes.HasPrefix(out, []byte("HTTP/1.1 101 ")) {
			t.Fatalf("err %v with %q", err, out)
		}
		if err == nil && !bytes.Contains(out, []byte("\r\nSec-WebSocket-Accept: ")) {
			t.Fatalf("101 without Sec-WebSocket-Accept: %q", out)
		}
		status, _ := strconv.Atoi(string(out[9:12]))
		key := r.SecWebSocketKey
		if key != "" && !validKey(key) {
			if status != 400 {
				t.Fatalf("malformed key %q answered %d", key, status)
			}
			return
		}
		if r.hs&hsKeyRepeat != 0 || !plainConnection(in[:n]) {
			return
		}
		gStatus, gOut := gobwasUpgrade(in[:n])
		switch {
		case status == 101 || gStatus == 101:
			if !bytes.Equal(out, gOut) {
				t.Fatalf("response\n%q\ngobwas/ws answers\n%q", out, gOut)
			}
		case status != gStatus && !(status == 400 && gStatus == 426 || status == 426 && gStatus == 400):
			t.Fatalf("status %d, gobwas/ws answers %d: %q", status, gStatus, gOut)
		}
	})
}

// plainConnection reports whether every Connection header of head holds
// only token characters, commas, spaces and tabs: gobwas/ws's lexer stops
// looking for the "upgrade" token at other separators.
func plainConnection(head []byte) bool {
	for _, line := range bytes.Split(head, []byte("\n")) {
		name, value, ok := bytes.Cut(bytes.TrimSuffix(line, []byte("\r")), []byte(":"))
		if !ok || !eqFold(name, "connection") {
			continue
		}
		for _, c := range value {
			if !isTokenChar(c) && c != ',' && c != ' ' && c != '\t' {
				return false
			}
		}
	}
	return true
}

// gobwasUpgrade answers head with gobwas/ws's Upgrader, configured as the
// server's was, and returns the status and the response.
func gobwasUpgrade(head []byte) (int, []byte) {
	u := ws.Upgrader{OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
		return ws.HandshakeHeaderString(PoweredByHeader), nil
	}}
	rw := headRW{head: head}
	if _, err := u.Upgrade(&rw); err != nil && len(rw.out) == 0 {
		return 400, nil
	}
	status, _ := strconv.Atoi(string(rw.out[9:12]))
	return status, rw.out
}

// headRW is the io.ReadWriter given to ws.Upgrader: reads yield exactly the
// head bytes, writes append to a buffer.
type headRW struct {
	head []byte
	out  []byte
}

func (h *headRW) Read(p []byte) (int, error) {
	if len(h.head) == 0 {
		return 0, io.EOF
	}
	n := copy(p, h.head)
	h.head = h.head[n:]
	return n, nil
}

func (h *headRW) Write(p []byte) (int, error) {
	h.out = append(h.out, p...)
	return len(p), nil
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
