package wsproto

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

func TestNegotiateDeflate(t *testing.T) {
	const acc = deflateAccept
	tests := []struct {
		name   string
		header string
		want   string // "" means not enabled
	}{
		{"empty", "", ""},
		{"browser offer", "permessage-deflate; client_max_window_bits", acc},
		{"bare offer", "permessage-deflate", acc},
		{"upper case name", "PerMessage-Deflate", acc},
		{"client bits with a value", "permessage-deflate; client_max_window_bits=10", acc},
		{"quoted client bits", `permessage-deflate; client_max_window_bits="12"`, acc},
		{"no context takeover offered", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", acc},
		{"server bits 15", "permessage-deflate; server_max_window_bits=15", acc + "; server_max_window_bits=15"},
		{"server bits 10 declined", "permessage-deflate; server_max_window_bits=10", ""},
		{"server bits 10 then a plain offer", "permessage-deflate; server_max_window_bits=10, permessage-deflate; client_max_window_bits", acc},
		{"other extension first", "x-webkit-deflate-frame, permessage-deflate", acc},
		{"only another extension", "x-webkit-deflate-frame", ""},
		{"unknown parameter", "permessage-deflate; foo=1", ""},
		{"unknown parameter then a good offer", "permessage-deflate; foo=1, permessage-deflate", acc},
		{"duplicate parameter", "permessage-deflate; server_no_context_takeover; server_no_context_takeover", ""},
		{"bits out of range", "permessage-deflate; client_max_window_bits=16", ""},
		{"bits not a number", "permessage-deflate; client_max_window_bits=abc", ""},
		{"server bits without value", "permessage-deflate; server_max_window_bits", ""},
		{"flag with a value", "permessage-deflate; server_no_context_takeover=1", ""},
		{"malformed list", "permessage-deflate; =;;", ""},
		{"garbage", "\x01\x02", ""},
		{"unterminated quote", `permessage-deflate; client_max_window_bits="12`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := NegotiateDeflate(tc.header)
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("NegotiateDeflate(%q) = %q, %v; want %q", tc.header, got, ok, tc.want)
			}
			if !ok {
				return
			}
			// The answer is one offer that wsflate accepts as a response.
			var p wsflate.Parameters
			opts, okp := httphead.ParseOptions([]byte(got), nil)
			if !okp || len(opts) != 1 || p.Parse(opts[0]) != nil || !p.ServerNoContextTakeover || !p.ClientNoContextTakeover {
				t.Fatalf("answer %q does not parse: %+v", got, p)
			}
		})
	}
}

func TestUpgradeWithExtensions(t *testing.T) {
	r := parseHead(t, goodHandshake("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"))
	if r.SecWebSocketExtensions != "permessage-deflate; client_max_window_bits" {
		t.Fatalf("SecWebSocketExtensions = %q", r.SecWebSocketExtensions)
	}
	ext, ok := NegotiateDeflate(r.SecWebSocketExtensions)
	if !ok {
		t.Fatal("not accepted")
	}
	out, err := UpgradeWith(nil, r, ext)
	want := strings.Replace(want101, "\r\n\r\n", "\r\nSec-WebSocket-Extensions: "+ext+"\r\n\r\n", 1)
	if err != nil || string(out) != want {
		t.Fatalf("err %v, response\n%q\nwant\n%q", err, out, want)
	}
	dst := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(50, func() { _, _ = UpgradeWith(dst[:0], r, ext) }); n != 0 {
		t.Fatalf("UpgradeWith allocates %v times", n)
	}
}

func TestRepeatedExtensionsHeaders(t *testing.T) {
	r := parseHead(t, goodHandshake("Sec-WebSocket-Extensions: x-foo", "Sec-WebSocket-Extensions: ", "Sec-WebSocket-Extensions: permessage-deflate"))
	if r.SecWebSocketExtensions != "x-foo, permessage-deflate" {
		t.Fatalf("SecWebSocketExtensions = %q", r.SecWebSocketExtensions)
	}
	if _, ok := NegotiateDeflate(r.SecWebSocketExtensions); !ok {
		t.Fatal("not accepted")
	}
}

