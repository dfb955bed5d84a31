package loop

// Tests of permessage-deflate through the transport: negotiation in the
// 101, compressed input split at any point, limits, and a real client.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
)

// deflateApp is the test app with compression on.
func deflateApp() *pusher.App {
	a := testApp()
	a.Compression = true
	return a
}

// deflateUpgrade is an upgrade request for key with the given extension
// header value ("" for none).
func deflateUpgrade(key, ext string) []byte {
	extra := ""
	if ext != "" {
		extra = "Sec-WebSocket-Extensions: " + ext + "\r\n"
	}
	return fmt.Appendf(nil, upgradeReq, "/app/"+key+"?protocol=7", "fake", extra)
}

// take101 removes the 101 from the output and returns its
// Sec-WebSocket-Extensions header.
func (f *fakeConn) take101() string {
	f.h.t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(f.out.Bytes())), nil)
	if err != nil || resp.StatusCode != 101 {
		f.h.t.Fatalf("no 101 in %q: %v", f.out.Bytes(), err)
	}
	end := bytes.Index(f.out.Bytes(), []byte("\r\n\r\n"))
	f.out.Next(end + 4)
	return resp.Header.Get("Sec-WebSocket-Extensions")
}

// takeRawFrame removes the next server frame and returns its RSV bits and
// payload, inflated when RSV1 is set.
func (f *fakeConn) takeRawFrame() (rsv byte, op ws.OpCode, payload []byte) {
	f.h.t.Helper()
	h, n, err := wsproto.ParseHeader(f.out.Bytes())
	if err != nil || n == 0 || int64(f.out.Len()-n) < h.Length {
		f.h.t.Fatalf("no complete server frame in %q", f.out.Bytes())
	}
	f.out.Next(n)
	p := append([]byte(nil), f.out.Next(int(h.Length))...)
	if h.Rsv&4 != 0 {
		r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
		out, err := io.ReadAll(r)
		if err != nil && err != io.ErrUnexpectedEOF {
			f.h.t.Fatalf("inflate: %v", err)
		}
		p = out
	}
	return h.Rsv, h.OpCode, p
}

// compressedFrames is msg as a compressed client message in frags frames.
func compressedFrames(t testing.TB, msg []byte, frags int) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.DefaultCompression)
	_, _ = w.Write(msg)
	_ = w.Flush()
	z := b.Bytes()[:b.Len()-4]
	var out []byte
	step := max(len(z)/frags, 1)
	for i := range frags {
		lo, hi := min(i*step, len(z)), min((i+1)*step, len(z))
		if i == frags-1 {
			hi = len(z)
		}
		op := ws.OpText
		if i > 0 {
			op = ws.OpContinuation
		}
		start := len(out)
		out = wsproto.AppendClientFrame(out, op, i == frags-1, z[lo:hi], testMask)
		if i == 0 {
			out[start] |= 0x40
		}
	}
	return out
}

func TestDeflateNegotiation(t *testing.T) {
	const acc = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	off := testApp()
	off.Key, off.ID = "off-key", "off-id"
	h := newHarness(t, pusher.Options{Apps: []*pusher.App{deflateApp(), off}})
	tests := []struct {
		name, key, ext, want string
	}{
		{"browser offer", testKey, "permessage-deflate; client_max_window_bits", acc},
		{"two offers, the first declined", testKey, "permessage-deflate; server_max_window_bits=9, permessage-deflate", acc},
		{"server bits 15", testKey, "permessage-deflate; server_max_window_bits=15", acc + "; server_max_window_bits=15"},
		{"malformed offer", testKey, "permessage-deflate; bogus", ""},
		{"malformed header", testKey, "permessage-deflate;;=,", ""},
		{"another extension", testKey, "x-webkit-deflate-frame", ""},
		{"no offer", testKey, "", ""},
		{"app without compression", "off-key", "permessage-deflate; client_max_window_bits", ""},
		{"unknown app", "nope", "permessage-deflate", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := h.dial(0)
			f.feed(deflateUpgrade(tc.key, tc.ext))
			if got := f.take101(); got != tc.want {
				t.Fatalf("Sec-WebSocket-Extensions %q, want %q", got, tc.want)
			}
			if tc.key == "nope" {
				return
			}
			f.expectEvent("pusher:connection_established")
			// A compressed subscribe works only when negotiated.
			f.feed(compressedFrames(t, []byte(subscribeMsg("news")), 1))
			if tc.want != "" {
				f.expectEvent("pusher_internal:subscription_succeeded")
				return
			}
			_, op, p := f.takeRawFrame()
			if code := ws.StatusCode(uint16(p[0])<<8 | uint16(p[1])); op != ws.OpClose || code != ws.StatusProtocolError {
				t.Fatalf("op %v code %d, want a 1002 close", op, code)
			}
			if !f.closed {
				t.Fatal("still open")
			}
		})
	}
}

