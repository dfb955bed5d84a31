package loop

// Hostile-client tests: scanners, broken clients and attackers against a real
// in-process server. Each test asserts (1) the documented answer (HTTP status,
// pusher:error code or WebSocket close code), (2) that a bystander, connected
// and subscribed before the attack, still receives an event triggered through
// the HTTP API while or right after the attack runs, and (3) for the attacks
// that could make the server allocate without bound, that the connection is
// cut before the attacker finished sending and that the heap stays bounded.
//
// The tests do not run in parallel: heap growth is measured on the whole
// process, and the floods would starve each other under -race.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
)

const mib = 1 << 20

// ---------------------------------------------------------------------------
// helpers

// bystander is a well-behaved client connected and subscribed to the channel
// "bystander" before an attack starts.
type bystander struct {
	t    testing.TB
	addr string
	c    *wsClient
	seq  int
}

func newBystander(t testing.TB, addr string) *bystander {
	t.Helper()
	c := connect(t, addr, testKey, "")
	c.established()
	c.subscribe("bystander")
	return &bystander{t: t, addr: addr, c: c}
}

// served triggers an event on the bystander's channel through the HTTP API
// and fails the test unless the bystander receives it within 5 s.
func (b *bystander) served() {
	b.t.Helper()
	b.seq++
	want := fmt.Sprintf(`{"seq":%d}`, b.seq)
	body := fmt.Sprintf(`{"name":"tick","channel":"bystander","data":%q}`, want)
	if code, resp := apiDo(b.t, b.addr, signedRequest("POST", "/apps/"+testAppID+"/events", body)); code != 200 {
		b.t.Fatalf("bystander trigger: %d %s", code, resp)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := b.c.tryRead(time.Until(deadline))
		if err != nil {
			b.t.Fatalf("bystander did not receive event %d: %v", b.seq, err)
		}
		if f.op != ws.OpText {
			continue // a pong or ping the test provoked
		}
		var e event
		if err := json.Unmarshal(f.payload, &e); err != nil {
			b.t.Fatalf("bystander got bad JSON %q", f.payload)
		}
		if e.Event == "pusher:ping" {
			continue
		}
		if e.Event != "tick" || e.Channel != "bystander" || e.DataString() != want {
			b.t.Fatalf("bystander got %s %s %s, want tick %s", e.Event, e.Channel, e.Data, want)
		}
		return
	}
}

// apiDo sends one raw request on a fresh connection, reads one response and
// closes the connection at once (so that connection counts settle).
func apiDo(t testing.TB, addr, req string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, bufio.NewReader(c))
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s; last state: %s", d, what, state)
		}
		time.Sleep(10 * time.Millisecond) // polling interval of a deadline wait
	}
}

// eventually is waitFor that reports a failure with t.Errorf and lets the
// test go on; it returns whether cond held.
func eventually(t testing.TB, d time.Duration, what string, cond func() (bool, string)) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("after %v: %s; last state: %s", d, what, state)
			return false
		}
		time.Sleep(10 * time.Millisecond) // polling interval of a deadline wait
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func stats(srv *Server) Stats {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Stats(ctx)
}

// heapAfterGC returns the live heap after two collections.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// assertHeapGrowth fails when the live heap grew by more than limit since
// before.
func assertHeapGrowth(t testing.TB, before uint64, limit int64, what string) {
	t.Helper()
	after := heapAfterGC()
	growth := int64(after) - int64(before)
	t.Logf("%s: heap %d KiB -> %d KiB (growth %d KiB)", what, before>>10, after>>10, growth>>10)
	if growth > limit {
		t.Errorf("%s: heap grew by %d MiB, want < %d MiB", what, growth/mib, limit/mib)
	}
}