// compressClient compresses p as a client would (no context takeover): the
// flate stream of a sync flush without its 4-byte tail.
func compressClient(t testing.TB, p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	_, _ = w.Write(p)
	_ = w.Flush()
	z := b.Bytes()
	if !bytes.HasSuffix(z, deflateTail) {
		t.Fatal("no sync flush tail")
	}
	return z[:len(z)-4]
}

// compressedClientFrames returns the client frames of the compressed message
// p split into the given number of fragments (RSV1 on the first only).
func compressedClientFrames(t testing.TB, op ws.OpCode, p []byte, frags int) []byte {
	z := compressClient(t, p)
	var out []byte
	step := max(len(z)/frags, 1)
	for i := 0; i < frags; i++ {
		lo, hi := min(i*step, len(z)), min((i+1)*step, len(z))
		if i == frags-1 {
			hi = len(z)
		}
		o := op
		if i > 0 {
			o = ws.OpContinuation
		}
		start := len(out)
		out = AppendClientFrame(out, o, i == frags-1, z[lo:hi], [4]byte{9, 8, 7, byte(i)})
		if i == 0 {
			out[start] |= 0x40
		}
	}
	return out
}

func TestAppendDeflatedTextRoundTrip(t *testing.T) {
	payload := []byte(strings.Repeat(`{"event":"price","channel":"ticker","data":{"symbol":"ABC","bid":1.25}}`, 20))
	f, ok := AppendDeflatedText([]byte("prefix"), payload)
	if !ok || !bytes.HasPrefix(f, []byte("prefix")) {
		t.Fatalf("ok %v", ok)
	}
	f = f[6:]
	h, n, err := ParseHeader(f)
	if err != nil || h.Rsv != 4 || !h.Fin || h.OpCode != ws.OpText || h.Masked || int(h.Length) != len(f)-n {
		t.Fatalf("header %+v, %d, %v", h, n, err)
	}
	if h.Length >= int64(len(payload))/4 {
		t.Fatalf("compressed %d -> %d only", len(payload), h.Length)
	}
	got, err := inflate(f[n:], 1<<20)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("inflate: %v", err)
	}
	// gobwas/ws's wsflate reader decodes it too.
	r := wsflate.NewReader(bytes.NewReader(f[n:]), func(r io.Reader) wsflate.Decompressor { return flate.NewReader(r) })
	var b bytes.Buffer
	if _, err := b.ReadFrom(r); err != nil || !bytes.Equal(b.Bytes(), payload) {
		t.Fatalf("wsflate reader: %v", err)
	}
	// Incompressible data goes out plain.
	rnd := make([]byte, 600)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(rng.Uint32())
	}
	pf, ok := AppendDeflatedText(nil, rnd)
	if ok || !bytes.Equal(pf, AppendText(nil, rnd)) {
		t.Fatalf("incompressible: ok %v", ok)
	}
}

