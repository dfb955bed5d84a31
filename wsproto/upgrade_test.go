package wsproto

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
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

const want101 = "HTTP/1.1 101 Switching Protocols\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
	"X-Powered-By: Laravel Reverb\r\n" +
	"\r\n"

func TestUpgrade(t *testing.T) {
	tests := []struct {
		name       string
		head       string
		wantErr    bool
		wantStatus int
		wantExact  string   // full response, when set
		wantHeader []string // header lines the response must contain
	}{
		{
			name:       "RFC 6455 sample key",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "+sampleKey),
			wantErr:    false,
			wantStatus: 101,
			wantExact:  want101,
		},
		{
			name: "pusher-js request offering deflate and a subprotocol",
			head: strings.Replace(pusherJSRequest, "\r\n\r\n",
				"\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n", 1),
			wantErr:    false,
			wantStatus: 101,
			wantExact:  want101,
		},
		{
			name:       "wrong method",
			head:       handshake("POST", "HTTP/1.1", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "+sampleKey),
			wantErr:    true,
			wantStatus: 405,
			wantHeader: []string{"Connection: close"},
		},
		{
			name:       "missing key",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13"),
			wantErr:    true,
			wantStatus: 400,
			wantHeader: []string{"Connection: close"},
		},
		{
			name:       "short key",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: abc"),
			wantErr:    true,
			wantStatus: 400,
			wantHeader: []string{"Connection: close"},
		},
		{
			name:       "bad version",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 8", "Sec-WebSocket-Key: "+sampleKey),
			wantErr:    true,
			wantStatus: 426,
			wantHeader: []string{"Connection: close", "Sec-WebSocket-Version: 13"},
		},
		{
			name:       "missing version",
			head:       handshake("GET", "HTTP/1.1", "Sec-WebSocket-Key: "+sampleKey),
			wantErr:    true,
			wantStatus: 400,
			wantHeader: []string{"Connection: close"},
		},
		{
			name:       "HTTP/1.0",
			head:       handshake("GET", "HTTP/1.0", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "+sampleKey),
			wantErr:    true,
			wantStatus: 505,
			wantHeader: []string{"Connection: close"},
		},
		{
			name:       "malformed request line (no response from gobwas)",
			head:       "GET\r\n\r\n",
			wantErr:    true,
			wantStatus: 400,
			wantHeader: []string{"Connection: close"},
		},
		{
			name:       "truncated head",
			head:       "GET / HTTP/1.1\r\nHost: h\r\n",
			wantErr:    true,
			wantStatus: 400,
			wantHeader: []string{"Connection: close"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Upgrade([]byte(tc.head))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantExact != "" && string(res.Response) != tc.wantExact {
				t.Fatalf("response =\n%q\nwant\n%q", res.Response, tc.wantExact)
			}
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(res.Response)), nil)
			if err != nil {
				t.Fatalf("response %q does not parse: %v", res.Response, err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if resp.Header.Get("Sec-WebSocket-Extensions") != "" || resp.Header.Get("Sec-WebSocket-Protocol") != "" {
				t.Fatalf("response offers an extension or subprotocol: %q", res.Response)
			}
			for _, h := range tc.wantHeader {
				if !bytes.Contains(res.Response, []byte("\r\n"+h+"\r\n")) {
					t.Fatalf("response %q lacks %q", res.Response, h)
				}
			}
			if tc.wantErr {
				if bytes.Contains(res.Response, []byte("X-Powered-By")) {
					t.Fatalf("error response has X-Powered-By: %q", res.Response)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if resp.ContentLength != int64(len(body)) || len(body) == 0 {
					t.Fatalf("Content-Length %d, body %q", resp.ContentLength, body)
				}
			}
		})
	}
}

// TestUpgradeAfterParseRequest checks that Upgrade is given exactly the
// head found by ParseRequest.
func TestUpgradeAfterParseRequest(t *testing.T) {
	buf := []byte(handshake("GET", "HTTP/1.1", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: "+sampleKey) + "\x81\x80abcd")
	var r Request
	n, err := ParseRequest(buf, 8192, &r)
	if err != nil || n != len(buf)-6 {
		t.Fatalf("n = %d, err = %v", n, err)
	}
	res, err := Upgrade(buf[:r.HeadLen])
	if err != nil || string(res.Response) != want101 {
		t.Fatalf("err = %v, response %q", err, res.Response)
	}
	if string(buf[n:]) != "\x81\x80abcd" {
		t.Fatalf("frame bytes modified: %q", buf[n:])
	}
}
