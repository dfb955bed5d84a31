package wsproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

const sampleKey = "dGhlIHNhbXBsZSBub25jZQ=="

func handshake(method, version string, extra ...string) string {
	s := method + " /app/app-key?protocol=7&client=js&version=8.4.0 " + version + "\r\n" +
		"Host: localhost:8080\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n"
	for _, e := range extra {
		s += e + "\r\n"
	}
	return s + "\r\n"
}

// goodHandshake is a valid handshake with the extra header lines.
func goodHandshake(extra ...string) string {
	return handshake("GET", "HTTP/1.1", append([]string{"Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: " + sampleKey}, extra...)...)
}

const want101 = "HTTP/1.1 101 Switching Protocols\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
	"X-Powered-By: Laravel Reverb\r\n" +
	"\r\n"

// parseHead parses a complete upgrade request head.
func parseHead(t testing.TB, head string) *Request {
	t.Helper()
	var r Request
	n, err := ParseRequest([]byte(head), 8192, &r)
	if err != nil || n != len(head) || !r.IsUpgrade() {
		t.Fatalf("ParseRequest(%q) = %d, %v, upgrade %v", head, n, err, r.IsUpgrade())
	}
	return &r
}

func TestUpgrade(t *testing.T) {
	tests := []struct {
		name       string
		head       string
		wantErr    error
		wantStatus int
		wantExact  string   // full response, when set
		wantHeader []string // header lines the response must contain
	}{
		{
			name:       "RFC 6455 sample key",
			head:       goodHandshake(),
			wantStatus: 101,
			wantExact:  want101,
		},
		{
			name: "pusher-js request offering deflate and a subprotocol",
			head: strings.Replace(pusherJSRequest, "\r\n\r\n",
				"\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n", 1),
			wantStatus: 101,
			wantExact:  want101,
		},
		{
			name:       "header names and Upgrade value in any case",
			head:       "GET /app/k HTTP/1.1\r\nhost: h\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, UPGRADE\r\nsec-websocket-version: 13\r\nSEC-WEBSOCKET-KEY: " + sampleKey + "\r\n\r\n",
			wantStatus: 101,
			wantExact:  want101,
		},
		{
			name:       "identical repeats",
			head:       goodHandshake("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "+sampleKey),
			wantStatus: 101,
			wantExact:  want101,
		},
		{
			name:       "wrong method",
			head:       handshake("POST", "HTTP/1.1", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "+sampleKey),
			wantErr:    ws.ErrHandshakeBadMethod,
			wantStatus: 405,
		},
		{
			name:       "HTTP/1.0",
			head:       handshake("GET", "HTTP/1.0", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "+sampleKey),
			wantErr:    ws.ErrHandshakeBadProtocol,
			wantStatus: 505,
		},
		{
			name:       "missing key",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13"),
			wantErr:    ws.ErrHandshakeBadSecKey,
			wantStatus: 400,
		},
		{
			name:       "empty key",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "),
			wantErr:    ws.ErrHandshakeBadSecKey,
			wantStatus: 400,
		},
		{
			name:       "short key",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: abc"),
			wantErr:    ws.ErrHandshakeBadSecKey,
			wantStatus: 400,
		},
		{
			name:       "key of 24 bytes that is not base64",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!"),
			wantErr:    ws.ErrHandshakeBadSecKey,
			wantStatus: 400,
		},
		{
			name:       "key of 24 bytes that is base64 of 17 bytes",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQA="),
			wantErr:    ws.ErrHandshakeBadSecKey,
			wantStatus: 400,
		},
		{
			name:       "a malformed key is reported before the method",
			head:       handshake("POST", "HTTP/1.0", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: abc"),
			wantErr:    ws.ErrHandshakeBadSecKey,
			wantStatus: 400,
		},
		{
			name:       "two different keys",
			head:       goodHandshake("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="),
			wantErr:    ws.ErrHandshakeBadSecKey,
			wantStatus: 400,
		},
		{
			name:       "bad version",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 8", "Sec-WebSocket-Key: "+sampleKey),
			wantErr:    ws.ErrHandshakeUpgradeRequired,
			wantStatus: 426,
			wantHeader: []string{"Sec-WebSocket-Version: 13"},
		},
		{
			name:       "empty version",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: ", "Sec-WebSocket-Key: "+sampleKey),
			wantErr:    ws.ErrHandshakeUpgradeRequired,
			wantStatus: 426,
			wantHeader: []string{"Sec-WebSocket-Version: 13"},
		},
		{
			name:       "a second, different version",
			head:       goodHandshake("Sec-WebSocket-Version: 8"),
			wantErr:    ws.ErrHandshakeUpgradeRequired,
			wantStatus: 426,
			wantHeader: []string{"Sec-WebSocket-Version: 13"},
		},
		{
			name:       "missing version",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Key: "+sampleKey),
			wantErr:    ws.ErrHandshakeBadSecVersion,
			wantStatus: 400,
		},
		{
			name:       "Upgrade: h2c",
			head:       "GET /app/k HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + sampleKey + "\r\n\r\n",
			wantErr:    ws.ErrHandshakeBadUpgrade,
			wantStatus: 400,
		},
		{
			name:       "a second Upgrade header that is not websocket",
			head:       goodHandshake("Upgrade: h2c"),
			wantErr:    ws.ErrHandshakeBadUpgrade,
			wantStatus: 400,
		},
		{
			name:       "Connection without upgrade",
			head:       "GET /app/k HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + sampleKey + "\r\n\r\n",
			wantErr:    ws.ErrHandshakeBadConnection,
			wantStatus: 400,
		},
		{
			name:       "a second Connection header without upgrade",
			head:       goodHandshake("Connection: keep-alive"),
			wantErr:    ws.ErrHandshakeBadConnection,
			wantStatus: 400,
		},
		{
			name:       "missing Connection",
			head:       "GET /app/k HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + sampleKey + "\r\n\r\n",
			wantErr:    ws.ErrHandshakeBadConnection,
			wantStatus: 400,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Upgrade([]byte("previous"), parseHead(t, tc.head))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !bytes.HasPrefix(out, []byte("previous")) {
				t.Fatalf("dst not appended to: %q", out)
			}
			out = out[len("previous"):]
			if tc.wantExact != "" && string(out) != tc.wantExact {
				t.Fatalf("response =\n%q\nwant\n%q", out, tc.wantExact)
			}
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			if err != nil {
				t.Fatalf("response %q does not parse: %v", out, err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if resp.Header.Get("Sec-WebSocket-Extensions") != "" || resp.Header.Get("Sec-WebSocket-Protocol") != "" {
				t.Fatalf("response offers an extension or subprotocol: %q", out)
			}
			for _, h := range tc.wantHeader {
				if !bytes.Contains(out, []byte("\r\n"+h+"\r\n")) {
					t.Fatalf("response %q lacks %q", out, h)
				}
			}
			if tc.wantErr != nil {
				if bytes.Contains(out, []byte("X-Powered-By")) || !bytes.Contains(out, []byte("\r\nConnection: close\r\n")) {
					t.Fatalf("error response %q", out)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if resp.ContentLength != int64(len(body)) || string(body) != tc.wantErr.Error() {
					t.Fatalf("Content-Length %d, body %q", resp.ContentLength, body)
				}
			}
		})
	}
}

// TestUpgradeAccept checks Sec-WebSocket-Accept against gobwas/ws's
// handshake for many keys.
func TestUpgradeAccept(t *testing.T) {
	for i := range 200 {
		raw := make([]byte, 16)
		for j := range raw {
			raw[j] = byte(i*31 + j*7)
		}
		key := base64Std(raw)
		head := handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "+key)
		out, err := Upgrade(nil, parseHead(t, head))
		if err != nil {
			t.Fatal(err)
		}
		status, want := gobwasUpgrade([]byte(head))
		if status != 101 || string(out) != string(want) {
			t.Fatalf("key %s: got\n%q\ngobwas/ws answers\n%q", key, out, want)
		}
	}
}

func TestUpgradeAllocs(t *testing.T) {
	r := parseHead(t, pusherJSRequest)
	dst := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Upgrade(dst[:0], r); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Upgrade allocates %v times", n)
	}
}

// TestUpgradeAfterParseRequest checks the handshake of a head followed by a
// pipelined frame: Upgrade needs only the parsed request.
func TestUpgradeAfterParseRequest(t *testing.T) {
	buf := []byte(goodHandshake() + "\x81\x80abcd")
	var r Request
	n, err := ParseRequest(buf, 8192, &r)
	if err != nil || n != len(buf)-6 {
		t.Fatalf("n = %d, err = %v", n, err)
	}
	out, err := Upgrade(nil, &r)
	if err != nil || string(out) != want101 {
		t.Fatalf("err = %v, response %q", err, out)
	}
	if string(buf[n:]) != "\x81\x80abcd" {
		t.Fatalf("frame bytes modified: %q", buf[n:])
	}
}