// TestDeflateInboundLimits sends a decompression bomb (1009) and corrupt
// data (1007) on a negotiated connection.
func TestDeflateInboundLimits(t *testing.T) {
	h := newHarness(t, pusher.Options{Apps: []*pusher.App{deflateApp()}}) // max_message_size 10000
	for _, tc := range []struct {
		name string
		in   []byte
		code ws.StatusCode
	}{
		{"bomb", compressedFrames(t, bytes.Repeat([]byte{' '}, 4<<20), 1), ws.StatusMessageTooBig},
		{"fragmented bomb", compressedFrames(t, bytes.Repeat([]byte{' '}, 4<<20), 5), ws.StatusMessageTooBig},
		{"just over the limit", compressedFrames(t, bytes.Repeat([]byte{' '}, 10001), 1), ws.StatusMessageTooBig},
		{"corrupt", func() []byte {
			f := wsproto.AppendClientFrame(nil, ws.OpText, true, []byte{0xff, 0xfe, 0xfd}, testMask)
			f[0] |= 0x40
			return f
		}(), ws.StatusInvalidFramePayloadData},
		{"RSV1 on a continuation", func() []byte {
			a := wsproto.AppendClientFrame(nil, ws.OpText, false, []byte("{"), testMask)
			b := wsproto.AppendClientFrame(nil, ws.OpContinuation, true, []byte("}"), testMask)
			b[0] |= 0x40
			return append(a, b...)
		}(), ws.StatusProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := h.dial(0)
			f.feed(deflateUpgrade(testKey, "permessage-deflate"))
			if f.take101() == "" {
				t.Fatal("not negotiated")
			}
			f.expectEvent("pusher:connection_established")
			f.feed(tc.in)
			_, op, p := f.takeRawFrame()
			if code := ws.StatusCode(uint16(p[0])<<8 | uint16(p[1])); op != ws.OpClose || code != tc.code {
				t.Fatalf("op %v code %d, want a %d close", op, code, tc.code)
			}
			if !f.closed {
				t.Fatal("still open")
			}
		})
	}
	// The limit itself is accepted: a 10000-byte message (a pusher:ping
	// padded with spaces) gets its pong.
	f := h.dial(0)
	f.feed(deflateUpgrade(testKey, "permessage-deflate"))
	f.take101()
	f.expectEvent("pusher:connection_established")
	ping := `{"event":"pusher:ping","data":{}}`
	f.feed(compressedFrames(t, []byte(ping+strings.Repeat(" ", 10000-len(ping))), 3))
	f.expectEvent("pusher:pong")
}

// deflateInput is the client input of FuzzDeflateSplit's seeds: compressed
// subscribes (whole, fragmented, with a ping between fragments) and a plain
// one.
func deflateInput(t testing.TB) []byte {
	sub2 := compressedFrames(t, []byte(subscribeMsg("two")), 3)
	hd, n, _ := wsproto.ParseHeader(sub2)
	first := n + int(hd.Length)
	var in []byte
	in = append(in, compressedFrames(t, []byte(subscribeMsg("one")), 1)...)
	in = append(in, sub2[:first]...)
	in = append(in, wsproto.AppendClientFrame(nil, ws.OpPing, true, []byte("p"), testMask)...)
	in = append(in, sub2[first:]...)
	in = append(in, clientFrame(subscribeMsg("three"))...)
	in = append(in, compressedFrames(t, []byte(`{"event":"pusher:ping","data":{}}`), 2)...)
	return in
}

