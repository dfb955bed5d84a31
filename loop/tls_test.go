package loop

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/reverbgo/reverb/internal/looptls"
	"github.com/reverbgo/reverb/internal/testkit"
	"github.com/reverbgo/reverb/pusher"
	"github.com/reverbgo/reverb/wsproto"
)

// selfSigned makes a certificate for 127.0.0.1 and returns the server config
// and a pool that trusts it.
func selfSigned(t testing.TB) (*tls.Config, *x509.CertPool) {
	cert, pool := testkit.SelfSigned(t)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, pool
}

// startTLSServer starts a real server with TLS (cfg.TLS defaults to a
// self-signed certificate) and returns it, its address and a client config
// that trusts it.
func startTLSServer(t testing.TB, opts pusher.Options, cfg Config) (*Server, string, *tls.Config) {
	t.Helper()
	var pool *x509.CertPool
	if cfg.TLS == nil {
		cfg.TLS, pool = selfSigned(t)
	}
	srv, addr := startServer(t, opts, cfg)
	return srv, addr, &tls.Config{RootCAs: pool}
}

// dialTLS connects and completes the TLS handshake.
func dialTLS(t testing.TB, addr string, cc *tls.Config) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connectTLS upgrades a TLS connection to /app/{key} and reads
// connection_established.
func connectTLS(t testing.TB, c net.Conn, addr string) *wsClient {
	t.Helper()
	fmt.Fprintf(c, upgradeReq, "/app/"+testKey+"?protocol=7&client=js&version=8.4.0", addr, "")
	cl := &wsClient{t: t, conn: c, r: bufio.NewReader(c)}
	cl.expect101()
	cl.established()
	return cl
}

// tlsBystander is a wss client subscribed to "bystander"; served checks it
// still receives events triggered over HTTPS.
type tlsBystander struct {
	t    testing.TB
	addr string
	cc   *tls.Config
	c    *wsClient
	seq  int
}

func newTLSBystander(t testing.TB, addr string, cc *tls.Config) *tlsBystander {
	t.Helper()
	c := connectTLS(t, dialTLS(t, addr, cc), addr)
	c.subscribe("bystander")
	return &tlsBystander{t: t, addr: addr, cc: cc, c: c}
}

func (b *tlsBystander) served() {
	b.t.Helper()
	b.seq++
	want := fmt.Sprintf(`{"seq":%d}`, b.seq)
	api := dialTLS(b.t, b.addr, b.cc)
	defer api.Close()
	fmt.Fprint(api, signedRequest("POST", "/apps/"+testAppID+"/events", fmt.Sprintf(`{"name":"tick","channel":"bystander","data":%q}`, want)))
	if code, body := readResponse(b.t, bufio.NewReader(api)); code != 200 {
		b.t.Fatalf("bystander trigger: %d %s", code, body)
	}
	for {
		e := b.c.readEvent()
		if e.Event == "pusher:ping" {
			continue
		}
		if e.Event != "tick" || e.DataString() != want {
			b.t.Fatalf("bystander got %s %s, want tick %s", e.Event, e.Data, want)
		}
		return
	}
}

