package wsproto

import (
	"errors"
	"strings"
	"testing"
)

// pusherJSRequest is an upgrade request as sent by Chrome running pusher-js.
const pusherJSRequest = "GET /app/app-key?protocol=7&client=js&version=8.4.0&flash=false HTTP/1.1\r\n" +
	"Host: localhost:8080\r\n" +
	"Connection: Upgrade\r\n" +
	"Pragma: no-cache\r\n" +
	"Cache-Control: no-cache\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n" +
	"Upgrade: websocket\r\n" +
	"Origin: http://localhost:3000\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" +
	"\r\n"

type requestCase struct {
	name    string
	in      string
	max     int // 0 means 8192
	wantN   int
	wantErr error
	want    Request // checked only when wantErr == nil and wantN > 0
}

var requestCases = []requestCase{
	{
		name:  "pusher-js upgrade",
		in:    pusherJSRequest,
		wantN: len(pusherJSRequest),
		want: Request{
			Method:                 "GET",
			RawPath:                "/app/app-key",
			Path:                   "/app/app-key",
			RawQuery:               "protocol=7&client=js&version=8.4.0&flash=false",
			ProtoMinor:             1,
			Origin:                 "http://localhost:3000",
			Upgrade:                "websocket",
			SecWebSocketKey:        "dGhlIHNhbXBsZSBub25jZQ==",
			SecWebSocketVersion:    "13",
			SecWebSocketExtensions: "permessage-deflate; client_max_window_bits",
			ContentLength:          -1,
			KeepAlive:              true,
		},
	},
	{
		name:  "pipelined bytes after the head are not counted",
		in:    "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
		wantN: 28,
		want: Request{
			Method:        "GET",
			RawPath:       "/a",
			Path:          "/a",
			ProtoMinor:    1,
			ContentLength: -1,
			KeepAlive:     true,
		},
	},
	{
		name:  "frame bytes after an upgrade head are not counted",
		in:    "GET /app/k HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n\x81\x85abcd",
		wantN: 52,
		want: Request{
			Method:        "GET",
			RawPath:       "/app/k",
			Path:          "/app/k",
			ProtoMinor:    1,
			Upgrade:       "websocket",
			ContentLength: -1,
			KeepAlive:     true,
		},
	},
	{
		name:  "POST with body and mixed-case names",
		in:    "POST /apps/1/events?auth_key=k&auth_signature=s HTTP/1.1\r\nHOST: api.test\r\ncontent-TYPE: application/json\r\nContent-Length: 42\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\r\n{\"name\":\"x\"}",
		wantN: 165,
		want: Request{
			Method:        "POST",
			RawPath:       "/apps/1/events",
			Path:          "/apps/1/events",
			RawQuery:      "auth_key=k&auth_signature=s",
			ProtoMinor:    1,
			ContentLength: 42,
			KeepAlive:     true,
		},
	},
	{
		name:  "LF-only line ends",
		in:    "GET /x?y HTTP/1.1\nHost: h\nOrigin:  o \n\n",
		wantN: 39,
		want: Request{
			Method:        "GET",
			RawPath:       "/x",
			Path:          "/x",
			RawQuery:      "y",
			ProtoMinor:    1,
			Origin:        "o",
			ContentLength: -1,
			KeepAlive:     true,
		},
	},
	{
		name:  "percent-decoded path, query left raw",
		in:    "GET /app/a%20b%2Fc?x=%zz HTTP/1.1\r\nHost: h\r\n\r\n",
		wantN: 46,
		want: Request{
			Method:        "GET",
			RawPath:       "/app/a%20b%2Fc",
			Path:          "/app/a b/c",
			RawQuery:      "x=%zz",
			ProtoMinor:    1,
			ContentLength: -1,
			KeepAlive:     true,
		},
	},
	{
		name:  "HTTP/1.0 without Connection is not keep-alive",
		in:    "GET / HTTP/1.0\r\n\r\n",
		wantN: 18,
		want: Request{
			Method:        "GET",
			RawPath:       "/",
			Path:          "/",
			ProtoMinor:    0,
			ContentLength: -1,
			KeepAlive:     false,
		},
	},
	{
		name:  "HTTP/1.0 with keep-alive",
		in:    "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
		wantN: 42,
		want: Request{
			Method:        "GET",
			RawPath:       "/",
			Path:          "/",
			ProtoMinor:    0,
			ContentLength: -1,
			KeepAlive:     true,
		},
	},
	{
		name:  "HTTP/1.0 keep-alive and close in two headers",
		in:    "GET / HTTP/1.0\r\nConnection: keep-alive\r\nconnection: foo, CLOSE\r\n\r\n",
		wantN: 66,
		want: Request{
			Method:        "GET",
			RawPath:       "/",
			Path:          "/",
			ProtoMinor:    0,
			ContentLength: -1,
			KeepAlive:     false,
		},
	},
	{
		name:  "HTTP/1.1 with close",
		in:    "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		wantN: 46,
		want: Request{
			Method:        "GET",
			RawPath:       "/",
			Path:          "/",
			ProtoMinor:    1,
			ContentLength: -1,
			KeepAlive:     false,
		},
	},
	{
		name:  "identical repeated Content-Length",
		in:    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nContent-Length:7\r\n\r\n",
		wantN: 65,
		want: Request{
			Method:        "POST",
			RawPath:       "/",
			Path:          "/",
			ProtoMinor:    1,
			ContentLength: 7,
			KeepAlive:     true,
		},
	},
	{
		name:  "Content-Length zero",
		in:    "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		wantN: 47,
		want: Request{
			Method:        "POST",
			RawPath:       "/",
			Path:          "/",
			ProtoMinor:    1,
			ContentLength: 0,
			KeepAlive:     true,
		},
	},
	{
		name:  "chunked transfer encoding",
		in:    "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
		wantN: 62,
		want: Request{
			Method:        "POST",
			RawPath:       "/",
			Path:          "/",
			ProtoMinor:    1,
			ContentLength: -1,
			Chunked:       true,
			KeepAlive:     true,
		},
	},
	{
		name:  "empty header values are kept",
		in:    "GET / HTTP/1.1\r\nHost:\r\nOrigin:\r\n\r\n",
		wantN: 34,
		want: Request{
			Method:        "GET",
			RawPath:       "/",
			Path:          "/",
			ProtoMinor:    1,
			ContentLength: -1,
			KeepAlive:     true,
		},
	},
	{
		name:  "first of repeated headers wins",
		in:    "GET / HTTP/1.1\r\nHost: h\r\nOrigin: a\r\nOrigin: b\r\nSec-WebSocket-Key: k1\r\nSec-WebSocket-Key: k2\r\n\r\n",
		wantN: 95,
		want: Request{
			Method:          "GET",
			RawPath:         "/",
			Path:            "/",
			ProtoMinor:      1,
			Origin:          "a",
			SecWebSocketKey: "k1",
			ContentLength:   -1,
			KeepAlive:       true,
		},
	},
	{
		name:  "head of exactly max bytes",
		in:    "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		max:   27,
		wantN: 27,
		want: Request{
			Method:        "GET",
			RawPath:       "/",
			Path:          "/",
			ProtoMinor:    1,
			ContentLength: -1,
			KeepAlive:     true,
		},
	},

	// Need more bytes.
	{name: "empty input", in: ""},
	{name: "partial request line", in: "GET /app/k"},
	{name: "partial headers", in: "GET / HTTP/1.1\r\nHost: h\r\n"},
	{name: "missing final LF", in: "GET / HTTP/1.1\r\nHost: h\r\n\r"},

	// Too large.
	{name: "no end within max", in: "GET / HTTP/1.1\r\nHost: h\r\n\r\n", max: 26, wantErr: ErrHeadTooLarge},
	{name: "long header line", in: "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 100), max: 64, wantErr: ErrHeadTooLarge},
	{name: "max reached exactly without end", in: strings.Repeat("a", 64), max: 64, wantErr: ErrHeadTooLarge},

	// Bad request line.
	{name: "empty request line", in: "\r\nGET / HTTP/1.1\r\n\r\n", wantErr: ErrBadRequest},
	{name: "no version", in: "GET /\r\n\r\n", wantErr: ErrBadRequest},
	{name: "double space", in: "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "trailing space", in: "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "HTTP/2.0", in: "GET / HTTP/2.0\r\nHost: h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "HTTP/1.2", in: "GET / HTTP/1.2\r\nHost: h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "lower-case version", in: "GET / http/1.1\r\nHost: h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "bad method char", in: "G@T / HTTP/1.1\r\nHost: h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "control char in target", in: "GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "rejected before the head is complete", in: "GARBAGE\r\n", wantErr: ErrBadRequest},

	// Bad headers.
	{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", wantErr: ErrBadRequest},
	{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "no colon", in: "GET / HTTP/1.1\r\nHost h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "empty name", in: "GET / HTTP/1.1\r\n: h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "bare CR in value", in: "GET / HTTP/1.1\r\nHost: h\rx\r\n\r\n", wantErr: ErrBadRequest},
	{name: "NUL in value", in: "GET / HTTP/1.1\r\nHost: h\x00\r\n\r\n", wantErr: ErrBadRequest},
	{name: "missing Host in HTTP/1.1", in: "GET / HTTP/1.1\r\nOrigin: o\r\n\r\n", wantErr: ErrBadRequest},
	{name: "duplicate Host", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", wantErr: ErrBadRequest},
	{name: "negative Content-Length", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", wantErr: ErrBadRequest},
	{name: "signed Content-Length", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n", wantErr: ErrBadRequest},
	{name: "empty Content-Length", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", wantErr: ErrBadRequest},
	{name: "non-numeric Content-Length", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1a\r\n\r\n", wantErr: ErrBadRequest},
	{name: "Content-Length list", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", wantErr: ErrBadRequest},
	{name: "Content-Length overflow", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n", wantErr: ErrBadRequest},
	{name: "conflicting Content-Length", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", wantErr: ErrBadRequest},
	{name: "Transfer-Encoding without chunked last", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", wantErr: ErrBadRequest},
	{name: "truncated escape", in: "GET /a%2 HTTP/1.1\r\nHost: h\r\n\r\n", wantErr: ErrBadRequest},
	{name: "non-hex escape", in: "GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n", wantErr: ErrBadRequest},
}

func TestParseRequest(t *testing.T) {
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = 8192
			}
			var r Request
			n, err := ParseRequest([]byte(tc.in), max, &r)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if n != tc.wantN {
				t.Fatalf("n = %d, want %d", n, tc.wantN)
			}
			if err == nil && n > 0 && withoutHS(r) != tc.want {
				t.Fatalf("request =\n%+v\nwant\n%+v", r, tc.want)
			}
		})
	}
}

// TestParseRequestEveryPrefix checks that every strict prefix of a complete
// head asks for more bytes (or fails the same way) and that the full input
// gives the same result.
func TestParseRequestEveryPrefix(t *testing.T) {
	for _, tc := range requestCases {
		if tc.wantErr != nil || tc.wantN == 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			for i := 0; i < tc.wantN; i++ {
				var r Request
				n, err := ParseRequest(in[:i], 8192, &r)
				if n != 0 || err != nil {
					t.Fatalf("prefix %d: n = %d, err = %v, want 0, nil", i, n, err)
				}
			}
			for i := tc.wantN; i <= len(in); i++ {
				var r Request
				n, err := ParseRequest(in[:i], 8192, &r)
				if n != tc.wantN || err != nil || withoutHS(r) != tc.want {
					t.Fatalf("prefix %d: n = %d, err = %v, r = %+v", i, n, err, r)
				}
			}
		})
	}
}

// withoutHS returns r without the handshake facts gathered for Upgrade,
// which TestUpgrade checks.
func withoutHS(r Request) Request {
	r.hs = 0
	return r
}

func TestParseRequestResets(t *testing.T) {
	r := Request{Origin: "stale", Chunked: true, KeepAlive: true}
	n, err := ParseRequest([]byte("GET / HTTP/1."), 8192, &r)
	if n != 0 || err != nil {
		t.Fatalf("n = %d, err = %v", n, err)
	}
	if r.Origin != "" || r.Chunked || r.KeepAlive || r.ContentLength != -1 {
		t.Fatalf("request not reset: %+v", r)
	}
}

func TestParseRequestDoesNotAliasBuffer(t *testing.T) {
	buf := []byte("GET /app/key?x=1 HTTP/1.1\r\nHost: host\r\nOrigin: https://o.example\r\n\r\n")
	var r Request
	if _, err := ParseRequest(buf, 8192, &r); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'X'
	}
	if r.RawPath != "/app/key" || r.RawQuery != "x=1" || r.Path != "/app/key" || r.Origin != "https://o.example" {
		t.Fatalf("fields changed with the buffer: %+v", r)
	}
}

func TestParseRequestAllocs(t *testing.T) {
	buf := []byte(pusherJSRequest)
	var r Request
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseRequest(buf, 8192, &r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("ParseRequest allocates %v times, want <= 1", allocs)
	}
}

func TestIsUpgrade(t *testing.T) {
	if !(&Request{Upgrade: "websocket"}).IsUpgrade() {
		t.Fatal("IsUpgrade = false with an Upgrade header")
	}
	if (&Request{}).IsUpgrade() {
		t.Fatal("IsUpgrade = true without an Upgrade header")
	}
}

func TestValidFieldValue(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := c >= ' ' && c != 0x7f || c == '\t'
		for _, pos := range []int{0, 3, 7, 8, 12, 19} {
			v := []byte("abcdefgh\xc3\xa9ijklmnop\x80\xff")
			v[pos] = byte(c)
			if got := validFieldValue(v); got != want {
				t.Fatalf("byte %#x at %d: valid = %v, want %v", c, pos, got, want)
			}
		}
	}
}