// FuzzDeflateSplit feeds compressed client input to a negotiated
// connection in reads split where the fuzzer says: the output must be the
// same as when the input comes in one read.
func FuzzDeflateSplit(f *testing.F) {
	in := deflateInput(f)
	f.Add(in, []byte{1, 7, 30, 2})
	f.Add(in, []byte{0})
	f.Add(in[:len(in)/2], []byte{50, 3})
	f.Add(append(in[:20:20], 0x40, 0x81, 0xff), []byte{5})
	f.Fuzz(func(t *testing.T, in, splits []byte) {
		run := func(chunks [][]byte) (string, bool) {
			h := newHarness(t, pusher.Options{Apps: []*pusher.App{deflateApp()}})
			c := h.dial(0)
			c.feed(deflateUpgrade(testKey, "permessage-deflate"))
			if c.take101() == "" {
				t.Fatal("not negotiated")
			}
			c.expectEvent("pusher:connection_established")
			for _, ch := range chunks {
				if c.closed {
					break
				}
				c.feed(ch)
			}
			return c.out.String(), c.closed
		}
		whole, wholeClosed := run([][]byte{in})
		var chunks [][]byte
		rest := in
		for _, s := range splits {
			n := min(int(s)%64+1, len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		chunks = append(chunks, rest)
		split, splitClosed := run(chunks)
		if whole != split || wholeClosed != splitClosed {
			t.Fatalf("split output\n%q (closed %v)\nwhole\n%q (closed %v)", split, splitClosed, whole, wholeClosed)
		}
	})
}

// TestDeflateSeedOutput checks what FuzzDeflateSplit's main seed produces.
func TestDeflateSeedOutput(t *testing.T) {
	h := newHarness(t, pusher.Options{Apps: []*pusher.App{deflateApp()}})
	c := h.dial(0)
	c.feed(deflateUpgrade(testKey, "permessage-deflate"))
	c.take101()
	c.expectEvent("pusher:connection_established")
	in := deflateInput(t)
	for i := range in {
		c.feed(in[i : i+1])
	}
	if e := c.expectEvent("pusher_internal:subscription_succeeded"); e.Channel != "one" {
		t.Fatalf("channel %q", e.Channel)
	}
	// The ping between the fragments of the second message is answered
	// before that message completes.
	if _, op, _ := c.takeRawFrame(); op != ws.OpPong {
		t.Fatalf("op %v, want a pong", op)
	}
	for _, ch := range []string{"two", "three"} {
		if e := c.expectEvent("pusher_internal:subscription_succeeded"); e.Channel != ch {
			t.Fatalf("channel %q", e.Channel)
		}
	}
	c.expectEvent("pusher:pong")
	c.expectNothing()
}

// TestDeflateRealClient connects gobwas/ws clients with wsflate to a real
// server, subscribes them, publishes a 1 KB event through the HTTP API and
// reads it compressed; a client without the extension reads it plain.
func TestDeflateRealClient(t *testing.T) {
	_, addr := startServer(t, pusher.Options{Apps: []*pusher.App{deflateApp()}}, Config{})
	type client struct {
		conn net.Conn
		r    io.Reader // conn, behind what Dial buffered
		z    bool
	}
	dialWS := func(offer bool) client {
		var ext wsflate.Extension
		ext.Parameters = wsflate.Parameters{ClientNoContextTakeover: true, ServerNoContextTakeover: true}
		d := ws.Dialer{Timeout: 5 * time.Second}
		if offer {
			d.Extensions = []httphead.Option{ext.Parameters.Option()}
		}
		conn, br, hs, err := d.Dial(context.Background(), "ws://"+addr+"/app/"+testKey+"?protocol=7")
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = conn
		if br != nil { // connection_established came with the 101
			r = br
		}
		for _, opt := range hs.Extensions {
			if _, err := ext.Negotiate(opt); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { conn.Close() })
		_, accepted := ext.Accepted()
		if accepted != offer {
			t.Fatalf("offer %v, accepted %v", offer, accepted)
		}
		return client{conn, r, accepted}
	}
	read := func(c client) (string, bool) {
		_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			h, err := ws.ReadHeader(c.r)
			if err != nil {
				t.Fatal(err)
			}
			z, err := wsflate.IsCompressed(h)
			if err != nil {
				t.Fatal(err)
			}
			var r io.Reader = io.LimitReader(c.r, h.Length)
			if z {
				r = wsflate.NewReader(r, func(r io.Reader) wsflate.Decompressor { return flate.NewReader(r) })
			}
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if h.OpCode == ws.OpText {
				return string(b), z
			}
		}
	}
	clients := []client{dialWS(true), dialWS(true), dialWS(false)}
	for _, c := range clients {
		if m, _ := read(c); !strings.Contains(m, "pusher:connection_established") {
			t.Fatalf("got %q", m)
		}
		// The subscribe goes compressed on negotiated connections.
		var buf bytes.Buffer
		msg := subscribeMsg("news") + strings.Repeat(" ", 300)
		if c.z {
			_, _ = buf.Write(compressedFrames(t, []byte(msg), 2))
		} else {
			_, _ = buf.Write(clientFrame(msg))
		}
		if _, err := c.conn.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		if m, _ := read(c); !strings.Contains(m, "subscription_succeeded") {
			t.Fatalf("got %q", m)
		}
	}
	data := strings.Repeat(`{\"symbol\":\"ABC\",\"price\":12.5,\"currency\":\"EUR\"},`, 20)
	body := `{"name":"update","channel":"news","data":"[` + data + `{}]"}`
	for round := range 20 {
		if code, resp := apiDo(t, addr, signedRequest("POST", "/apps/"+testAppID+"/events", body)); code != 200 {
			t.Fatalf("round %d: %d %s", round, code, resp)
		}
		for i, c := range clients {
			m, z := read(c)
			if z != c.z || !strings.Contains(m, `"event":"update"`) || !strings.Contains(m, `\"currency\":\"EUR\"`) {
				t.Fatalf("round %d client %d: compressed %v, %.80q", round, i, z, m)
			}
		}
	}
}