// TestTLSServesWebSocketsAndTheAPIOnOnePort: wss:// upgrade, subscribe and
// broadcasts triggered over HTTPS (keep-alive, API responses from the worker
// pool), 20 rounds, on one port.
func TestTLSServesWebSocketsAndTheAPIOnOnePort(t *testing.T) {
	app := testApp()
	app.MaxMessageSize = 100000
	srv, addr, cc := startTLSServer(t, pusher.Options{Apps: []*pusher.App{app}, MaxRequestSize: 200000}, Config{})
	ws := connectTLS(t, dialTLS(t, addr, cc), addr)
	ws.subscribe("secure")
	api := dialTLS(t, addr, cc)
	r := bufio.NewReader(api)
	for i := range 20 {
		data := fmt.Sprintf("over tls %d", i)
		fmt.Fprint(api, signedRequest("POST", "/apps/"+testAppID+"/events", `{"name":"e","channel":"secure","data":"`+data+`"}`))
		if code, body := readResponse(t, r); code != 200 || body != "{}" {
			t.Fatalf("round %d: trigger: %d %s", i, code, body)
		}
		if e := ws.expectEvent("e"); e.DataString() != data {
			t.Fatalf("round %d: event %+v", i, e)
		}
		fmt.Fprint(api, signedRequest("GET", "/apps/"+testAppID+"/channels", ""))
		if code, body := readResponse(t, r); code != 200 || !strings.Contains(body, `"secure"`) {
			t.Fatalf("round %d: channels: %d %s", i, code, body)
		}
	}
	fmt.Fprint(api, "GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
	if code, body := readResponse(t, r); code != 200 || !strings.Contains(body, "OK") {
		t.Fatalf("up: %d %s", code, body)
	}
	// Client messages and a large broadcast (several records per write).
	ws.send(`{"event":"pusher:ping","data":{}}`)
	ws.expectEvent("pusher:pong")
	big := strings.Repeat("x", 40000)
	fmt.Fprint(api, signedRequest("POST", "/apps/"+testAppID+"/events", `{"name":"big","channel":"secure","data":"`+big+`"}`))
	if code, body := readResponse(t, r); code != 200 {
		t.Fatalf("big trigger: %d %s", code, body)
	}
	if e := ws.expectEvent("big"); e.DataString() != big {
		t.Fatalf("big event: %d bytes", len(e.DataString()))
	}
	st := stats(srv)
	if st.TLS.InProgress != 0 || st.TLS.Failed != 0 || st.TLS.TimedOut != 0 || st.TLS.Refused != 0 {
		t.Fatalf("TLS stats %+v", st.TLS)
	}
}

// byteConn writes one byte per system call.
type byteConn struct{ net.Conn }

func (c byteConn) Write(b []byte) (int, error) {
	for i := range b {
		if _, err := c.Conn.Write(b[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(b), nil
}

// TestTLSOneBytePerWrite: a client whose TLS records (handshake included)
// arrive one byte per write upgrades, subscribes and gets an event.
func TestTLSOneBytePerWrite(t *testing.T) {
	_, addr, cc := startTLSServer(t, pusher.Options{}, Config{})
	raw := dial(t, addr)
	_ = raw.(*net.TCPConn).SetNoDelay(true)
	c := tls.Client(byteConn{raw}, &tls.Config{RootCAs: cc.RootCAs, ServerName: "127.0.0.1"})
	ws := connectTLS(t, c, addr)
	ws.subscribe("slow-writer")
	if code, body := apiTLS(t, addr, cc, signedRequest("POST", "/apps/"+testAppID+"/events", `{"name":"e","channel":"slow-writer","data":"d"}`)); code != 200 {
		t.Fatalf("trigger: %d %s", code, body)
	}
	ws.expectEvent("e")
}

// apiTLS sends one request on a fresh TLS connection and reads the response.
func apiTLS(t testing.TB, addr string, cc *tls.Config, req string) (int, string) {
	t.Helper()
	c := dialTLS(t, addr, cc)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, bufio.NewReader(c))
}

// TestTLSHandshakeTimeout: a client that sends nothing and one that sends
// half a ClientHello are closed within the handshake timeout, and counted;
// the loop's HTTP timeout covers the time after the TLS handshake.
func TestTLSHandshakeTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv, addr, cc := startTLSServer(t, pusher.Options{}, Config{HandshakeTimeout: timeout})
	b := newTLSBystander(t, addr, cc)
	// The listeners defer accepting a connection until its first bytes, so
	// the "silent" client sends the first byte of a record header.
	silent := dial(t, addr)
	if _, err := silent.Write([]byte{0x16}); err != nil {
		t.Fatal(err)
	}
	half := dial(t, addr)
	hello := []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03}
	if _, err := half.Write(hello); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, c := range []net.Conn{silent, half} {
		if got := expectClosed(t, c, c, 5*time.Second); len(got) != 0 {
			t.Fatalf("the server answered %q", got)
		}
	}
	if d := time.Since(start); d > timeout+2*time.Second {
		t.Fatalf("closed after %v, timeout %v", d, timeout)
	}
	waitFor(t, 5*time.Second, "two TLS handshakes timed out", func() (bool, string) {
		st := stats(srv).TLS
		return st.TimedOut == 2 && st.InProgress == 0 && st.Failed == 0, fmt.Sprintf("%+v", st)
	})
	// After the TLS handshake, a request that never comes is the loop's
	// HTTP handshake timeout.
	idle := dialTLS(t, addr, cc)
	expectClosed(t, idle, idle, 5*time.Second)
	waitFor(t, 5*time.Second, "the HTTP timeout counted", func() (bool, string) {
		st := stats(srv)
		return st.HandshakeFailures["timeout"] == 1, fmt.Sprintf("%v", st.HandshakeFailures)
	})
	b.served()
}

// TestTLSBadClientHello: bytes that are not a TLS handshake close the
// connection and count as failed handshakes; the server serves the others.
func TestTLSBadClientHello(t *testing.T) {
	srv, addr, cc := startTLSServer(t, pusher.Options{}, Config{})
	b := newTLSBystander(t, addr, cc)
	garbage := [][]byte{
		[]byte("GET /up HTTP/1.1\r\nHost: x\r\n\r\n"),                       // plain HTTP on the TLS port
		append([]byte{0x16, 0x03, 0x01, 0x00, 0x20}, make([]byte, 0x20)...), // a handshake record of zeros
		{0x16, 0x03, 0x01, 0xff, 0xff},                                      // a record longer than allowed
		{0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5},                       // application data first
	}
	for i, g := range garbage {
		c := dial(t, addr)
		if _, err := c.Write(g); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c, c, 5*time.Second)
		waitFor(t, 5*time.Second, "the bad handshake is counted", func() (bool, string) {
			st := stats(srv).TLS
			return st.Failed == int64(i+1) && st.InProgress == 0, fmt.Sprintf("%+v", st)
		})
		b.served()
	}
}

