package wsproto

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

func TestAppendResponse(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		head, tail string
		body       string
		want       string
	}{
		{
			name:   "body, head and tail",
			status: 405, head: "Content-Type: application/json\r\n", tail: "Allow: POST\r\nConnection: close\r\n",
			body: `{"error":"Method not allowed."}`,
			want: "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 31\r\n" +
				"Allow: POST\r\nConnection: close\r\n\r\n" + `{"error":"Method not allowed."}`,
		},
		{
			name:   "empty body",
			status: 200,
			want:   "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name:   "1xx has no Content-Length",
			status: 101, head: "Upgrade: websocket\r\nConnection: Upgrade\r\n", tail: "X-Powered-By: Laravel Reverb\r\n",
			want: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Powered-By: Laravel Reverb\r\n\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("previous")
			got := AppendResponse(prefix, tc.status, tc.head, []byte(tc.tail), []byte(tc.body))
			if string(got) != "previous"+tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, "previous"+tc.want)
			}
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got[len(prefix):])), nil)
			if err != nil {
				t.Fatalf("does not parse: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || string(body) != tc.body {
				t.Fatalf("parsed as %d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestAppendResponseDoesNotAllocate(t *testing.T) {
	dst := make([]byte, 0, 512)
	tail := []byte("Connection: keep-alive\r\n")
	body := []byte(`{"health":"OK"}`)
	if n := testing.AllocsPerRun(100, func() {
		dst = AppendResponse(dst[:0], 200, "Content-Type: application/json\r\n", tail, body)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