// stream writes chunk repeatedly until total bytes are sent or a write fails.
// A write that blocks for 5 s (the server stopped reading without closing)
// is reported as os.ErrDeadlineExceeded.
func stream(c net.Conn, chunk []byte, total int64) (int64, error) {
	var sent int64
	for sent < total {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Write(chunk)
		sent += int64(n)
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

type streamResult struct {
	sent int64
	err  error
}

// streamAsync runs stream on its own goroutine.
func streamAsync(c net.Conn, chunk []byte, total int64) <-chan streamResult {
	ch := make(chan streamResult, 1)
	go func() {
		n, err := stream(c, chunk, total)
		ch <- streamResult{n, err}
	}()
	return ch
}

// expectCutOff waits for a streamer and fails unless the server ended the
// connection before total bytes were sent.
func expectCutOff(t testing.TB, res <-chan streamResult, total int64, what string) streamResult {
	t.Helper()
	select {
	case r := <-res:
		switch {
		case r.err == nil:
			t.Errorf("%s: the server read all %d MiB; it should have closed the connection first", what, total/mib)
		case errors.Is(r.err, os.ErrDeadlineExceeded):
			t.Errorf("%s: the server stopped reading after %d KiB but kept the connection open", what, r.sent>>10)
		case !isConnGone(r.err):
			t.Errorf("%s: write error %v", what, r.err)
		default:
			t.Logf("%s: cut off after %d KiB of %d MiB", what, r.sent>>10, total/mib)
		}
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still sending after 30 s", what)
		return streamResult{}
	}
}

// isConnGone reports whether err means the peer closed or reset the
// connection.
func isConnGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// expectClosed reads until the server ends the connection (FIN or RST)
// within d and returns what was read.
func expectClosed(t testing.TB, c net.Conn, r io.Reader, d time.Duration) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var buf bytes.Buffer
	_, err := io.Copy(&buf, r)
	if err != nil && !isConnGone(err) {
		t.Fatalf("expected the server to close the connection within %v, got %v after %q", d, err, truncateBytes(buf.Bytes(), 200))
	}
	return buf.Bytes()
}

func truncateBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// dialSmallRcvBuf dials with SO_RCVBUF set to 4096 before connecting, so
// that the advertised window stays small: a client that does not read makes
// the server buffer what it sends.
func dialSmallRcvBuf(t testing.TB, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connectConn upgrades an already dialled connection.
func connectConn(t testing.TB, c net.Conn, addr string) *wsClient {
	t.Helper()
	fmt.Fprintf(c, upgradeReq, "/app/"+testKey+"?protocol=7&client=js&version=8.4.0", addr, "")
	cl := &wsClient{t: t, conn: c, r: bufio.NewReader(c)}
	cl.expect101()
	return cl
}

// rawFrame builds a client frame from its first byte (FIN, RSV, opcode),
// masked with testMask, declaring len(payload).
func rawFrame(b0 byte, payload []byte) []byte {
	b := rawHeader(b0, uint64(len(payload)), true)
	p := append([]byte(nil), payload...)
	for i := range p {
		p[i] ^= testMask[i%4]
	}
	return append(b, p...)
}

// rawHeader builds a frame header declaring length, without a payload.
func rawHeader(b0 byte, length uint64, masked bool) []byte {
	b := []byte{b0, 0}
	var m byte
	if masked {
		m = 0x80
	}
	switch {
	case length <= 125:
		b[1] = m | byte(length)
	case length <= 0xffff:
		b[1] = m | 126
		b = binary.BigEndian.AppendUint16(b, uint16(length))
	default:
		b[1] = m | 127
		b = binary.BigEndian.AppendUint64(b, length)
	}
	if masked {
		b = append(b, testMask[:]...)
	}
	return b
}

// closeOrReset reads frames until a close frame and returns its code, or
// reset = true when the connection ends first. When the server closes a
// socket the attacker is still writing to, the kernel answers with a RST
// that may discard what the server sent last: streaming attacks accept that,
// and the tests assert the exact close code on a bounded attack elsewhere.
func (c *wsClient) closeOrReset() (code ws.StatusCode, reset bool) {
	for {
		f, err := c.tryRead(10 * time.Second)
		if err != nil {
			if !isConnGone(err) && !errors.Is(err, io.ErrUnexpectedEOF) {
				c.t.Fatalf("reading: %v", err)
			}
			return 0, true
		}
		if f.op == ws.OpClose {
			if len(f.payload) < 2 {
				return ws.StatusNoStatusRcvd, false
			}
			return ws.StatusCode(binary.BigEndian.Uint16(f.payload)), false
		}
	}
}

// closedOrReset is expectClosed for streaming attacks: the connection may
// end with a RST, which can discard the server's last bytes.
func closedOrReset(t testing.TB, c net.Conn, r io.Reader) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf bytes.Buffer
	_, err := io.Copy(&buf, r)
	if err != nil && !isConnGone(err) {
		t.Fatalf("expected the server to close the connection, got %v", err)
	}
	return buf.Bytes()
}

// errData is the data of a pusher:error.
type errData struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// expectError reads a pusher:error with code (and message unless empty).
func (c *wsClient) expectError(code int, msg string) {
	c.t.Helper()
	e := c.expectEvent("pusher:error")
	var d errData
	if err := json.Unmarshal([]byte(e.DataString()), &d); err != nil {
		c.t.Fatalf("pusher:error data %s: %v", e.Data, err)
	}
	if d.Code != code || (msg != "" && d.Message != msg) {
		c.t.Fatalf("pusher:error %d %q, want %d %q", d.Code, d.Message, code, msg)
	}
}

// expectSubscriptionError reads pusher:subscription_error for channel with
// the HTTP-like status, then the pusher:error with code and message.
func (c *wsClient) expectSubscriptionError(channel string, status, code int, msg string) {
	c.t.Helper()
	e := c.expectEvent("pusher:subscription_error")
	var d struct {
		Type   string `json:"type"`
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal([]byte(e.DataString()), &d); err != nil {
		c.t.Fatalf("subscription_error data %s: %v", e.Data, err)
	}
	if e.Channel != channel || d.Status != status || d.Error != msg {
		c.t.Fatalf("subscription_error on %q: %+v, want channel %q status %d error %q", e.Channel, d, channel, status, msg)
	}
	c.expectError(code, msg)
}

// stillServed checks that the attacker's own connection still works.
func (c *wsClient) stillServed() {
	c.t.Helper()
	c.send(`{"event":"pusher:ping"}`)
	c.expectEvent("pusher:pong")
}

func subscribeMsg(channel string) string {
	b, _ := json.Marshal(map[string]any{"event": "pusher:subscribe", "data": map[string]string{"channel": channel}})
	return string(b)
}

func subscribeAuthMsg(channel, auth, channelData string) string {
	d := map[string]string{"channel": channel, "auth": auth}
	if channelData != "" {
		d["channel_data"] = channelData
	}
	b, _ := json.Marshal(map[string]any{"event": "pusher:subscribe", "data": d})
	return string(b)
}

// isolated runs body in a child process (this test binary, re-executed for
// this test only) when an attack may crash the server: a panic on an event
// loop ends the whole process, and would otherwise take every other test of
// the package down with it. Top-level tests only.
func isolated(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	const env = "REVERB_HOSTILE_CHILD"
	if os.Getenv(env) == t.Name() {
		body(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err == nil {
		if testing.Verbose() {
			t.Logf("child process:\n%s", out)
		}
		return
	}
	if i := bytes.Index(out, []byte("\npanic: ")); i >= 0 {
		t.Fatalf("the server process crashed: %v\n%s", err, truncateBytes(out[i+1:], 3000))
	}
	t.Fatalf("child process: %v\n%s", err, out)
}

// ---------------------------------------------------------------------------
// HTTP-level attacks

func TestHostileGarbageInsteadOfHTTP(t *testing.T) {
	const hsTimeout = 300 * time.Millisecond
	srv, addr := startServer(t, pusher.Options{}, Config{HandshakeTimeout: hsTimeout})
	b := newBystander(t, addr)

	tlsHello := []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03}
	tlsHello = append(tlsHello, bytes.Repeat([]byte{0x5c}, 160)...) // no '\n' anywhere
	cases := []struct {
		name   string
		req    []byte
		status int // 0: closed without an answer after handshake_timeout
	}{
		{"binary with CRLF", []byte("\x00\x01\x02\xff\xfe\r\n\r\n"), 400},
		{"SSH banner", []byte("SSH-2.0-OpenSSH_9.6\r\n"), 400},
		{"HTTP/2 preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400},
		{"HTTP/0.9", []byte("GET /\r\n"), 400},
		{"unknown version", []byte("GET / HTTP/9.9\r\nHost: x\r\n\r\n"), 400},
		{"double space", []byte("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
		{"header without colon", []byte("GET /up HTTP/1.1\r\nHost x\r\n\r\n"), 400},
		{"NUL in header value", []byte("GET /up HTTP/1.1\r\nHost: x\x00y\r\n\r\n"), 400},
		{"obs-fold", []byte("GET /up HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"), 400},
		{"space before colon", []byte("GET /up HTTP/1.1\r\nHost : x\r\n\r\n"), 400},
		{"HTTP/1.1 without Host", []byte("GET /up HTTP/1.1\r\n\r\n"), 400},
		{"two Host headers", []byte("GET /up HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400},
		{"bad percent escape", []byte("GET /app/%zz HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
		{"control char in target", []byte("GET /up\x7f HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
		{"TLS ClientHello (no newline)", tlsHello, 0},
		{"10 KB without newline", bytes.Repeat([]byte("A"), 10001), 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			start := time.Now()
			if _, err := c.Write(tc.req); err != nil {
				t.Fatal(err)
			}
			out := expectClosed(t, c, c, hsTimeout+3*time.Second)
			if tc.status == 0 {
				if len(out) != 0 {
					t.Fatalf("expected a silent close, got %q", truncateBytes(out, 200))
				}
				if el := time.Since(start); el < hsTimeout*9/10 {
					t.Fatalf("closed after %v, before handshake_timeout %v", el, hsTimeout)
				}
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			if err != nil {
				t.Fatalf("no HTTP answer: %v (%q)", err, truncateBytes(out, 200))
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if !resp.Close {
				t.Fatalf("the answer does not say Connection: close")
			}
		})
	}
	b.served()

	// A megabyte of random-looking garbage: answered 400 (or 413) and cut
	// off, not buffered.
	t.Run("garbage stream", func(t *testing.T) {
		before := heapAfterGC()
		c := dial(t, addr)
		chunk := make([]byte, 64<<10)
		for i := range chunk {
			chunk[i] = byte(i*7 + i>>8) // includes '\n' bytes
		}
		const total = 64 * mib
		res := streamAsync(c, chunk, total)
		out := closedOrReset(t, c, c)
		if len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.1 400 ")) && !bytes.HasPrefix(out, []byte("HTTP/1.1 413 ")) {
			t.Errorf("answer %q, want 400 or 413", truncateBytes(out, 100))
		}
		b.served()
		expectCutOff(t, res, total, "garbage stream")
		assertHeapGrowth(t, before, 16*mib, "garbage stream")
	})
	st := stats(srv)
	t.Logf("handshake failures: %v", st.HandshakeFailures)
	if st.HandshakeFailures["timeout"] < 1 || st.HandshakeFailures["bad_request"] < 14 || st.HandshakeFailures["too_large"] < 1 {
		t.Errorf("handshake failures %v", st.HandshakeFailures)
	}
}

func TestHostileOversizedHeaders(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{}) // max_request_size 10000
	b := newBystander(t, addr)
	var many strings.Builder
	for i := range 500 {
		fmt.Fprintf(&many, "X-Header-%03d: %s\r\n", i, strings.Repeat("v", 16))
	}
	cases := []struct {
		name string
		req  string
	}{
		{"one huge header", "GET /up HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("c", 12000) + "\r\n\r\n"},
		{"many headers", "GET /up HTTP/1.1\r\nHost: x\r\n" + many.String() + "\r\n"},
		{"huge request target", "GET /up?" + strings.Repeat("q", 11000) + " HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"upgrade with a huge header", fmt.Sprintf(upgradeReq, "/app/"+testKey, "x", "Cookie: "+strings.Repeat("c", 12000)+"\r\n")},
		{"head just over the limit", "GET /up HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 10000-len("GET /up HTTP/1.1\r\nHost: x\r\nX: \r\n\r\n")+1) + "\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			fmt.Fprint(c, tc.req)
			code, body := readResponse(t, bufio.NewReader(c))
			if code != 413 || body != `{"error":"Payload too large."}` {
				t.Fatalf("%d %s, want 413", code, body)
			}
		})
	}
	// A head of exactly max_request_size bytes is accepted.
	t.Run("head at the limit", func(t *testing.T) {
		pre := "GET /up HTTP/1.1\r\nHost: x\r\nX: "
		req := pre + strings.Repeat("a", 10000-len(pre)-4) + "\r\n\r\n"
		if len(req) != 10000 {
			t.Fatalf("len %d", len(req))
		}
		if code, body := apiDo(t, addr, req); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	})
	b.served()

	// An endless header: cut off after max_request_size, never buffered.
	t.Run("endless header stream", func(t *testing.T) {
		before := heapAfterGC()
		c := dial(t, addr)
		fmt.Fprint(c, "GET /app/"+testKey+" HTTP/1.1\r\nHost: x\r\nX-Endless: ")
		const total = 64 * mib
		res := streamAsync(c, bytes.Repeat([]byte("a"), 64<<10), total)
		out := closedOrReset(t, c, c)
		if len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.1 413 ")) {
			t.Errorf("answer %q, want 413", truncateBytes(out, 100))
		}
		b.served()
		expectCutOff(t, res, total, "endless header")
		assertHeapGrowth(t, before, 16*mib, "endless header")
	})
}

func TestHostilePartialHandshakeHeldOpen(t *testing.T) {
	const hsTimeout = 300 * time.Millisecond
	srv, addr := startServer(t, pusher.Options{}, Config{HandshakeTimeout: hsTimeout})
	b := newBystander(t, addr)
	req := fmt.Sprintf(upgradeReq, "/app/"+testKey, addr, "")
	const held, drip = 20, 10
	start := time.Now()
	var conns []net.Conn
	for i := range held {
		c := dial(t, addr)
		// Every prefix of a valid upgrade, up to the last byte.
		cut := 1 + i*(len(req)-2)/(held-1)
		if _, err := io.WriteString(c, req[:cut]); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Slowloris: one more byte every 50 ms never resets the deadline.
	var wg sync.WaitGroup
	for range drip {
		c := dial(t, addr)
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < len(req)-1; i++ {
				if _, err := io.WriteString(c, req[i:i+1]); err != nil {
					return // closed by the server
				}
				time.Sleep(50 * time.Millisecond) // pacing the drip; not a synchronisation
			}
		}()
	}
	b.served() // while the sockets are held open
	for i, c := range conns {
		if out := expectClosed(t, c, c, hsTimeout+3*time.Second); len(out) != 0 {
			t.Fatalf("conn %d: expected a silent close, got %q", i, out)
		}
	}
	elapsed := time.Since(start)
	if elapsed < hsTimeout {
		t.Fatalf("all closed after %v, before handshake_timeout", elapsed)
	}
	wg.Wait()
	b.served()
	if got := stats(srv).HandshakeFailures["timeout"]; got != held+drip {
		t.Errorf("timeout failures %d, want %d", got, held+drip)
	}
}

func TestHostileBadUpgradeHeaders(t *testing.T) {
	srv, addr := startServer(t, pusher.Options{}, Config{})
	b := newBystander(t, addr)
	const path = "/app/" + testKey + "?protocol=7"
	good := map[string]string{
		"Host":                  "x",
		"Upgrade":               "websocket",
		"Connection":            "Upgrade",
		"Sec-WebSocket-Key":     "dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-WebSocket-Version": "13",
	}
	build := func(method, proto string, override map[string]string) string {
		var sb strings.Builder
		fmt.Fprintf(&sb, "%s %s %s\r\n", method, path, proto)
		for _, k := range []string{"Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"} {
			v, ok := override[k]
			if !ok {
				v = good[k]
			}
			if v != "-" {
				fmt.Fprintf(&sb, "%s: %s\r\n", k, v)
			}
		}
		sb.WriteString("\r\n")
		return sb.String()
	}
	cases := []struct {
		name   string
		req    string
		status int
		header [2]string // a header the answer must carry
	}{
		{"missing Sec-WebSocket-Key", build("GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": "-"}), 400, [2]string{}},
		{"short Sec-WebSocket-Key", build("GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": "c2hvcnQ="}), 400, [2]string{}},
		// Regression: the handshake once checked only that the key is 24
		// bytes long, so this got 101; RFC 6455 4.2.1 wants 400.
		{"Sec-WebSocket-Key not base64", build("GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!!!"}), 400, [2]string{}},
		{"wrong version", build("GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Version": "8"}), 426, [2]string{"Sec-WebSocket-Version", "13"}},
		{"missing version", build("GET", "HTTP/1.1", map[string]string{"Sec-WebSocket-Version": "-"}), 400, [2]string{}},
		{"POST upgrade", build("POST", "HTTP/1.1", nil), 405, [2]string{}},
		{"PUT upgrade", build("PUT", "HTTP/1.1", nil), 405, [2]string{}},
		{"Connection without Upgrade", build("GET", "HTTP/1.1", map[string]string{"Connection": "keep-alive"}), 400, [2]string{}},
		{"Upgrade: h2c", build("GET", "HTTP/1.1", map[string]string{"Upgrade": "h2c"}), 400, [2]string{}},
		{"HTTP/1.0 upgrade", build("GET", "HTTP/1.0", nil), 505, [2]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			fmt.Fprint(c, tc.req)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("no HTTP answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			t.Logf("answer: %d %s", resp.StatusCode, body)
			if resp.StatusCode < 400 || resp.StatusCode > 599 {
				t.Fatalf("status %d, want an error", resp.StatusCode)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if h := tc.header; h[0] != "" && resp.Header.Get(h[0]) != h[1] {
				t.Fatalf("%s: %q, want %q", h[0], resp.Header.Get(h[0]), h[1])
			}
			expectClosed(t, c, r, 5*time.Second)
		})
	}
	b.served()
	st := stats(srv)
	if got := st.HandshakeFailures["bad_upgrade"]; got < int64(len(cases))-1 {
		t.Errorf("bad_upgrade failures %d (%v)", got, st.HandshakeFailures)
	}
	if st.Apps[0].Connections != 1 {
		t.Errorf("app connections %d, want the bystander's 1", st.Apps[0].Connections)
	}
}

// ---------------------------------------------------------------------------
// WebSocket frame attacks

func TestHostileFrameProtocolViolations(t *testing.T) {
	srv, addr := startServer(t, pusher.Options{}, Config{}) // max_message_size 10000
	b := newBystander(t, addr)
	text := []byte(`{"event":"pusher:ping"}`)
	cases := []struct {
		name string
		data []byte
		code ws.StatusCode
	}{
		{"unmasked text", wsproto.AppendText(nil, text), ws.StatusProtocolError},
		{"unmasked ping", wsproto.AppendFrame(nil, ws.OpPing, nil), ws.StatusProtocolError},
		{"RSV1", rawFrame(0x80|0x40|0x1, text), ws.StatusProtocolError},
		{"RSV2", rawFrame(0x80|0x20|0x1, text), ws.StatusProtocolError},
		{"RSV3", rawFrame(0x80|0x10|0x1, text), ws.StatusProtocolError},
		{"RSV1 on a ping", rawFrame(0x80|0x40|0x9, nil), ws.StatusProtocolError},
		{"opcode 3", rawFrame(0x80|0x3, text), ws.StatusProtocolError},
		{"opcode 4", rawFrame(0x80|0x4, text), ws.StatusProtocolError},
		{"opcode 5", rawFrame(0x80|0x5, text), ws.StatusProtocolError},
		{"opcode 6", rawFrame(0x80|0x6, text), ws.StatusProtocolError},
		{"opcode 7", rawFrame(0x80|0x7, text), ws.StatusProtocolError},
		{"opcode 0xB", rawFrame(0x80|0xB, nil), ws.StatusProtocolError},
		{"opcode 0xC", rawFrame(0x80|0xC, nil), ws.StatusProtocolError},
		{"opcode 0xD", rawFrame(0x80|0xD, nil), ws.StatusProtocolError},
		{"opcode 0xE", rawFrame(0x80|0xE, nil), ws.StatusProtocolError},
		{"opcode 0xF", rawFrame(0x80|0xF, nil), ws.StatusProtocolError},
		{"ping of 126 bytes", rawFrame(0x80|0x9, make([]byte, 126)), ws.StatusProtocolError},
		{"pong of 126 bytes", rawFrame(0x80|0xA, make([]byte, 126)), ws.StatusProtocolError},
		{"close of 126 bytes", rawFrame(0x80|0x8, append([]byte{0x03, 0xe8}, make([]byte, 124)...)), ws.StatusProtocolError},
		{"ping declaring 2^62 bytes", rawHeader(0x80|0x9, 1<<62, true), ws.StatusProtocolError},
		{"fragmented ping", rawFrame(0x9, []byte("x")), ws.StatusProtocolError},
		{"continuation without a start", rawFrame(0x80 /* FIN, continuation */, text), ws.StatusProtocolError},
		{"new message inside a fragmented one", append(rawFrame(0x1, text[:5]), rawFrame(0x80|0x1, text)...), ws.StatusProtocolError},
		{"close with 1-byte body", rawFrame(0x80|0x8, []byte{0x03}), ws.StatusProtocolError},
		{"close with code 1005", rawFrame(0x80|0x8, []byte{0x03, 0xed}), ws.StatusProtocolError},
		{"close with code 999", rawFrame(0x80|0x8, []byte{0x03, 0xe7}), ws.StatusProtocolError},
		{"close with code 5000", rawFrame(0x80|0x8, []byte{0x13, 0x88}), ws.StatusProtocolError},
		{"close with invalid UTF-8 reason", rawFrame(0x80|0x8, []byte{0x03, 0xe8, 0xff}), ws.StatusInvalidFramePayloadData},
		{"64-bit length with the MSB set", rawHeader(0x80|0x1, 1<<63, true), ws.StatusProtocolError},
		{"text declaring 2^62 bytes", rawHeader(0x80|0x1, 1<<62, true), ws.StatusMessageTooBig},
		{"binary declaring 2^63-1 bytes", rawHeader(0x80|0x2, 1<<63-1, true), ws.StatusMessageTooBig},
		{"text over max_message_size (header only)", rawHeader(0x80|0x1, 10001, true), ws.StatusMessageTooBig},
		{"fragments over max_message_size", append(rawFrame(0x1, make([]byte, 6000)), rawHeader(0x80 /* FIN, continuation */, 6000, true)...), ws.StatusMessageTooBig},
		{"invalid UTF-8 byte", rawFrame(0x80|0x1, []byte("{\"event\":\"\xff\"}")), ws.StatusInvalidFramePayloadData},
		{"overlong UTF-8", rawFrame(0x80|0x1, []byte("\xc0\xaf")), ws.StatusInvalidFramePayloadData},
		{"UTF-8 surrogate", rawFrame(0x80|0x1, []byte("\xed\xa0\x80")), ws.StatusInvalidFramePayloadData},
		{"truncated UTF-8", rawFrame(0x80|0x1, []byte("\xe2\x82")), ws.StatusInvalidFramePayloadData},
		{"invalid UTF-8 across fragments", append(rawFrame(0x1, []byte("ab\xe2")), rawFrame(0x80 /* FIN, continuation */, []byte("\x28\xa1"))...), ws.StatusInvalidFramePayloadData},
	}
	wantCloses := map[int]int64{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t, addr, testKey, "")
			c.established()
			c.sendRaw(tc.data)
			if code := c.expectClose(); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
			expectClosed(t, c.conn, c.r, 5*time.Second)
			wantCloses[int(tc.code)]++
		})
	}
	b.served()
	st := stats(srv)
	for code, n := range wantCloses {
		if st.Closes[code] != n {
			t.Errorf("Closes[%d] = %d, want %d (%v)", code, st.Closes[code], n, st.Closes)
		}
	}
	if st.Apps[0].Connections != 1 {
		t.Errorf("app connections %d, want the bystander's 1", st.Apps[0].Connections)
	}

	// A valid character split across fragments is not an error.
	t.Run("UTF-8 split across fragments is fine", func(t *testing.T) {
		c := connect(t, addr, testKey, "")
		c.established()
		msg := []byte(subscribeMsg("café"))
		i := bytes.IndexByte(msg, 0xc3) + 1 // between the two bytes of é
		c.sendRaw(append(rawFrame(0x1, msg[:i]), rawFrame(0x80 /* FIN, continuation */, msg[i:])...))
		e := c.expectEvent("pusher_internal:subscription_succeeded")
		if e.Channel != "café" {
			t.Fatalf("channel %q", e.Channel)
		}
	})
}

// A frame declaring a huge length is refused on its header: the payload that
// follows is never buffered.
func TestHostileHugeFrameClosedBeforePayload(t *testing.T) {
	unlimited := &pusher.App{ID: "5678", Key: "unlimited-key", Secret: "s", MaxMessageSize: 0}
	_, addr := startServer(t, pusher.Options{Apps: []*pusher.App{testApp(), unlimited}}, Config{})
	b := newBystander(t, addr)
	cases := []struct {
		name   string
		key    string
		length uint64
	}{
		{"2^62 bytes", testKey, 1 << 62},
		{"1 GiB", testKey, 1 << 30},
		{"10001 bytes", testKey, 10001},
		// max_message_size = 0 means unlimited, but the transport still caps
		// messages (hardMaxMessage, 16 MiB).
		{"2^62 bytes, app without a message limit", "unlimited-key", 1 << 62},
		{"64 MiB, app without a message limit", "unlimited-key", 64 * mib},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The header alone gets 1009.
			c := connect(t, addr, tc.key, "")
			c.established()
			c.sendRaw(rawHeader(0x80|0x2, tc.length, true))
			if code := c.expectClose(); code != ws.StatusMessageTooBig {
				t.Fatalf("close code %d, want 1009", code)
			}
			expectClosed(t, c.conn, c.r, 5*time.Second)
			// The payload streamed after it is never buffered.
			before := heapAfterGC()
			c = connect(t, addr, tc.key, "")
			c.established()
			c.sendRaw(rawHeader(0x80|0x2, tc.length, true))
			total := int64(min(tc.length, 64*mib))
			res := streamAsync(c.conn, make([]byte, 64<<10), total)
			if code, reset := c.closeOrReset(); !reset && code != ws.StatusMessageTooBig {
				t.Fatalf("close code %d, want 1009", code)
			}
			b.served()
			if total > 8*mib {
				expectCutOff(t, res, total, tc.name)
			} else {
				<-res
			}
			assertHeapGrowth(t, before, 16*mib, tc.name)
		})
	}
}

func TestHostileFragmentFlood(t *testing.T) {
	srv, addr := startServer(t, pusher.Options{}, Config{}) // MaxFragments default 128
	b := newBystander(t, addr)

	build := func(n int, size int) []byte {
		var out []byte
		out = append(out, rawFrame(0x1, bytes.Repeat([]byte("a"), size))...)
		cont := rawFrame(0x0, bytes.Repeat([]byte("a"), size))
		for range n - 1 {
			out = append(out, cont...)
		}
		return out
	}
	t.Run("128 fragments are accepted", func(t *testing.T) {
		c := connect(t, addr, testKey, "")
		c.established()
		msg := []byte(`{"event":"pusher:ping"}` + strings.Repeat(" ", 128-23))
		var out []byte
		for i := range 128 {
			b0 := byte(0x0)
			if i == 0 {
				b0 = 0x1
			}
			if i == 127 {
				b0 |= 0x80
			}
			out = append(out, rawFrame(b0, msg[i:i+1])...)
		}
		c.sendRaw(out)
		c.expectEvent("pusher:pong")
	})
	cases := []struct {
		name  string
		n     int
		size  int
		pings bool
	}{
		{"5000 one-byte fragments", 5000, 1, false},
		{"1M empty fragments", 1 << 20, 0, false},
		{"one-byte fragments with pings between them", 2000, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := heapAfterGC()
			c := connect(t, addr, testKey, "")
			c.established()
			var data []byte
			if tc.pings {
				ping := rawFrame(0x80|0x9, []byte("p"))
				data = rawFrame(0x1, []byte("a"))
				cont := rawFrame(0x0, []byte("a"))
				for range tc.n {
					data = append(data, ping...)
					data = append(data, cont...)
				}
			} else {
				data = build(tc.n, tc.size)
			}
			res := streamAsync(c.conn, data, int64(len(data)))
			streaming := len(data) > 48<<10 // more than the server reads at once: see closeOrReset
			pongs := 0
			for {
				f, err := c.tryRead(10 * time.Second)
				if err != nil {
					if streaming && isConnGone(err) {
						t.Logf("connection reset before the close frame arrived")
						break
					}
					t.Fatalf("reading: %v", err)
				}
				if f.op == ws.OpPong {
					pongs++
					continue
				}
				if f.op != ws.OpClose {
					t.Fatalf("unexpected frame %d %q", f.op, f.payload)
				}
				if code := ws.StatusCode(binary.BigEndian.Uint16(f.payload)); code != ws.StatusPolicyViolation {
					t.Fatalf("close code %d, want 1008", code)
				}
				if reason := string(f.payload[2:]); reason != wsproto.ReasonTooManyFragments {
					t.Fatalf("close reason %q", reason)
				}
				break
			}
			if tc.pings && pongs < 127 {
				t.Fatalf("%d pongs before the close, want at least 127", pongs)
			}
			closedOrReset(t, c.conn, c.r)
			b.served()
			if len(data) > 4*mib {
				expectCutOff(t, res, int64(len(data)), tc.name)
			} else {
				<-res
			}
			assertHeapGrowth(t, before, 16*mib+int64(len(data)), tc.name)
		})
	}
	if got := stats(srv).Closes[int(ws.StatusPolicyViolation)]; got != int64(len(cases)) {
		t.Errorf("Closes[1008] = %d, want %d", got, len(cases))
	}
}

func TestHostilePingFloodAnswered(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{})
	b := newBystander(t, addr)
	c := connect(t, addr, testKey, "")
	c.established()
	const n = 10000
	var data []byte
	for i := range n {
		data = append(data, rawFrame(0x80|0x9, binary.BigEndian.AppendUint32(nil, uint32(i)))...)
	}
	res := streamAsync(c.conn, data, int64(len(data)))
	b.served() // during the flood
	for i := range n {
		f := c.read()
		if f.op != ws.OpPong || len(f.payload) != 4 || binary.BigEndian.Uint32(f.payload) != uint32(i) {
			t.Fatalf("frame %d: op %d %x, want pong %d", i, f.op, f.payload, i)
		}
	}
	if r := <-res; r.err != nil {
		t.Fatal(r.err)
	}
	c.stillServed()
	b.served()
}

// A client that floods requests whose answers it never reads must be cut
// off as a slow consumer, as for broadcast events: otherwise the server
// buffers everything it answers.
//
// Regression: the answers to control frames (pongs) and the answers
// HandleMessage writes itself (pusher:pong, pusher:error 4200, subscription
// answers) were not checked against max_outbound_buffer; only broadcasts
// were. The server kept every answer in gnet's outbound buffer (34-48 MiB for
// a 32 MiB flood; a 7-byte frame answered with a 92-byte error amplifies the
// attacker 13 times) and never disconnected the attacker.
//
// The floods are sized so that the answers exceed what the kernel can take
// (net.ipv4.tcp_wmem max, 4 MiB here): only then does gnet buffer them.
func TestHostileFloodWithUnreadAnswers(t *testing.T) {
	cases := []struct {
		name  string
		msg   []byte
		total int64
	}{
		// 125-byte pings answered with 127-byte pongs.
		{"WebSocket pings", rawFrame(0x80|0x9, bytes.Repeat([]byte("p"), 125)), 8 * mib},
		// 7-byte messages answered with 92-byte pusher:error 4200 (the
		// pusher:pong answers to pusher:ping take the same path).
		{"tiny invalid messages (4200 each)", rawFrame(0x80|0x1, []byte("1")), 100000 * 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := startServer(t, pusher.Options{MaxOutboundBuffer: 64 << 10}, Config{})
			b := newBystander(t, addr)
			before := heapAfterGC()
			c := connectConn(t, dialSmallRcvBuf(t, addr), addr)
			c.established()
			// The attacker never reads again.
			chunk := bytes.Repeat(tc.msg, (64<<10)/len(tc.msg))
			res := streamAsync(c.conn, chunk, tc.total)
			b.served() // during the flood
			var r streamResult
			select {
			case r = <-res:
			case <-time.After(30 * time.Second):
				t.Fatal("still sending after 30 s")
			}
			if r.err != nil && !isConnGone(r.err) {
				t.Fatalf("write: %v", r.err)
			}
			t.Logf("sent %d KiB of %d KiB (%v)", r.sent>>10, tc.total>>10, r.err)
			// The kernel may hold much of the flood unread: wait until the
			// server got through it.
			deadline := time.Now().Add(5 * time.Second)
			var st Stats
			for {
				st = stats(srv)
				if st.SlowConsumerCloses > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond) // polling interval of a deadline wait
			}
			b.served()
			// Measured while the attacker's socket is still open on our side.
			assertHeapGrowth(t, before, 2*mib, tc.name)
			if st.SlowConsumerCloses != 1 || st.Closes[4100] != 1 {
				t.Errorf("SlowConsumerCloses %d, Closes[4100] %d, want 1 and 1; MessagesReceived %d, BytesSent %d",
					st.SlowConsumerCloses, st.Closes[4100], st.Apps[0].MessagesReceived, st.Apps[0].BytesSent)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Pusher protocol attacks

func TestHostileInvalidJSON(t *testing.T) {
	srv, addr := startServer(t, pusher.Options{}, Config{})
	b := newBystander(t, addr)
	c := connect(t, addr, testKey, "")
	c.established()
	msgs := []string{
		``,
		`not json`,
		`{"event":`,
		`{"event":"pusher:ping"`,
		`[]`,
		`123`,
		`"pusher:ping"`,
		`null`,
		`{}`,
		`{"event":123}`,
		`{"event":null}`,
		`{"event":""}`,
		`{"event":["pusher:ping"]}`,
		`{"event":{"a":1}}`,
		`{"event":"pusher:subscribe"}`,
		`{"event":"pusher:subscribe","data":5}`,
		`{"event":"pusher:subscribe","data":"not-json"}`,
		`{"event":"pusher:subscribe","data":"[1,2]"}`,
		`{"event":"pusher:subscribe","data":[]}`,
		`{"event":"pusher:subscribe","data":{"channel":5}}`,
		`{"event":"pusher:subscribe","data":{"channel":null}}`,
		`{"event":"pusher:subscribe","data":{"channel":["a"]}}`,
		`{"event":"pusher:subscribe","data":{"channel":"x","auth":7}}`,
		`{"event":"pusher:subscribe","data":{"channel":"x","channel_data":{"user_id":1}}}`,
		`{"event":"pusher:subscribe","data":{"channel":"x","channel_data":"{not json"}}`,
		`{"event":"pusher:unsubscribe","data":{"channel":1}}`,
		`{"event":"pusher:signin","data":{"auth":1,"user_data":"{}"}}`,
		`{"event":"pusher:whatever"}`,
		`{"event":"pusher_internal:subscription_succeeded","channel":"x"}`,
		`{"event":"client-x","channel":1,"data":{}}`,
		`{"event":"client-x","channel":"private-x","data":5}`,
		`{"event":"client-x","channel":"private-x","data":"not json"}`,
		strings.Repeat("[", 9000),
		`{"event":"pusher:ping","x":` + strings.Repeat("[", 5000) + `}`,
		"{\"event\":\"pusher:ping\"}\x00",
	}
	for i, m := range msgs {
		c.send(m)
		e := c.expectEvent("pusher:error")
		var d errData
		_ = json.Unmarshal([]byte(e.DataString()), &d)
		if d.Code != 4200 || d.Message != "Invalid message format" {
			t.Fatalf("message %d %.60q: %+v, want 4200 Invalid message format", i, m, d)
		}
	}
	// A binary frame of garbage gets the same answer.
	c.sendRaw(rawFrame(0x80|0x2, []byte{0xff, 0xfe, 0x00}))
	c.expectError(4200, "Invalid message format")
	c.stillServed()
	b.served()
	if got := stats(srv).Errors[4200]; got != int64(len(msgs)+1) {
		t.Errorf("Errors[4200] = %d, want %d", got, len(msgs)+1)
	}
}

func TestHostileForgedChannelAuth(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{})
	b := newBystander(t, addr)
	app := testApp()
	c := connect(t, addr, testKey, "")
	sid := c.established()
	other := connect(t, addr, testKey, "")
	otherSID := other.established()
	const unauthorized = "Connection is unauthorized"
	cdA := `{"user_id":"alice","user_info":{"admin":false}}`
	cdB := `{"user_id":"alice","user_info":{"admin":true}}`
	valid := pusher.ChannelSignature(app, sid, "private-secret", "")
	sig := valid[len(testKey)+1:]
	cases := []struct {
		name        string
		channel     string
		auth        string
		channelData string
		msg         string
		status      int
	}{
		{"no auth", "private-secret", "", "", unauthorized, 401},
		{"zero signature", "private-secret", testKey + ":" + strings.Repeat("0", 64), "", unauthorized, 401},
		{"signature without key", "private-secret", sig, "", unauthorized, 401},
		{"key only", "private-secret", testKey + ":", "", unauthorized, 401},
		{"wrong key", "private-secret", "other-key:" + sig, "", unauthorized, 401},
		{"truncated signature", "private-secret", valid[:len(valid)-2], "", unauthorized, 401},
		{"signature with trailing garbage", "private-secret", valid + "00", "", unauthorized, 401},
		{"signature not hex", "private-secret", testKey + ":" + strings.Repeat("zz", 32), "", unauthorized, 401},
		{"signed for another socket", "private-secret", pusher.ChannelSignature(app, otherSID, "private-secret", ""), "", unauthorized, 401},
		{"signed for another channel", "private-secret", pusher.ChannelSignature(app, sid, "private-other", ""), "", unauthorized, 401},
		{"signed with another secret", "private-secret", pusher.ChannelSignature(&pusher.App{Key: testKey, Secret: "guess"}, sid, "private-secret", ""), "", unauthorized, 401},
		{"encrypted channel", "private-encrypted-secret", pusher.ChannelSignature(app, sid, "private-secret", ""), "", unauthorized, 401},
		{"cache channel", "private-cache-secret", pusher.ChannelSignature(app, sid, "private-secret", ""), "", unauthorized, 401},
		{"presence with swapped channel_data", "presence-room", pusher.ChannelSignature(app, sid, "presence-room", cdA), cdB, unauthorized, 401},
		{"presence signed without channel_data", "presence-room", pusher.ChannelSignature(app, sid, "presence-room", ""), cdA, unauthorized, 401},
		{"presence without channel_data", "presence-room", pusher.ChannelSignature(app, sid, "presence-room", ""), "", "Presence channels need channel_data with a user_id", 400},
		{"server-to-user without signin", "#server-to-user-alice", "", "", unauthorized, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.send(subscribeAuthMsg(tc.channel, tc.auth, tc.channelData))
			c.expectSubscriptionError(tc.channel, tc.status, 4009, tc.msg)
		})
	}
	c.stillServed()
	b.served()
	// None of the forged subscriptions took effect.
	code, body := apiDo(t, addr, signedRequest("GET", "/apps/"+testAppID+"/channels", ""))
	if code != 200 || body != `{"channels":{"bystander":{}}}` {
		t.Fatalf("channels: %d %s", code, body)
	}
}

func TestHostileLongChannelNames(t *testing.T) {
	_, addr := startServer(t, pusher.Options{}, Config{}) // max_name_length 200
	b := newBystander(t, addr)
	c := connect(t, addr, testKey, "")
	c.established()
	const invalid = "Invalid channel name"
	for _, name := range []string{
		strings.Repeat("a", 201),
		"private-" + strings.Repeat("a", 193),
		"presence-" + strings.Repeat("a", 192),
		strings.Repeat("a", 9000),
		"",
		"with space",
		`with"quote`,
		`back\slash`,
		"tab\there",
		"nul\x00",
		"del\x7f",
	} {
		c.send(subscribeMsg(name))
		c.expectSubscriptionError(name, 400, 4009, invalid)
	}
	// At the limit it works.
	c.subscribe(strings.Repeat("a", 200))
	b.served()
	// A name that makes the message exceed max_message_size closes with 1009.
	c.send(subscribeMsg(strings.Repeat("a", 20000)))
	if code := c.expectClose(); code != ws.StatusMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
	b.served()
}

func TestHostileSubscribeFlood(t *testing.T) {
	t.Run("rate", func(t *testing.T) {
		srv, addr := startServer(t, pusher.Options{}, Config{}) // 100 per second
		b := newBystander(t, addr)
		c := connect(t, addr, testKey, "")
		c.established()
		const n = 250
		var all []byte
		for i := range n {
			all = append(all, wsproto.AppendClientFrame(nil, ws.OpText, true, []byte(subscribeMsg(fmt.Sprintf("flood-%d", i))), testMask)...)
		}
		c.sendRaw(all)
		ok, refused := 0, 0
		for ok+refused < n {
			e := c.readEvent()
			switch e.Event {
			case "pusher_internal:subscription_succeeded":
				ok++
			case "pusher:subscription_error":
				var d struct {
					Error  string `json:"error"`
					Status int    `json:"status"`
				}
				_ = json.Unmarshal([]byte(e.DataString()), &d)
				if d.Error != "Subscription rate limit exceeded" || d.Status != 429 {
					t.Fatalf("subscription_error %s", e.DataString())
				}
				c.expectError(4301, "Subscription rate limit exceeded")
				refused++
			default:
				t.Fatalf("unexpected %s %s", e.Event, e.Data)
			}
		}
		// 250 messages are handled well within two one-second windows.
		t.Logf("%d subscribed, %d refused", ok, refused)
		if ok < 100 || ok > 200 || refused < 50 {
			t.Fatalf("%d subscribed, %d refused; want 100 to 200 subscribed", ok, refused)
		}
		c.stillServed()
		b.served()
		if st := stats(srv); st.RateLimited != int64(refused) {
			t.Errorf("RateLimited %d, want %d", st.RateLimited, refused)
		}
	})
	t.Run("channels per connection", func(t *testing.T) {
		_, addr := startServer(t, pusher.Options{MaxChannelsPerConnection: 10}, Config{})
		b := newBystander(t, addr)
		c := connect(t, addr, testKey, "")
		c.established()
		for i := range 10 {
			c.subscribe(fmt.Sprintf("chan-%d", i))
		}
		for i := 10; i < 15; i++ {
			name := fmt.Sprintf("chan-%d", i)
			c.send(subscribeMsg(name))
			c.expectSubscriptionError(name, 429, 4301, "Too many channels for this connection")
		}
		// Re-subscribing to a channel it has is not a new channel.
		c.subscribe("chan-3")
		c.stillServed()
		b.served()
	})
}

func TestHostileOversizedPresenceData(t *testing.T) {
	_, addr := startServer(t, pusher.Options{MaxPresenceMembers: 3}, Config{}) // user_info 1024, max_message_size 10000
	b := newBystander(t, addr)
	app := testApp()
	join := func(c *wsClient, sid, user, info string) string {
		cd := `{"user_id":"` + user + `","user_info":` + info + `}`
		c.send(subscribeAuthMsg("presence-room", pusher.ChannelSignature(app, sid, "presence-room", cd), cd))
		return cd
	}
	c := connect(t, addr, testKey, "")
	sid := c.established()

	// user_info of 1025 bytes (as raw JSON) is refused, 1024 accepted.
	join(c, sid, "big", `"`+strings.Repeat("x", 1023)+`"`)
	c.expectSubscriptionError("presence-room", 400, 4009, "Presence user_info is too large")
	join(c, sid, "big", `{"a":"`+strings.Repeat("x", 2000)+`"}`)
	c.expectSubscriptionError("presence-room", 400, 4009, "Presence user_info is too large")
	join(c, sid, "ok", `"`+strings.Repeat("x", 1022)+`"`)
	c.expectEvent("pusher_internal:subscription_succeeded")
	b.served()

	// Presence members past max_presence_members are refused.
	for i := range 3 {
		m := connect(t, addr, testKey, "")
		msid := m.established()
		join(m, msid, fmt.Sprintf("user-%d", i), `{}`)
		if i < 2 {
			m.expectEvent("pusher_internal:subscription_succeeded")
			continue
		}
		m.expectSubscriptionError("presence-room", 429, 4301, "Presence channel is over its member limit")
	}
	c.expectEvent("pusher_internal:member_added") // user-0
	c.expectEvent("pusher_internal:member_added") // user-1

	// channel_data over max_message_size: 1009.
	c2 := connect(t, addr, testKey, "")
	sid2 := c2.established()
	join(c2, sid2, "huge", `"`+strings.Repeat("x", 12000)+`"`)
	if code := c2.expectClose(); code != ws.StatusMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
	c.stillServed()
	b.served()
}

// ---------------------------------------------------------------------------
// HTTP API attacks

// signWith signs like signedRequest with arbitrary parameters.
func signWith(method, path, query, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(method + "\n" + path + "\n" + query))
	return query + "&auth_signature=" + hex.EncodeToString(mac.Sum(nil))
}

func TestHostileHTTPAPI(t *testing.T) {
	const hsTimeout = 500 * time.Millisecond
	_, addr := startServer(t, pusher.Options{}, Config{HandshakeTimeout: hsTimeout})
	b := newBystander(t, addr)
	events := "/apps/" + testAppID + "/events"
	good := `{"name":"x","channel":"bystander-not","data":"{}"}`
	forged := signedRequest("POST", events, good)
	i := strings.Index(forged, "auth_signature=") + len("auth_signature=")
	forged = forged[:i] + strings.Repeat("0", 64) + forged[i+64:]
	tampered := strings.Replace(signedRequest("POST", events, good), `"data":"{}"`, `"data":"[]"`, 1)
	stale := func() string {
		q := fmt.Sprintf("auth_key=%s&auth_timestamp=%d&auth_version=1.0", testKey, time.Now().Add(-time.Hour).Unix())
		return "GET /apps/" + testAppID + "/channels?" + signWith("GET", "/apps/"+testAppID+"/channels", q, testSecret) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	}()
	wrongKey := func() string {
		q := fmt.Sprintf("auth_key=%s&auth_timestamp=%d&auth_version=1.0", "other-key", time.Now().Unix())
		return "GET /apps/" + testAppID + "/channels?" + signWith("GET", "/apps/"+testAppID+"/channels", q, testSecret) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	}()
	cases := []struct {
		name   string
		req    string
		status int
		body   string // exact body unless empty
		allow  string
	}{
		{"bad JSON", signedRequest("POST", events, `{"name":`), 400, `{"error":"The request body is not valid JSON."}`, ""},
		{"JSON array", signedRequest("POST", events, `[1,2]`), 400, `{"error":"The request body is not valid JSON."}`, ""},
		{"empty body", signedRequest("POST", events, ""), 400, `{"error":"The request body is empty."}`, ""},
		{"wrong JSON types", signedRequest("POST", events, `{"name":1,"channel":2,"data":3}`), 422, "", ""},
		{"forged signature", forged, 401, `{"error":"Authentication signature invalid."}`, ""},
		{"tampered body", tampered, 401, "", ""},
		{"stale timestamp", stale, 401, "", ""},
		{"wrong auth_key", wrongKey, 401, "", ""},
		{"unsigned", "POST " + events + " HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 401, "", ""},
		{"DELETE events", "DELETE " + events + " HTTP/1.1\r\nHost: x\r\n\r\n", 405, "", "POST"},
		{"GET events", "GET " + events + " HTTP/1.1\r\nHost: x\r\n\r\n", 405, "", "POST"},
		{"BREW channels", "BREW /apps/" + testAppID + "/channels HTTP/1.1\r\nHost: x\r\n\r\n", 405, "", "GET"},
		{"PUT /up", "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "", "GET, HEAD"},
		{"unknown path", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "", ""},
		{"/apps alone", "GET /apps HTTP/1.1\r\nHost: x\r\n\r\n", 404, "", ""},
		{"too deep", "GET /apps/" + testAppID + "/channels/a/b/c HTTP/1.1\r\nHost: x\r\n\r\n", 404, "", ""},
		{"dot-dot", "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 404, "", ""},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 404, "", ""},
		{"unknown app", signedRequest("GET", "/apps/999/channels", ""), 404, `{"error":"No matching application for ID [999]."}`, ""},
		{"bad query", "GET /apps/" + testAppID + "/channels?a=%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, `{"error":"Invalid query string."}`, ""},
		{"invalid Content-Length", "POST " + events + " HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "", ""},
		{"negative Content-Length", "POST " + events + " HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "", ""},
		{"conflicting Content-Length", "POST " + events + " HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "", ""},
		{"overflowing Content-Length", "POST " + events + " HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, "", ""},
		{"chunked", "POST " + events + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411, "", ""},
		{"gzip transfer coding", "POST " + events + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "", ""},
		{"huge Content-Length, no body", "POST " + events + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n", 413, `{"error":"Payload too large."}`, ""},
		{"body over max_request_size", signedRequest("POST", events, `{"name":"x","channel":"c","data":"`+strings.Repeat("x", 10000)+`"}`), 413, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			fmt.Fprint(c, tc.req)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			if tc.body != "" && string(body) != tc.body {
				t.Fatalf("body %s, want %s", body, tc.body)
			}
			if !json.Valid(body) {
				t.Fatalf("body is not JSON: %q", body)
			}
			if tc.allow != "" && resp.Header.Get("Allow") != tc.allow {
				t.Fatalf("Allow %q, want %q", resp.Header.Get("Allow"), tc.allow)
			}
		})
	}
	b.served()

	t.Run("Content-Length longer than the body", func(t *testing.T) {
		c := dial(t, addr)
		req := signedRequest("POST", events, good)
		req = strings.Replace(req, fmt.Sprintf("Content-Length: %d", len(good)), fmt.Sprintf("Content-Length: %d", len(good)+100), 1)
		start := time.Now()
		fmt.Fprint(c, req)
		b.served() // while the request waits for its body
		if out := expectClosed(t, c, c, hsTimeout+3*time.Second); len(out) != 0 {
			t.Fatalf("expected a silent close, got %q", out)
		}
		if el := time.Since(start); el < hsTimeout*9/10 {
			t.Fatalf("closed after %v, before handshake_timeout", el)
		}
	})
	t.Run("Content-Length shorter than the body", func(t *testing.T) {
		c := dial(t, addr)
		body := `{"name":"tick","channel":"bystander","data":"short"}`
		req := signedRequest("POST", events, body) + "GARBAGE\r\n\r\n"
		fmt.Fprint(c, req)
		r := bufio.NewReader(c)
		if code, resp := readResponse(t, r); code != 200 {
			t.Fatalf("first: %d %s", code, resp)
		}
		if code, resp := readResponse(t, r); code != 400 {
			t.Fatalf("extra bytes: %d %s, want 400", code, resp)
		}
		expectClosed(t, c, r, 5*time.Second)
		if e := b.c.expectEvent("tick"); e.DataString() != "short" {
			t.Fatalf("bystander got %s", e.Data)
		}
	})
	t.Run("huge body streamed", func(t *testing.T) {
		before := heapAfterGC()
		c := dial(t, addr)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", events, 1<<40)
		const total = 64 * mib
		res := streamAsync(c, bytes.Repeat([]byte(`{"a":1}`), 8<<10), total)
		out := closedOrReset(t, c, c)
		if len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.1 413 ")) {
			t.Errorf("answer %q, want 413", truncateBytes(out, 100))
		}
		b.served()
		expectCutOff(t, res, total, "huge body")
		assertHeapGrowth(t, before, 16*mib, "huge body")
	})
	t.Run("pipelining", func(t *testing.T) {
		c := dial(t, addr)
		reqs := []string{
			"GET /up HTTP/1.1\r\nHost: x\r\n\r\n",
			signedRequest("POST", events, `{"name":"tick","channel":"bystander","data":"piped"}`),
			"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
			signedRequest("GET", "/apps/"+testAppID+"/channels/bystander", ""),
			"DELETE " + events + " HTTP/1.1\r\nHost: x\r\n\r\n",
			signedRequest("POST", events, `{"name":`),
			"GET /up HTTP/1.1\r\nHost: x\r\n\r\n",
		}
		want := []int{200, 200, 404, 200, 405, 400, 200}
		fmt.Fprint(c, strings.Join(reqs, ""))
		r := bufio.NewReader(c)
		for i, w := range want {
			if code, body := readResponse(t, r); code != w {
				t.Fatalf("response %d: %d %s, want %d", i, code, body, w)
			}
		}
		if e := b.c.expectEvent("tick"); e.DataString() != "piped" {
			t.Fatalf("bystander got %s", e.Data)
		}
	})
	t.Run("50 pipelined requests", func(t *testing.T) {
		// 50 signed requests (about 12 KB) in one write: under the
		// 2 x max_request_size the server lets wait behind a request in
		// flight, so all are answered, in order.
		c := dial(t, addr)
		var all strings.Builder
		for range 50 {
			all.WriteString(signedRequest("GET", "/apps/"+testAppID+"/channels/bystander", ""))
		}
		fmt.Fprint(c, all.String())
		r := bufio.NewReader(c)
		for i := range 50 {
			if code, body := readResponse(t, r); code != 200 || body != `{"occupied":true}` {
				t.Fatalf("response %d: %d %s", i, code, body)
			}
		}
	})
	t.Run("pipeline flood", func(t *testing.T) {
		// 2000 pipelined requests (about 500 KB): more than the server lets
		// wait behind a request in flight (2 x max_request_size), so it
		// closes the connection; whatever it answered before is in order.
		before := heapAfterGC()
		c := dial(t, addr)
		const n = 2000
		var all strings.Builder
		for range n {
			all.WriteString(signedRequest("GET", "/apps/"+testAppID+"/channels/bystander", ""))
		}
		res := streamAsync(c, []byte(all.String()), int64(all.Len()))
		r := bufio.NewReader(c)
		answered := 0
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for ; answered < n; answered++ {
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				if !isConnGone(err) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("after %d answers: %v", answered, err)
				}
				break
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != `{"occupied":true}` {
				t.Fatalf("answer %d: %d %s", answered, resp.StatusCode, body)
			}
		}
		t.Logf("pipeline flood: %d of %d requests (%d KiB) answered before the close", answered, n, all.Len()>>10)
		if answered == n {
			t.Fatalf("all %d answered: the server buffered %d KiB of pipelined requests", n, all.Len()>>10)
		}
		<-res // the kernel may take all 500 KB before the server closes
		b.served()
		assertHeapGrowth(t, before, 16*mib, "pipeline flood")
	})
}

// ---------------------------------------------------------------------------
// Connection-level attacks

// Regression: the storm crashed the server (nil Session in onWS) and leaked
// sessions (app Connections 496 instead of 1 after it, with the engine's
// count back to 1); see TestRegressionWriteFailureClosesInsideWrite and
// TestRegressionUpgradeWriteFailureLeaksSession. It runs in a child process
// so that a crash fails this test only.
func TestHostileConnectAndCloseStorm(t *testing.T) { isolated(t, testConnectAndCloseStorm) }

func testConnectAndCloseStorm(t *testing.T) {
	srv, addr := startServer(t, pusher.Options{}, Config{})
	b := newBystander(t, addr)
	req := fmt.Sprintf(upgradeReq, "/app/"+testKey, addr, "")
	sub := wsproto.AppendClientFrame(nil, ws.OpText, true, []byte(subscribeMsg("storm")), testMask)
	const n, workers = 2000, 32
	jobs := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					errc <- err
					return
				}
				tc := c.(*net.TCPConn)
				switch i % 8 {
				case 0, 2, 4, 6: // half of them mid-handshake
					_, _ = io.WriteString(c, req[:1+i%(len(req)-1)])
					if i%4 == 0 {
						_ = tc.SetLinger(0) // RST
					}
				case 1: // connect and close at once
				case 3: // upgrade and leave without reading
					_, _ = io.WriteString(c, req)
				case 5: // upgrade, subscribe and reset
					_, _ = c.Write(append([]byte(req), sub...))
					_ = tc.SetLinger(0)
				case 7: // upgrade, subscribe, wait for the answer, leave
					_, _ = c.Write(append([]byte(req), sub...))
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					buf := make([]byte, 512)
					got := 0
					for !bytes.Contains(buf[:got], []byte("subscription_succeeded")) && got < len(buf) {
						k, err := c.Read(buf[got:])
						if err != nil {
							break
						}
						got += k
					}
				}
				_ = c.Close()
			}
		}()
	}
	go func() {
		for i := range n {
			jobs <- i
		}
		close(jobs)
	}()
	b.served() // during the storm
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("storm client: %v", err)
	}
	b.served()
	waitFor(t, 10*time.Second, "connections back to the bystander's 1", func() (bool, string) {
		st := stats(srv)
		a := st.Apps[0]
		state := fmt.Sprintf("Connections %d, app Connections %d, Subscribed %d, Channels %d", st.Connections, a.Connections, a.Subscribed, a.Channels)
		return st.Connections == 1 && a.Connections == 1 && a.Subscribed == 1 && a.Channels == 1, state
	})
	code, body := apiDo(t, addr, signedRequest("GET", "/apps/"+testAppID+"/channels", ""))
	if code != 200 || body != `{"channels":{"bystander":{}}}` {
		t.Fatalf("channels: %d %s", code, body)
	}
}

// A subscriber that never reads while events flow is disconnected as a slow
// consumer; the others get every event.
func TestHostileSlowConsumer(t *testing.T) {
	srv, addr := startServer(t, pusher.Options{MaxOutboundBuffer: 64 << 10, MaxRequestSize: 100000}, Config{})
	b := newBystander(t, addr)
	b.c.subscribe("firehose")
	slow := connectConn(t, dialSmallRcvBuf(t, addr), addr)
	slow.established()
	slow.subscribe("firehose")
	// From here on the slow client never reads.
	before := heapAfterGC()

	const batches, perBatch, size = 100, 10, 4000
	const total = batches * perBatch
	got := make(chan error, 1)
	go func() {
		// The bystander reads every event as they come.
		for i := 0; i < total; {
			f, err := b.c.tryRead(10 * time.Second)
			if err != nil {
				got <- fmt.Errorf("after %d events: %v", i, err)
				return
			}
			var e event
			if err := json.Unmarshal(f.payload, &e); err != nil || e.Event != "big" {
				got <- fmt.Errorf("event %d: %q", i, truncateBytes(f.payload, 100))
				return
			}
			if want := fmt.Sprintf("%06d", i); !strings.HasPrefix(e.DataString(), want) {
				got <- fmt.Errorf("event %d has data %.10s", i, e.DataString())
				return
			}
			i++
		}
		got <- nil
	}()
	api := dial(t, addr)
	r := bufio.NewReader(api)
	pad := strings.Repeat("x", size-6)
	for i := range batches {
		var sb strings.Builder
		sb.WriteString(`{"batch":[`)
		for j := range perBatch {
			if j > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"name":"big","channel":"firehose","data":"%06d%s"}`, i*perBatch+j, pad)
		}
		sb.WriteString(`]}`)
		fmt.Fprint(api, signedRequest("POST", "/apps/"+testAppID+"/batch_events", sb.String()))
		if code, body := readResponse(t, r); code != 200 {
			t.Fatalf("batch %d: %d %s", i, code, body)
		}
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("bystander: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("bystander did not receive every event")
	}
	waitFor(t, 5*time.Second, "the slow consumer is disconnected", func() (bool, string) {
		st := stats(srv)
		return st.SlowConsumerCloses == 1 && st.Closes[4100] == 1 && st.Apps[0].Connections == 1,
			fmt.Sprintf("SlowConsumerCloses %d, Closes %v, app Connections %d", st.SlowConsumerCloses, st.Closes, st.Apps[0].Connections)
	})
	// What the slow client can still read ends with the connection closed.
	slow.conn.(*net.TCPConn).SetReadBuffer(1 << 20)
	expectClosed(t, slow.conn, slow.r, 10*time.Second)
	b.served()
	assertHeapGrowth(t, before, 16*mib, "slow consumer")
}

// ---------------------------------------------------------------------------
// Clients that vanish while the server writes to them

// Regression (leak, cross-connection writes): when the 101 or the
// connection_established write failed (the client closed right after sending
// its upgrade), gnet ran OnClose inside that write, before upgrade() stored
// the session in st.sess, and the session was never released. Observed after
// 200-300 such clients: app Connections and the max_connections quota
// counter stayed at 160-200 instead of 1 (an app with max_connections = 50
// refused every new client with 4004), and the leaked sessions' pings
// (Sweep, after ping_interval) were written to the closed fd number, which
// the kernel had given to other clients: idle HTTP connections received
// {"event":"pusher:ping"} frames. Expected: every session released, the
// quota free, nothing written to other connections. This is the attack over
// real sockets; TestRegressionUpgradeWriteFailureLeaksSession makes the
// writes fail exactly.
func TestRegressionUpgradeWriteFailureLeaksSessionOverSockets(t *testing.T) {
	// App "quota" has max_connections = 50; app "pinged" pings after 1 s.
	quota := &pusher.App{ID: "q", Key: "quota-key", Secret: "s", MaxMessageSize: 10000, MaxConnections: 50}
	pinged := &pusher.App{ID: "p", Key: "pinged-key", Secret: "s", MaxMessageSize: 10000, PingInterval: time.Second}
	srv, addr := startServer(t, pusher.Options{Apps: []*pusher.App{testApp(), quota, pinged}}, Config{Loops: 1})
	b := newBystander(t, addr)
	for i := range 300 {
		key := quota.Key
		if i%2 == 1 {
			key = pinged.Key
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, upgradeReq, "/app/"+key, addr, "")
		if i%4 < 2 {
			_ = c.(*net.TCPConn).SetLinger(0)
		}
		_ = c.Close()
	}
	// Idle connections that may get the closed sockets' fd numbers.
	start := time.Now()
	var victims []net.Conn
	for range 20 {
		victims = append(victims, dial(t, addr))
	}
	b.served()
	eventually(t, 5*time.Second, "every attacker's session released", func() (bool, string) {
		st := stats(srv)
		var n [3]int64
		for i, a := range []*pusher.App{testApp(), quota, pinged} {
			if i > 0 {
				n[i] = srv.px.Connections(a)
			}
		}
		return st.Apps[0].Connections == 1 && st.Apps[1].Connections == 0 && st.Apps[2].Connections == 0 && n[1] == 0 && n[2] == 0,
			fmt.Sprintf("app Connections %d/%d/%d, quota counters %d/%d", st.Apps[0].Connections, st.Apps[1].Connections, st.Apps[2].Connections, n[1], n[2])
	})
	// The quota is free for a new client.
	c := connect(t, addr, quota.Key, "")
	if e := c.readEvent(); e.Event != "pusher:connection_established" {
		t.Errorf("a new client got %s %s", e.Event, e.DataString())
	}
	// Nothing is written to the idle connections: a leaked session would be
	// pinged after ping_interval = 1 s by the sweep that runs every second.
	stray := 0
	for _, v := range victims {
		// (A deadline already past would fail the read without looking at
		// what the socket holds.)
		_ = v.SetReadDeadline(later(start.Add(2500*time.Millisecond), time.Now().Add(10*time.Millisecond)))
		buf := make([]byte, 256)
		if n, _ := v.Read(buf); n > 0 {
			stray++
			if stray == 1 {
				t.Errorf("an idle HTTP connection received %q", buf[:n])
			}
		}
	}
	if stray > 0 {
		t.Errorf("%d of %d idle connections received frames of other (leaked) sessions", stray, len(victims))
	}
	b.served()
}