// TestTLSSlowConsumer: a wss subscriber that stops reading is disconnected
// as a slow consumer (the outbound buffer counts ciphertext); the others get
// every event.
func TestTLSSlowConsumer(t *testing.T) {
	srv, addr, cc := startTLSServer(t, pusher.Options{MaxOutboundBuffer: 64 << 10, MaxRequestSize: 100000}, Config{})
	b := newTLSBystander(t, addr, cc)
	b.c.subscribe("firehose")
	raw := dialSmallRcvBuf(t, addr)
	slow := connectTLS(t, tls.Client(raw, &tls.Config{RootCAs: cc.RootCAs, ServerName: "127.0.0.1"}), addr)
	slow.subscribe("firehose")
	// From here on the slow client never reads.
	const batches, perBatch, size = 100, 10, 4000
	const total = batches * perBatch
	got := make(chan error, 1)
	go func() {
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
	api := dialTLS(t, addr, cc)
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
	case <-time.After(30 * time.Second):
		t.Fatal("bystander did not receive every event")
	}
	waitFor(t, 5*time.Second, "the slow consumer is disconnected", func() (bool, string) {
		st := stats(srv)
		return st.SlowConsumerCloses == 1 && st.Closes[4100] == 1 && st.Apps[0].Connections == 1,
			fmt.Sprintf("SlowConsumerCloses %d, Closes %v, app Connections %d", st.SlowConsumerCloses, st.Closes, st.Apps[0].Connections)
	})
	_ = raw.(*net.TCPConn).SetReadBuffer(1 << 20)
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, raw); err != nil && !isConnGone(err) {
		t.Fatalf("the slow consumer's connection was not closed: %v", err)
	}
	b.served()
}

// TestTLSMaxConnectionsCountsHandshakes: connections whose TLS handshake is
// under way count against max_connections.
func TestTLSMaxConnectionsCountsHandshakes(t *testing.T) {
	srv, addr, cc := startTLSServer(t, pusher.Options{}, Config{MaxConnections: 2})
	// Each sends the first byte of its ClientHello and stops (the listeners
	// defer accepting until the first bytes).
	a := dial(t, addr)
	b := dial(t, addr)
	for _, c := range []net.Conn{a, b} {
		if _, err := c.Write([]byte{0x16}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "two handshakes in progress", func() (bool, string) {
		st := stats(srv)
		return st.TLS.InProgress == 2 && st.Connections == 2, fmt.Sprintf("%+v, connections %d", st.TLS, st.Connections)
	})
	if _, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cc); err == nil {
		t.Fatal("a third connection completed its handshake past max_connections")
	}
	if got := srv.Refused(); got != 1 {
		t.Fatalf("Refused() = %d", got)
	}
	a.Close()
	b.Close()
	waitFor(t, 5*time.Second, "the idle connections are gone", func() (bool, string) {
		st := stats(srv)
		return st.TLS.InProgress == 0 && st.Connections == 0, fmt.Sprintf("%+v, connections %d", st.TLS, st.Connections)
	})
	if code, _ := apiTLS(t, addr, cc, "GET /up HTTP/1.1\r\nHost: x\r\n\r\n"); code != 200 {
		t.Fatalf("up: %d", code)
	}
}