func TestDecoderDeflate(t *testing.T) {
	msg := []byte(strings.Repeat(`{"event":"client-typing","data":{"user":"ann"}}`, 30)) // 1410 bytes
	bomb := compressedClientFrames(t, ws.OpText, make([]byte, 1<<20), 1)
	tests := []struct {
		name    string
		deflate bool
		max     int64
		in      []byte
		want    []byte
		code    ws.StatusCode
	}{
		{"one frame", true, 10000, compressedClientFrames(t, ws.OpText, msg, 1), msg, 0},
		{"three fragments", true, 10000, compressedClientFrames(t, ws.OpText, msg, 3), msg, 0},
		{"binary, fragments with a ping between", true, 10000, func() []byte {
			f := compressedClientFrames(t, ws.OpBinary, msg, 2)
			h, n, _ := ParseHeader(f)
			first := int(int64(n) + h.Length)
			return cat(f[:first], AppendClientFrame(nil, ws.OpPing, true, []byte("p"), testMask), f[first:])
		}(), msg, 0},
		{"exactly the limit", true, int64(len(msg)), compressedClientFrames(t, ws.OpText, msg, 1), msg, 0},
		{"one byte over the limit", true, int64(len(msg)) - 1, compressedClientFrames(t, ws.OpText, msg, 1), nil, ws.StatusMessageTooBig},
		{"bomb", true, 10000, bomb, nil, ws.StatusMessageTooBig},
		{"bomb without a limit stops at 16 MiB", true, 0, compressedClientFrames(t, ws.OpBinary, make([]byte, 17<<20), 1), nil, ws.StatusMessageTooBig},
		{"RSV1 without negotiation", false, 10000, compressedClientFrames(t, ws.OpText, msg, 1), nil, ws.StatusProtocolError},
		{"RSV1 on a continuation", true, 10000, func() []byte {
			f := AppendClientFrame(nil, ws.OpText, false, []byte("a"), testMask)
			c := AppendClientFrame(nil, ws.OpContinuation, true, []byte("b"), testMask)
			c[0] |= 0x40
			return cat(f, c)
		}(), nil, ws.StatusProtocolError},
		{"RSV1 on a ping", true, 10000, withByte0(AppendClientFrame(nil, ws.OpPing, true, nil, testMask), 0x40), nil, ws.StatusProtocolError},
		{"RSV2 with deflate", true, 10000, withByte0(compressedClientFrames(t, ws.OpText, msg, 1), 0x20), nil, ws.StatusProtocolError},
		{"corrupt data", true, 10000, withByte0(AppendClientFrame(nil, ws.OpText, true, []byte{0xff, 0xff, 0xff}, testMask), 0x40), nil, ws.StatusInvalidFramePayloadData},
		{"invalid UTF-8 inside", true, 10000, compressedClientFrames(t, ws.OpText, []byte("ok \xc3\x28 bad"), 1), nil, ws.StatusInvalidFramePayloadData},
		{"uncompressed message on a deflate connection", true, 10000, AppendClientFrame(nil, ws.OpText, true, msg, testMask), msg, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decoder{MaxMessageSize: tc.max, MaxFragments: 16, Deflate: tc.deflate}
			res := decodeStream(t, &d, append([]byte(nil), tc.in...), nil)
			if res.errCode != tc.code {
				t.Fatalf("close code %d (%s), want %d", res.errCode, res.errText, tc.code)
			}
			if tc.code != 0 {
				return
			}
			var data []string
			for _, m := range res.msgs {
				if m.op == ws.OpText || m.op == ws.OpBinary {
					data = append(data, m.data)
				}
			}
			if len(data) != 1 || data[0] != string(tc.want) {
				t.Fatalf("messages %d, first %.40q", len(data), data)
			}
		})
	}
}

// TestInflateBombMemory checks that a bomb is refused after producing no
// more than the limit.
func TestInflateBombMemory(t *testing.T) {
	z := compressClient(t, make([]byte, 8<<20))
	out, err := inflate(z, 100000)
	var ce *CloseError
	if out != nil || !errors.As(err, &ce) || ce.Code != ws.StatusMessageTooBig {
		t.Fatalf("err %v", err)
	}
	allocs := testing.AllocsPerRun(5, func() { _, _ = inflate(z, 100000) })
	if allocs > 40 {
		t.Fatalf("%v allocations", allocs)
	}
}

func FuzzInflate(f *testing.F) {
	f.Add(compressClient(f, []byte(strings.Repeat("hello ", 100))), uint16(1000))
	f.Add(compressClient(f, make([]byte, 100000)), uint16(5000))
	f.Add([]byte{0xff, 0x00, 0x12}, uint16(10))
	f.Fuzz(func(t *testing.T, in []byte, max uint16) {
		out, err := inflate(in, int64(max)+1)
		if err == nil && int64(len(out)) > int64(max)+1 {
			t.Fatalf("%d bytes over the limit %d", len(out), int64(max)+1)
		}
		if err != nil && out != nil {
			t.Fatal("output with an error")
		}
	})
}