// TestTLSClientAddress: the handshake sees the client's own address (the
// relay showed a Unix socket).
func TestTLSClientAddress(t *testing.T) {
	scfg, pool := selfSigned(t)
	seen := make(chan string, 20)
	scfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		seen <- h.Conn.RemoteAddr().String()
		return nil, nil
	}
	_, addr, _ := startTLSServer(t, pusher.Options{}, Config{TLS: scfg})
	for i := range 20 {
		c := dialTLS(t, addr, &tls.Config{RootCAs: pool})
		select {
		case got := <-seen:
			if want := c.LocalAddr().String(); got != want {
				t.Fatalf("round %d: server saw %s, client is %s", i, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no ClientHello seen")
		}
		c.Close()
	}
}

// TestTLSReusePort: two servers with TLS share a port with SO_REUSEPORT.
func TestTLSReusePort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := testkit.Port(t, l.Addr().String())
	l.Close()
	scfg, pool := selfSigned(t)
	var servers []*Server
	for range 2 {
		px, err := pusher.NewServer(pusher.Options{Apps: []*pusher.App{testApp()}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		srv := New(px, Config{Host: "127.0.0.1", Port: port, Loops: 1, ReusePort: true, TLS: scfg})
		testkit.Serve(t, srv)
		servers = append(servers, srv)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cc := &tls.Config{RootCAs: pool}
	for i := range 20 {
		if code, body := apiTLS(t, addr, cc, "GET /up HTTP/1.1\r\nHost: x\r\n\r\n"); code != 200 {
			t.Fatalf("round %d: %d %s", i, code, body)
		}
	}
	for i, srv := range servers {
		if st := stats(srv).TLS; st.Failed != 0 || st.InProgress != 0 {
			t.Fatalf("server %d: %+v", i, st)
		}
	}
}

// TestTLSDrain: a graceful shutdown closes wss sessions with 4200.
func TestTLSDrain(t *testing.T) {
	srv, addr, cc := startTLSServer(t, pusher.Options{}, Config{})
	var clients []*wsClient
	for range 5 {
		c := connectTLS(t, dialTLS(t, addr, cc), addr)
		c.subscribe("news")
		clients = append(clients, c)
	}
	idle := dial(t, addr) // a TLS handshake that stops after one byte
	if _, err := idle.Write([]byte{0x16}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Drain(context.Background(), 3*time.Second) }()
	for i, c := range clients {
		e := c.expectEvent("pusher:error")
		if !strings.Contains(e.DataString(), `"code":4200`) {
			t.Fatalf("client %d: %s", i, e.DataString())
		}
		if code := c.expectClose(); code != 4200 {
			t.Fatalf("client %d: close code %d", i, code)
		}
		c.expectEOF()
	}
	expectClosed(t, idle, idle, 5*time.Second)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return")
	}
}

// ---------------------------------------------------------------------------
// Exact splits: the TLS path of the handlers over a fake gnet connection
// whose loop is the test goroutine.

// fakeLoop is the gnet.EventLoop of fakeGnet: Execute queues on tasks, which
// the test runs.
type fakeLoop struct {
	gnet.EventLoop
	tasks chan func()
}

func (l *fakeLoop) Execute(ctx context.Context, r gnet.Runnable) error {
	l.tasks <- func() { _ = r.Run(ctx) }
	return nil
}

// fakeGnet is a gnet.Conn with the methods tlsConn uses; each read is
// exactly what the test feeds.
type fakeGnet struct {
	gnet.Conn
	writes int // Write calls: one per TLS record after the handshake
	h      *harness
	loop   *fakeLoop
	st     *connState
	in     []byte
	out    *pipeBuf // to the client
	closed bool
}

func (f *fakeGnet) Next(int) ([]byte, error)  { b := f.in; f.in = nil; return b, nil }
func (f *fakeGnet) OutboundBuffered() int     { return 0 }
func (f *fakeGnet) RemoteAddr() net.Addr      { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242} }
func (f *fakeGnet) EventLoop() gnet.EventLoop { return f.loop }

func (f *fakeGnet) Write(p []byte) (int, error) {
	if f.closed {
		f.h.t.Errorf("Write on a closed connection")
		return 0, net.ErrClosed
	}
	f.writes++
	f.out.write(p)
	return len(p), nil
}

func (f *fakeGnet) Wake(cb gnet.AsyncCallback) error {
	f.loop.tasks <- func() {
		f.traffic()
		if cb != nil {
			_ = cb(f, nil)
		}
	}
	return nil
}

func (f *fakeGnet) Close() error {
	f.loop.tasks <- f.closeNow
	return nil
}

// feed delivers b as one read.
func (f *fakeGnet) feed(b []byte) {
	f.in = append(f.in, b...)
	f.traffic()
}

func (f *fakeGnet) traffic() {
	if f.closed {
		return
	}
	if f.h.s.onTraffic(f.st) == gnet.Close {
		f.closeNow()
	}
	f.h.settle()
}

func (f *fakeGnet) closeNow() {
	if !f.closed {
		f.closed = true
		f.h.s.onClose(f.st)
		f.out.close()
	}
}

// pipeBuf is an unbounded in-memory byte stream.
type pipeBuf struct {
	mu     sync.Mutex
	cond   *sync.Cond
	b      []byte
	closed bool
}

func newPipeBuf() *pipeBuf { p := &pipeBuf{}; p.cond = sync.NewCond(&p.mu); return p }

func (p *pipeBuf) write(b []byte) {
	p.mu.Lock()
	p.b = append(p.b, b...)
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *pipeBuf) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *pipeBuf) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.b) == 0 && !p.closed {
		p.cond.Wait()
	}
	if len(p.b) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.b)
	p.b = p.b[n:]
	return n, nil
}

// clientSide is the client's net.Conn: its writes go to the test, its reads
// come from the server's output.
type clientSide struct {
	net.Conn
	writes chan []byte
	in     *pipeBuf
}

func (c *clientSide) Write(b []byte) (int, error) {
	c.writes <- append([]byte(nil), b...)
	return len(b), nil
}
func (c *clientSide) Read(b []byte) (int, error)       { return c.in.read(b) }
func (c *clientSide) Close() error                     { c.in.close(); return nil }
func (c *clientSide) SetDeadline(time.Time) error      { return nil }
func (c *clientSide) SetReadDeadline(time.Time) error  { return nil }
func (c *clientSide) SetWriteDeadline(time.Time) error { return nil }
func (c *clientSide) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *clientSide) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// splitRun runs one client over a fake connection: a TLS handshake, then
// an upgrade with a subscribe behind it in one write. Each write of the
// client, at offset off of its byte stream, is delivered by deliver. It
// returns the length of the client's stream and fails the test unless the
// client got the 101, connection_established and subscription_succeeded.
//
// then, if not nil, runs on the client's goroutine after that.
func splitRun(t *testing.T, h *harness, cc *tls.Config, deliver func(f *fakeGnet, b []byte, off int), then func(f *fakeGnet, wc *wsClient) error) int {
	t.Helper()
	loop := &fakeLoop{tasks: make(chan func(), 64)}
	f := &fakeGnet{h: h, loop: loop, out: newPipeBuf()}
	f.st = h.s.newConn(h.sh, f)
	h.s.openTLS(f.st, f)
	cs := &clientSide{writes: make(chan []byte, 16), in: f.out}
	result := make(chan error, 1)
	go func() {
		c := tls.Client(cs, cc)
		defer c.Close()
		if _, err := fmt.Fprintf(c, "%s", append(fakeUpgrade(testKey), clientFrame(subscribeMsg("split"))...)); err != nil {
			result <- err
			return
		}
		r := bufio.NewReader(c)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			result <- fmt.Errorf("reading the 101: %v", err)
			return
		}
		if resp.StatusCode != 101 {
			result <- fmt.Errorf("status %d", resp.StatusCode)
			return
		}
		wc := &wsClient{t: t, conn: c, r: r}
		for _, want := range []string{"pusher:connection_established", "pusher_internal:subscription_succeeded"} {
			fr, err := wc.tryRead(5 * time.Second)
			if err != nil || fr.op != ws.OpText {
				result <- fmt.Errorf("waiting for %s: %v %q", want, err, fr.payload)
				return
			}
			if !strings.Contains(string(fr.payload), want) {
				result <- fmt.Errorf("got %s, want %s", fr.payload, want)
				return
			}
		}
		if then != nil {
			result <- then(f, wc)
			return
		}
		result <- nil
	}()
	off := 0
	timeout := time.After(10 * time.Second)
	for {
		select {
		case b := <-cs.writes:
			deliver(f, b, off)
			off += len(b)
		case task := <-loop.tasks:
			task()
		case err := <-result:
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			f.closeNow()
			return off
		case <-timeout:
			t.Fatalf("no answer after %d bytes from the client", off)
		}
	}
}

// TestTLSRecordSplitAtEveryByte delivers a client's whole TLS byte stream
// (ClientHello, Finished, the records of an upgrade and a subscribe) in two
// reads split at every byte, then one byte per read: the answers are right
// each time.
func TestTLSRecordSplitAtEveryByte(t *testing.T) {
	h := newHarness(t, pusher.Options{})
	scfg, pool := selfSigned(t)
	h.s.tls = looptls.NewServer(scfg, looptls.Options{HandshakeTimeout: 10 * time.Second})
	defer h.s.tls.Close()
	// X25519 only keeps the ClientHello short (fewer split points).
	cc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", CurvePreferences: []tls.CurveID{tls.X25519}}
	whole := func(f *fakeGnet, b []byte, _ int) { f.feed(b) }
	total := splitRun(t, h, cc, whole, nil)
	for k := 1; k < total; k++ {
		splitRun(t, h, cc, func(f *fakeGnet, b []byte, off int) {
			if cut := k - off; cut > 0 && cut < len(b) {
				f.feed(b[:cut])
				f.feed(b[cut:])
				return
			}
			f.feed(b)
		}, nil)
	}
	splitRun(t, h, cc, func(f *fakeGnet, b []byte, _ int) {
		for i := range b {
			f.feed(b[i : i+1])
		}
	}, nil)
	if st := h.s.tlsStats(); st.InProgress != 0 || st.Failed != 0 {
		t.Fatalf("TLS stats %+v", st)
	}
}

// TestTLSInputWhileTheHandshakeEnds: the client's Finished arrives with the
// start of a large request, and the rest arrives once the handshake worker
// has read the Finished but before the loop learnt the handshake ended. The
// request is answered (regression: the rest was appended to bytes the
// worker had already read, which were then decrypted again: bad record MAC).
func TestTLSInputWhileTheHandshakeEnds(t *testing.T) {
	h := newHarness(t, pusher.Options{MaxRequestSize: 100000})
	scfg, pool := selfSigned(t)
	h.s.maxReq = 100000
	h.s.tls = looptls.NewServer(scfg, looptls.Options{HandshakeTimeout: 10 * time.Second})
	defer h.s.tls.Close()
	cc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	for round := range 20 {
		loop := &fakeLoop{tasks: make(chan func(), 64)}
		f := &fakeGnet{h: h, loop: loop, out: newPipeBuf()}
		f.st = h.s.newConn(h.sh, f)
		h.s.openTLS(f.st, f)
		cs := &clientSide{writes: make(chan []byte, 1024), in: f.out}
		written := make(chan struct{})
		result := make(chan error, 1)
		// A 40 KB health check, answered on the loop.
		req := "GET /up HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 40000) + "\r\n\r\n"
		go func() {
			c := tls.Client(cs, cc)
			defer c.Close()
			if _, err := io.WriteString(c, req); err != nil {
				result <- err
				return
			}
			close(written)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				result <- err
				return
			}
			if resp.StatusCode != 200 {
				result <- fmt.Errorf("status %d", resp.StatusCode)
				return
			}
			result <- nil
		}()
		// Run the loop until the client has written its Finished and the
		// request, keeping all but the ClientHello back.
		var held []byte
		hello := true
		for w := written; w != nil; {
			select {
			case b := <-cs.writes:
				if hello {
					f.feed(b)
					hello = false
				} else {
					held = append(held, b...)
				}
			case task := <-loop.tasks:
				task()
			case <-w:
				w = nil
			case err := <-result:
				t.Fatalf("round %d: client: %v", round, err)
			}
		}
		for len(cs.writes) > 0 {
			held = append(held, <-cs.writes...)
		}
		completed := h.s.tls.Stats().Completed
		half := len(held) / 2
		f.feed(held[:half]) // the Finished and half the request
		waitFor(t, 5*time.Second, "the handshake worker finished", func() (bool, string) {
			return h.s.tls.Stats().Completed > completed, fmt.Sprintf("%+v", h.s.tls.Stats())
		})
		f.feed(held[half:]) // before the loop runs the worker's tasks
		for done := false; !done; {
			select {
			case task := <-loop.tasks:
				task()
			case err := <-result:
				if err != nil {
					t.Fatalf("round %d: client: %v", round, err)
				}
				done = true
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: no answer", round)
			}
		}
		f.closeNow()
	}
}

// TestTLSWritevCoalesces: small frames of one Writev share a record; large
// ones are split into records (their size is crypto/tls's, which starts
// small: not checked); the client reads them all, in order.
func TestTLSWritevCoalesces(t *testing.T) {
	h := newHarness(t, pusher.Options{})
	scfg, pool := selfSigned(t)
	h.s.tls = looptls.NewServer(scfg, looptls.Options{HandshakeTimeout: 10 * time.Second})
	defer h.s.tls.Close()
	cc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	frame := func(s string) []byte { return wsproto.AppendFrame(nil, ws.OpText, []byte(s)) }
	cases := []struct {
		name    string
		frames  [][]byte
		records int
	}{
		{"three small frames", [][]byte{frame("a"), frame("bb"), frame("ccc")}, 1},
		{"small, large, small", [][]byte{frame("a"), frame(strings.Repeat("x", 20000)), frame("c")}, -1},
		{"two of 10 KB", [][]byte{frame(strings.Repeat("y", 10000)), frame(strings.Repeat("z", 10000))}, -1},
		{"ten small frames", slices.Repeat([][]byte{frame(strings.Repeat("m", 100))}, 10), 1},
		{"one frame", [][]byte{frame("solo")}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			splitRun(t, h, cc, func(f *fakeGnet, b []byte, _ int) { f.feed(b) }, func(f *fakeGnet, wc *wsClient) error {
				records := make(chan int, 1)
				f.loop.tasks <- func() {
					before := f.writes
					if _, err := f.st.Writev(tc.frames); err != nil {
						t.Errorf("Writev: %v", err)
					}
					records <- f.writes - before
				}
				for i, want := range tc.frames {
					fr, err := wc.tryRead(5 * time.Second)
					if err != nil {
						return fmt.Errorf("frame %d: %v", i, err)
					}
					if string(frame(string(fr.payload))) != string(want) {
						return fmt.Errorf("frame %d: %.20q", i, fr.payload)
					}
				}
				if n := <-records; tc.records > 0 && n != tc.records {
					return fmt.Errorf("%d records, want %d", n, tc.records)
				}
				return nil
			})
		})
	}
}

// stalledHello sends a real ClientHello on a new connection and never
// answers the server: its handshake holds a worker until it times out.
func stalledHello(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := dial(t, addr)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	go func() {
		_ = tls.Client(blockedReader{c, block}, &tls.Config{InsecureSkipVerify: true}).Handshake()
	}()
	return c
}

// blockedReader never returns what the server sent.
type blockedReader struct {
	net.Conn
	block chan struct{}
}

func (c blockedReader) Read([]byte) (int, error) { <-c.block; return 0, io.EOF }

// TestTLSHandshakePoolFull: past handshake_workers running and
// handshake_queue waiting, connections are closed and counted as refused;
// once the stalled handshakes time out, clients are served again.
func TestTLSHandshakePoolFull(t *testing.T) {
	const timeout = time.Second
	srv, addr, cc := startTLSServer(t, pusher.Options{}, Config{HandshakeTimeout: timeout, TLSHandshakeWorkers: 1, TLSHandshakeQueue: 1})
	stalledHello(t, addr)
	waitFor(t, 5*time.Second, "one handshake on the worker", func() (bool, string) {
		st := srv.tls.Stats()
		return st.Running == 1, fmt.Sprintf("%+v", st)
	})
	stalledHello(t, addr)
	waitFor(t, 5*time.Second, "one handshake queued", func() (bool, string) {
		st := srv.tls.Stats()
		return st.Queued == 1, fmt.Sprintf("%+v", st)
	})
	third := stalledHello(t, addr)
	expectClosed(t, third, third, 5*time.Second)
	waitFor(t, 5*time.Second, "the third handshake refused", func() (bool, string) {
		st := stats(srv).TLS
		return st.Refused == 1 && st.InProgress == 2, fmt.Sprintf("%+v", st)
	})
	waitFor(t, 5*time.Second, "the stalled handshakes time out", func() (bool, string) {
		st := stats(srv).TLS
		return st.TimedOut == 2 && st.InProgress == 0, fmt.Sprintf("%+v", st)
	})
	for i := range 20 {
		if code, body := apiTLS(t, addr, cc, "GET /up HTTP/1.1\r\nHost: x\r\n\r\n"); code != 200 {
			t.Fatalf("round %d: %d %s", i, code, body)
		}
	}
}

// shrinkAll runs the idle-TLS sweep on every loop and waits for it.
func shrinkAll(t *testing.T, srv *Server) {
	t.Helper()
	srv.mu.Lock()
	list := append([]*shard(nil), srv.list...)
	srv.mu.Unlock()
	for _, sh := range list {
		done := make(chan struct{})
		_ = sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			shrinkIdleTLS(sh)
			close(done)
			return nil
		}))
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the sweep did not run")
		}
	}
}

// TestTLSIdleConnectionsShrink: connections idle across two sweeps drop
// their cipher state, and then receive broadcasts, answer pings and take
// subscriptions as before, in both directions; 20 rounds.
func TestTLSIdleConnectionsShrink(t *testing.T) {
	srv, addr, cc := startTLSServer(t, pusher.Options{}, Config{})
	ws := connectTLS(t, dialTLS(t, addr, cc), addr)
	ws.subscribe("quiet")
	api := dialTLS(t, addr, cc)
	r := bufio.NewReader(api)
	for i := range 20 {
		shrinkAll(t, srv) // marks them idle
		shrinkAll(t, srv) // shrinks them
		data := fmt.Sprintf("after idle %d", i)
		fmt.Fprint(api, signedRequest("POST", "/apps/"+testAppID+"/events", `{"name":"e","channel":"quiet","data":"`+data+`"}`))
		if code, body := readResponse(t, r); code != 200 {
			t.Fatalf("round %d: trigger: %d %s", i, code, body)
		}
		if e := ws.expectEvent("e"); e.DataString() != data {
			t.Fatalf("round %d: event %+v", i, e)
		}
		shrinkAll(t, srv)
		shrinkAll(t, srv)
		ws.send(`{"event":"pusher:ping","data":{}}`)
		ws.expectEvent("pusher:pong")
	}
}

// TestTLSMemoryReturnedAfterABurst: a burst of handshakes followed by quiet
// seconds returns free memory to the OS once, not again without a new
// burst.
func TestTLSMemoryReturnedAfterABurst(t *testing.T) {
	old := burstHandshakes
	burstHandshakes = 5
	t.Cleanup(func() { burstHandshakes = old })
	srv, addr, cc := startTLSServer(t, pusher.Options{}, Config{})
	for range 5 {
		// A request answered: the server has completed the handshake.
		c := dialTLS(t, addr, cc)
		fmt.Fprint(c, "GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
		if code, _ := readResponse(t, bufio.NewReader(c)); code != 200 {
			t.Fatalf("GET /up: %d", code)
		}
		c.Close()
	}
	waitFor(t, 10*time.Second, "one release after the burst", func() (bool, string) {
		n := stats(srv).TLS.MemoryReleases
		return n == 1, fmt.Sprintf("%d releases", n)
	})
	// Quiet with no new burst: no second release (a tick would have
	// released by now, burstQuiet+1 ticks later).
	deadline := time.Now().Add(time.Duration(burstQuiet+1) * time.Second)
	for time.Now().Before(deadline) {
		if n := stats(srv).TLS.MemoryReleases; n != 1 {
			t.Fatalf("%d releases without a new burst", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
