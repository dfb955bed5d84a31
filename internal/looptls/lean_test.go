package looptls

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// collect returns a send callback that appends copies of records to *recs.
func collect(recs *[][]byte) func([]byte) {
	return func(b []byte) { *recs = append(*recs, append([]byte(nil), b...)) }
}

// TestRFC8448 checks key derivation and record protection against the
// simple 1-RTT handshake of RFC 8448 §3 (TLS_AES_128_GCM_SHA256).
func TestRFC8448(t *testing.T) {
	cAP := unhex(t, "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")
	sAP := unhex(t, "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
	var sent [][]byte
	r, err := newRec13(tls.TLS_AES_128_GCM_SHA256, cAP, sAP, collect(&sent))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(r.in.iv[:]); got != "5b78923dee08579033e523d9" {
		t.Fatalf("client iv %s", got)
	}
	if got := hex.EncodeToString(r.out.iv[:]); got != "cf782b88dd83549aadf1e984" {
		t.Fatalf("server iv %s", got)
	}
	if got := hex.EncodeToString(expandLabel(r.suite.hash, sAP, "key", 16)); got != "9f02283b6c9c07efc26bb9f2ac92e356" {
		t.Fatalf("server key %s", got)
	}
	if got := hex.EncodeToString(expandLabel(r.suite.hash, cAP, "key", 16)); got != "17422dda596ed5d9acd890e3c63f5051" {
		t.Fatalf("client key %s", got)
	}
	payload := make([]byte, 50)
	for i := range payload {
		payload[i] = byte(i)
	}
	clientData := unhex(t, "1703030043a23f7054b62c94d0affafe8228ba55cbefacea42f914aa66bcab3f2b9819a8a5b46b395bd54a9a20441e2b62974e1f5a6292a2977014bd1e3deae63aeebb21694915e4")
	clientAlert := unhex(t, "1703030013c9872760655666b74d7ff1153efd6db6d0b0e3")
	serverData := unhex(t, "17030300432e937e11ef4ac740e538ad36005fc4a46932fc3225d05f82aa1b36e30efaf97d90e6dffc602dcb501a59a8fcc49c4bf2e5f0a21c0047c2abf332540dd032e167c2955d")

	got, err := r.decrypt(nil, clientData)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("client record: %x, %v", got, err)
	}
	// The server's record follows its NewSessionTicket (sequence 0).
	r.out.seq = 1
	if err := r.write(payload); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 1 || !bytes.Equal(sent[0], serverData) {
		t.Fatalf("server record:\n%x\nwant\n%x", sent, serverData)
	}
	if _, err := r.decrypt(nil, clientAlert); err != io.EOF {
		t.Fatalf("close_notify: %v", err)
	}
	if _, err := r.decrypt(nil, clientData); err != io.EOF {
		t.Fatalf("after close_notify: %v", err)
	}
}

// peers returns a server rec13 and a client-side one (secrets swapped)
// with random traffic secrets; their records are appended to *toClient and
// *toServer.
func peers(tb testing.TB, suite uint16, toClient, toServer *[][]byte) (srv, cli *rec13) {
	tb.Helper()
	hl := suites13[suite].hashLen
	c, s := make([]byte, hl), make([]byte, hl)
	_, _ = rand.Read(c)
	_, _ = rand.Read(s)
	srv, err := newRec13(suite, c, s, collect(toClient))
	if err != nil {
		tb.Fatal(err)
	}
	cli, err = newRec13(suite, s, c, collect(toServer))
	if err != nil {
		tb.Fatal(err)
	}
	return srv, cli
}

var allSuites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}

// TestRecordSuites runs both directions and KeyUpdates for every suite,
// rec13 against rec13 (crypto/tls cannot be made to pick AES-256-GCM).
func TestRecordSuites(t *testing.T) {
	for _, suite := range allSuites {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			var toClient, toServer [][]byte
			srv, cli := peers(t, suite, &toClient, &toServer)
			exchange := func(size int) {
				t.Helper()
				msg := bytes.Repeat([]byte{'x'}, size)
				if err := cli.write(msg); err != nil {
					t.Fatal(err)
				}
				var got []byte
				for _, r := range toServer {
					var err error
					if got, err = srv.decrypt(got, r); err != nil {
						t.Fatal(err)
					}
				}
				toServer = nil
				if !bytes.Equal(got, msg) {
					t.Fatalf("server got %d bytes, want %d", len(got), size)
				}
				if err := srv.write(msg); err != nil {
					t.Fatal(err)
				}
				got = nil
				for _, r := range toClient {
					if len(r) > recordHeaderLen+maxCiphertext13 {
						t.Fatalf("record of %d bytes", len(r))
					}
					var err error
					if got, err = cli.decrypt(got, r); err != nil {
						t.Fatal(err)
					}
				}
				toClient = nil
				if !bytes.Equal(got, msg) {
					t.Fatalf("client got %d bytes, want %d", len(got), size)
				}
			}
			exchange(100)
			// Shrunk (idle) on both sides, the keys still work.
			srv.shrink()
			cli.shrink()
			if srv.in.aead != nil || srv.out.aead != nil {
				t.Fatal("shrink kept the cipher state")
			}
			exchange(100)
			exchange(maxPlaintext13)
			exchange(3*maxPlaintext13 + 7)
			for _, req := range []byte{0, 1, 1, 0} {
				// The client updates its key; with update_requested the
				// server answers with its own KeyUpdate and updates.
				if err := cli.seal(recTypeHandshake, []byte{hsTypeKeyUpdate, 0, 0, 1, req}); err != nil {
					t.Fatal(err)
				}
				if err := cli.out.update(cli.suite); err != nil {
					t.Fatal(err)
				}
				exchange(10) // client side: the server's KeyUpdate is handled by cli
				if got := srv.out.secret; got != cli.in.secret {
					t.Fatal("write secrets differ after KeyUpdate")
				}
				if req == 1 {
					srv.shrink() // rebuilt from the updated keys
				}
			}
		})
	}
}

// stream returns client records carrying msgs, and their concatenation.
func stream(tb testing.TB, cli *rec13, toServer *[][]byte, msgs ...[]byte) (wire, plain []byte) {
	for _, m := range msgs {
		if len(m) == 0 {
			if err := cli.seal(recTypeAppData, nil); err != nil {
				tb.Fatal(err)
			}
		} else if err := cli.write(m); err != nil {
			tb.Fatal(err)
		}
		plain = append(plain, m...)
	}
	for _, r := range *toServer {
		wire = append(wire, r...)
	}
	*toServer = nil
	return wire, plain
}

// TestRecordSplitEverywhere feeds a multi-record stream (an empty record, a
// KeyUpdate, a padded record among them) cut at every position, with
// Decrypt and with Feed+Read, and one byte at a time.
func TestRecordSplitEverywhere(t *testing.T) {
	build := func() (*rec13, []byte, []byte) {
		var toClient, toServer [][]byte
		srv, cli := peers(t, tls.TLS_AES_128_GCM_SHA256, &toClient, &toServer)
		w1, p1 := stream(t, cli, &toServer, []byte("a"), nil, []byte("bcdefgh"))
		// A KeyUpdate, then records under the new key, one with padding.
		_ = cli.seal(recTypeHandshake, []byte{hsTypeKeyUpdate, 0, 0, 1, 0})
		_ = cli.out.update(cli.suite)
		_ = cli.seal(recTypeAppData, []byte("pad"))
		w2, p2 := stream(t, cli, &toServer, bytes.Repeat([]byte("z"), 40))
		// seal with trailing zeros: content "q", type, then padding.
		nonce, _ := cli.out.makeNonce()
		rec := []byte{recTypeAppData, 3, 3, 0, 0}
		inner := []byte{'q', recTypeAppData, 0, 0, 0, 0}
		rec[4] = byte(len(inner) + aeadOverhead)
		rec = cli.out.aead.Seal(rec, nonce, inner, rec[:5])
		wire := append(append(w1, w2...), rec...)
		return srv, wire, append(append(append(p1, "pad"...), p2...), 'q')
	}
	_, wire, want := build()
	for i := 0; i <= len(wire); i++ {
		for _, mode := range []string{"decrypt", "feed"} {
			srv, wire2, _ := build()
			if len(wire2) != len(wire) {
				t.Fatal("stream length varies")
			}
			var got []byte
			var err error
			for _, piece := range [][]byte{wire2[:i], wire2[i:]} {
				if mode == "decrypt" {
					got, err = srv.decrypt(got, piece)
				} else {
					srv.feed(piece)
					got, err = srv.read(got)
				}
				if err != nil {
					t.Fatalf("split %d %s: %v", i, mode, err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("split %d %s: got %q want %q", i, mode, got, want)
			}
			if srv.part != nil {
				t.Fatalf("split %d %s: buffer kept after a complete stream", i, mode)
			}
		}
	}
	srv, wire, _ := build()
	var got []byte
	for i := range wire {
		var err error
		if got, err = srv.decrypt(got, wire[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("byte by byte: got %q", got)
	}
}

// TestRecordErrors checks the fatal cases and the alert each sends.
func TestRecordErrors(t *testing.T) {
	type tc struct {
		name  string
		make  func(cli *rec13) []byte // the offending bytes
		err   error
		alert byte
	}
	seal := func(cli *rec13, typ byte, content []byte) []byte {
		var out [][]byte
		cli.send = collect(&out)
		if err := cli.seal(typ, content); err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	cases := []tc{
		{"tampered", func(cli *rec13) []byte {
			r := seal(cli, recTypeAppData, []byte("hello"))
			r[7] ^= 1
			return r
		}, errBadRecordMAC, alertBadRecordMAC},
		{"tampered header", func(cli *rec13) []byte {
			r := seal(cli, recTypeAppData, []byte("hello"))
			r[2] = 1
			return r
		}, errBadVersion, alertProtocolVersion},
		{"short", func(cli *rec13) []byte { return []byte{23, 3, 3, 0, 3, 1, 2, 3} }, errBadRecordMAC, alertBadRecordMAC},
		{"oversize ciphertext", func(cli *rec13) []byte {
			n := maxCiphertext13 + 1
			return []byte{23, 3, 3, byte(n >> 8), byte(n & 0xff), 0}
		}, errRecordOverflow, alertRecordOverflow},
		{"oversize plaintext", func(cli *rec13) []byte {
			return seal(cli, recTypeAppData, make([]byte, maxPlaintext13+1))
		}, errRecordOverflow, alertRecordOverflow},
		{"oversize padding", func(cli *rec13) []byte {
			nonce, _ := cli.out.makeNonce()
			inner := append([]byte{'a', recTypeAppData}, make([]byte, maxInner13)...)
			hdr := []byte{23, 3, 3, 0, 0}
			n := len(inner) + aeadOverhead
			hdr[3], hdr[4] = byte(n>>8), byte(n)
			return cli.out.aead.Seal(hdr, nonce, inner, hdr[:5])
		}, errRecordOverflow, alertRecordOverflow},
		{"only padding", func(cli *rec13) []byte {
			nonce, _ := cli.out.makeNonce()
			hdr := []byte{23, 3, 3, 0, 3 + aeadOverhead}
			return cli.out.aead.Seal(hdr, nonce, []byte{0, 0, 0}, hdr[:5])
		}, errEmptyInner, alertUnexpectedMessage},
		{"plain CCS", func(cli *rec13) []byte { return []byte{20, 3, 3, 0, 1, 1} }, errBadRecordType, alertUnexpectedMessage},
		{"plain alert", func(cli *rec13) []byte { return []byte{21, 3, 3, 0, 2, 1, 0} }, errBadRecordType, alertUnexpectedMessage},
		{"protected CCS", func(cli *rec13) []byte { return seal(cli, recTypeCCS, []byte{1}) }, errBadRecordType, alertUnexpectedMessage},
		{"NewSessionTicket", func(cli *rec13) []byte {
			return seal(cli, recTypeHandshake, []byte{4, 0, 0, 1, 0})
		}, errBadHandshake, alertUnexpectedMessage},
		{"KeyUpdate split", func(cli *rec13) []byte {
			return seal(cli, recTypeHandshake, []byte{hsTypeKeyUpdate, 0, 0})
		}, errBadHandshake, alertUnexpectedMessage},
		{"KeyUpdate bad value", func(cli *rec13) []byte {
			return seal(cli, recTypeHandshake, []byte{hsTypeKeyUpdate, 0, 0, 1, 2})
		}, errBadKeyUpdate, alertIllegalParameter},
		{"empty handshake", func(cli *rec13) []byte { return seal(cli, recTypeHandshake, nil) }, errBadHandshake, alertUnexpectedMessage},
		{"long alert", func(cli *rec13) []byte { return seal(cli, recTypeAlert, []byte{1, 0, 0}) }, errBadAlert, alertDecodeError},
	}
	for _, c := range cases {
		for _, split := range []bool{false, true} {
			var toClient, toServer [][]byte
			srv, cli := peers(t, tls.TLS_AES_256_GCM_SHA384, &toClient, &toServer)
			b := c.make(cli)
			var err error
			if split {
				for i := range b {
					if _, err = srv.decrypt(nil, b[i:i+1]); err != nil {
						break
					}
				}
			} else {
				_, err = srv.decrypt(nil, b)
			}
			if err != c.err {
				t.Fatalf("%s: %v, want %v", c.name, err, c.err)
			}
			if len(toClient) != 1 {
				t.Fatalf("%s: %d records sent, want an alert", c.name, len(toClient))
			}
			got, aerr := cli.decrypt(nil, toClient[0])
			var ae tls.AlertError
			if len(got) != 0 || !errors.As(aerr, &ae) || byte(ae) != c.alert {
				t.Fatalf("%s: client got %q, %v; want alert %d", c.name, got, aerr, c.alert)
			}
			// Sticky: later input and writes fail the same way.
			if _, err := srv.decrypt(nil, []byte("x")); err != c.err {
				t.Fatalf("%s: then %v", c.name, err)
			}
			if err := srv.write([]byte("x")); err != c.err {
				t.Fatalf("%s: write %v", c.name, err)
			}
			if srv.part != nil {
				t.Fatalf("%s: buffer kept", c.name)
			}
		}
	}
	// Fatal alerts from the client end the Conn with a remote error.
	var toClient, toServer [][]byte
	srv, cli := peers(t, tls.TLS_AES_128_GCM_SHA256, &toClient, &toServer)
	_ = cli.seal(recTypeAlert, []byte{2, 40})
	_, err := srv.decrypt(nil, toServer[0])
	var ae tls.AlertError
	if !errors.As(err, &ae) || ae != 40 {
		t.Fatalf("fatal alert: %v", err)
	}
	// Up to 16 records in a row without application data (empty ones,
	// KeyUpdates) pass; the 17th fails.
	for _, kind := range []string{"empty", "keyupdate"} {
		srv, cli = peers(t, tls.TLS_AES_128_GCM_SHA256, &toClient, &toServer)
		toServer = nil
		useless := func() {
			if kind == "empty" {
				_ = cli.seal(recTypeAppData, nil)
				return
			}
			_ = cli.seal(recTypeHandshake, []byte{hsTypeKeyUpdate, 0, 0, 1, 0})
			_ = cli.out.update(cli.suite)
		}
		for range maxUseless {
			useless()
		}
		_ = cli.write([]byte("x"))
		for range maxUseless + 1 {
			useless()
		}
		var got []byte
		for _, r := range toServer {
			if got, err = srv.decrypt(got, r); err != nil {
				break
			}
		}
		if string(got) != "x" || err != errNoProgress {
			t.Fatalf("%s: got %q, %v", kind, got, err)
		}
	}
	// The sequence number never wraps.
	srv, _ = peers(t, tls.TLS_AES_128_GCM_SHA256, &toClient, &toServer)
	srv.out.seq = ^uint64(0)
	if err := srv.write([]byte("x")); err != errSeqOverflow {
		t.Fatalf("seq overflow: %v", err)
	}
}

// keyCapture is a client KeyLogWriter keeping the application secrets.
type keyCapture struct {
	mu    sync.Mutex
	lines map[string][]byte
}

func (k *keyCapture) Write(b []byte) (int, error) {
	f := strings.Fields(string(b))
	if len(f) == 3 {
		s, _ := hex.DecodeString(f[2])
		k.mu.Lock()
		if k.lines == nil {
			k.lines = map[string][]byte{}
		}
		k.lines[f[0]] = s
		k.mu.Unlock()
	}
	return len(b), nil
}

// forger returns a client-side rec13 for p (whose client logged its keys to
// kc): records it seals go to the server Conn through the loop, as if the
// crypto/tls client had written them. The crypto/tls client must not write
// application data itself afterwards.
func forger(t *testing.T, p *pair, kc *keyCapture) *rec13 {
	t.Helper()
	kc.mu.Lock()
	c, s := kc.lines[labelClientTraffic], kc.lines[labelServerTraffic]
	kc.mu.Unlock()
	cli, err := newRec13(p.client.ConnectionState().CipherSuite, s, c, func(b []byte) {
		b = append([]byte(nil), b...)
		p.l.run(func() { p.onTraffic(b) })
	})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// leanPair is a handshaken pair on the lean path whose client logs keys.
func leanPair(t *testing.T, srv *Server, l *loop, ccfg *tls.Config) (*pair, *keyCapture) {
	t.Helper()
	kc := &keyCapture{}
	ccfg = ccfg.Clone()
	ccfg.KeyLogWriter = kc
	p := newPair(srv, l, ccfg, nil)
	p.zero = true
	p.handshake(t)
	var lean bool
	l.do(func() { lean = p.c.rec != nil })
	if !lean {
		t.Fatal("not on the lean path")
	}
	return p, kc
}

// waitErr waits until the server's Read/Decrypt failed and returns why.
func (p *pair) waitErr(tb testing.TB) error {
	tb.Helper()
	var err error
	waitFor(tb, "server error", func() bool {
		p.l.do(func() { err = p.rerr })
		return err != nil
	})
	return err
}

// TestFinishedAndDataInOneWrite: the client's Finished and its first
// records reach the server in one Feed; crypto/tls must not have read past
// the Finished, so the lean layer gets the rest. Repeated, alternating
// Feed and Decrypt.
func TestFinishedAndDataInOneWrite(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	for i := range 20 {
		p := newPair(srv, l, clientConfig(t), nil)
		p.zero = i%2 == 0
		// Deliver the ClientHello; hold the rest of the client's output
		// (its second flight, then its first requests) and deliver it as
		// one chunk.
		var mu sync.Mutex
		var held []byte
		writes := 0
		deliver := p.cp.out
		p.cp.out = func(b []byte) {
			mu.Lock()
			defer mu.Unlock()
			if writes++; writes == 1 {
				deliver(b)
				return
			}
			held = append(held, b...)
		}
		msg := []byte("GET /app/key?protocol=7 HTTP/1.1\r\nHost: x\r\n\r\n")
		err := p.client.Handshake()
		if err == nil {
			_, err = p.client.Write(msg)
		}
		if err == nil {
			_, err = p.client.Write(msg[:5])
		}
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		all := held
		writes = -1 << 30 // deliver from now on
		mu.Unlock()
		deliver(all)
		if err := <-p.doneCh; err != nil {
			t.Fatal(err)
		}
		want := append(append([]byte(nil), msg...), msg[:5]...)
		if got := p.waitPlain(t, len(want)); !bytes.Equal(got, want) {
			t.Fatalf("got %q", got)
		}
		p.close()
	}
	if st := srv.Stats(); st.Lean != 20 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPipeRecordAligned: in handshake mode the pipe never hands out bytes
// past the end of the current record, whatever the buffer size.
func TestPipeRecordAligned(t *testing.T) {
	recs := [][]byte{
		{22, 3, 1, 0, 3, 'a', 'b', 'c'},
		{20, 3, 3, 0, 1, 1},
		{23, 3, 3, 0, 0},
		{23, 3, 3, 0, 4, 'w', 'x', 'y', 'z'},
	}
	var all []byte
	for _, r := range recs {
		all = append(all, r...)
	}
	for size := 1; size <= len(all)+1; size++ {
		p := &pipe{hs: &pipeHS{}}
		p.feed(all)
		var got [][]byte
		var cur []byte
		for len(got) < len(recs) {
			buf := make([]byte, size)
			n, err := p.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			cur = append(cur, buf[:n]...)
			if len(cur) > len(recs[len(got)]) {
				t.Fatalf("size %d: read past record %d: %q", size, len(got), cur)
			}
			if len(cur) == len(recs[len(got)]) {
				got = append(got, cur)
				cur = nil
				if !p.atRecordStart() {
					t.Fatalf("size %d: not at a record start", size)
				}
			}
		}
	}
}

// TestLeanInterop: crypto/tls client against the lean layer, with and
// without session tickets, with a client certificate request (the ticket
// is then sent later), and resumed sessions.
func TestLeanInterop(t *testing.T) {
	cfgs := map[string]func(*tls.Config){
		"default":    func(*tls.Config) {},
		"noTickets":  func(c *tls.Config) { c.SessionTicketsDisabled = true },
		"clientAuth": func(c *tls.Config) { c.ClientAuth = tls.RequestClientCert },
		// The client's key shares do not fit: HelloRetryRequest.
		"retry": func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.CurveP256} },
	}
	for name, mod := range cfgs {
		t.Run(name, func(t *testing.T) {
			scfg := serverConfig(t)
			mod(scfg)
			srv := NewServer(scfg, Options{})
			l := newLoop()
			defer l.stop()
			ccfg := clientConfig(t)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i := range 4 {
				p := newPair(srv, l, ccfg, splitRandom(mrand.New(mrand.NewPCG(uint64(i), 3))))
				p.zero = i%2 == 1
				p.handshake(t)
				cs := p.c.ConnectionState()
				resumed := i > 0 && !scfg.SessionTicketsDisabled
				if cs.DidResume != resumed || !p.client.ConnectionState().HandshakeComplete {
					t.Fatalf("round %d: DidResume %v, want %v", i, cs.DidResume, resumed)
				}
				if name == "retry" && !cs.HelloRetryRequest {
					t.Fatalf("round %d: no HelloRetryRequest", i)
				}
				if cs.Version != tls.VersionTLS13 || cs.ServerName != "localhost" {
					t.Fatalf("state %+v", cs)
				}
				if _, err := cs.ExportKeyingMaterial("EXPERIMENTAL test", nil, 16); err != nil {
					t.Fatal(err)
				}
				roundTrip(t, p, 3, 1000)
				// At rest: no tls.Conn, no pipe, no buffer.
				var rest bool
				l.do(func() { rest = p.c.tc == nil && p.c.pp.Load() == nil && p.c.rec.part == nil })
				if !rest {
					t.Fatalf("round %d: the Conn keeps handshake state or a buffer", i)
				}
				p.close()
			}
			if st := srv.Stats(); st.Lean != 4 || st.Completed != 4 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestKeyUpdateFromClient: the client (records forged with its logged
// keys) updates its key, with and without update_requested; the server
// answers a request with its own KeyUpdate, which the crypto/tls client
// follows.
func TestKeyUpdateFromClient(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	p, kc := leanPair(t, srv, l, clientConfig(t))
	cli := forger(t, p, kc)
	total := 0
	for i, req := range []byte{1, 0, 1, 1, 0} {
		if err := cli.seal(recTypeHandshake, []byte{hsTypeKeyUpdate, 0, 0, 1, req}); err != nil {
			t.Fatal(err)
		}
		if err := cli.out.update(cli.suite); err != nil {
			t.Fatal(err)
		}
		msg := []byte(fmt.Sprintf("message %d", i))
		if err := cli.write(msg); err != nil {
			t.Fatal(err)
		}
		total += len(msg)
		if got := p.waitPlain(t, total); !bytes.HasSuffix(got, msg) {
			t.Fatalf("round %d: server got %q", i, got)
		}
		// The server's reply: under its updated key when req was 1; the
		// crypto/tls client reads the KeyUpdate first.
		var werr error
		l.do(func() { werr = p.c.Write(msg) })
		if werr != nil {
			t.Fatal(werr)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(p.client, buf); err != nil || !bytes.Equal(buf, msg) {
			t.Fatalf("round %d: client got %q, %v", i, buf, err)
		}
	}
	p.close()
}

// TestLeanErrorsOverConn: a tampered record and an oversize one end the
// Conn, and the client hears the alert.
func TestLeanErrorsOverConn(t *testing.T) {
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	for _, c := range []struct {
		name  string
		bytes func(cli *rec13) []byte
		want  string
	}{
		{"tampered", func(cli *rec13) []byte {
			var out [][]byte
			cli.send = collect(&out)
			_ = cli.write([]byte("hello"))
			out[0][len(out[0])-1] ^= 0x80
			return out[0]
		}, "bad record MAC"},
		{"oversize", func(*rec13) []byte { return []byte{23, 3, 3, 0x41, 1} }, "record overflow"},
	} {
		p, kc := leanPair(t, srv, l, clientConfig(t))
		cli := forger(t, p, kc)
		b := c.bytes(cli)
		l.run(func() { p.onTraffic(b) })
		if err := p.waitErr(t); !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: server: %v", c.name, err)
		}
		if _, err := p.client.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: client: %v", c.name, err)
		}
		var werr error
		l.do(func() { werr = p.c.Write([]byte("x")) })
		if werr == nil {
			t.Fatalf("%s: Write after a fatal error", c.name)
		}
		p.close()
	}
}

// TestUserConfigHooks: the user's KeyLogWriter and GetConfigForClient keep
// working behind the lean path's own hooks.
func TestUserConfigHooks(t *testing.T) {
	var logged keyCapture
	scfg := serverConfig(t)
	scfg.KeyLogWriter = &logged
	alt := serverConfig(t)
	alt.NextProtos = []string{"h-alt"}
	alt.KeyLogWriter = &logged
	calls := 0
	var mu sync.Mutex
	scfg.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		if chi.ServerName == "alt" {
			return alt, nil
		}
		return nil, nil
	}
	srv := NewServer(scfg, Options{})
	l := newLoop()
	defer l.stop()
	for _, name := range []string{"localhost", "alt"} {
		ccfg := clientConfig(t)
		ccfg.ServerName = name
		ccfg.InsecureSkipVerify = name == "alt"
		ccfg.NextProtos = []string{"h-alt"}
		p := newPair(srv, l, ccfg, nil)
		p.handshake(t)
		if proto := p.c.ConnectionState().NegotiatedProtocol; (proto == "h-alt") != (name == "alt") {
			t.Fatalf("%s: protocol %q", name, proto)
		}
		roundTrip(t, p, 2, 50)
		p.close()
	}
	logged.mu.Lock()
	n := len(logged.lines)
	logged.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 || n < 4 {
		t.Fatalf("GetConfigForClient calls %d, key log labels %d", calls, n)
	}
	if st := srv.Stats(); st.Lean != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestChaCha20Interop re-runs itself with AES hardware support hidden
// (GODEBUG=cpu.aes=off), which makes crypto/tls on both ends prefer
// ChaCha20-Poly1305.
func TestChaCha20Interop(t *testing.T) {
	if os.Getenv("LOOPTLS_CHACHA_CHILD") == "" {
		if testing.Short() {
			t.Skip("starts a process")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestChaCha20Interop$", "-test.count=1")
		cmd.Env = append(os.Environ(), "LOOPTLS_CHACHA_CHILD=1", "GODEBUG=cpu.aes=off")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("PASS")) {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	srv := NewServer(serverConfig(t), Options{})
	l := newLoop()
	defer l.stop()
	p, _ := leanPair(t, srv, l, clientConfig(t))
	if cs := p.c.ConnectionState().CipherSuite; cs != tls.TLS_CHACHA20_POLY1305_SHA256 {
		t.Fatalf("suite %s", tls.CipherSuiteName(cs))
	}
	roundTrip(t, p, 3, 20000)
	p.close()
	// The forged client must write first: its sequence numbers start at 0.
	p, kc2 := leanPair(t, srv, l, clientConfig(t))
	cli := forger(t, p, kc2)
	_ = cli.seal(recTypeHandshake, []byte{hsTypeKeyUpdate, 0, 0, 1, 1})
	_ = cli.out.update(cli.suite)
	_ = cli.write([]byte("hello"))
	if got := p.waitPlain(t, 5); string(got) != "hello" {
		t.Fatalf("server got %q", got)
	}
	var werr error
	l.do(func() { werr = p.c.Write([]byte("after update")) })
	if werr != nil {
		t.Fatal(werr)
	}
	buf := make([]byte, 12)
	if _, err := io.ReadFull(p.client, buf); err != nil || string(buf) != "after update" {
		t.Fatalf("client got %q, %v", buf, err)
	}
	p.close()
}

// leanConn returns an established lean Conn without a handshake, for
// fuzzing, and the client side that seals its input.
func leanConn(tb testing.TB, srv *Server) (*Conn, *rec13, *[][]byte) {
	var toClient, toServer [][]byte
	r, cli := peers(tb, tls.TLS_AES_128_GCM_SHA256, &toClient, &toServer)
	c := &Conn{srv: srv, rec: r, cs: &tls.ConnectionState{}}
	c.state.Store(stReady)
	r.send = func([]byte) {}
	return c, cli, &toServer
}

// FuzzLeanRecords feeds valid records, possibly corrupted, and arbitrary
// bytes, split at random points, to an established lean Conn through
// Decrypt and Feed+Read: no panic, and valid input comes out whole.
func FuzzLeanRecords(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), []byte{}, uint64(1), uint16(0))
	f.Add([]byte("x"), []byte{23, 3, 3, 0, 20}, uint64(2), uint16(3))
	f.Add(bytes.Repeat([]byte("y"), 20000), []byte{22, 3, 3}, uint64(3), uint16(7))
	srv := NewServer(serverConfig(f), Options{})
	f.Fuzz(func(t *testing.T, plain, junk []byte, seed uint64, flip uint16) {
		c, cli, toServer := leanConn(t, srv)
		if err := cli.write(plain); err != nil {
			t.Fatal(err)
		}
		_ = cli.seal(recTypeHandshake, []byte{hsTypeKeyUpdate, 0, 0, 1, byte(seed & 1)})
		_ = cli.out.update(cli.suite)
		_ = cli.write(plain)
		var wire []byte
		for _, r := range *toServer {
			wire = append(wire, r...)
		}
		corrupt := flip != 0 && len(wire) > 0
		if corrupt {
			wire[int(flip)%len(wire)] ^= byte(flip>>8) | 1
		}
		wire = append(wire, junk...)
		r := mrand.New(mrand.NewPCG(seed, seed))
		var got []byte
		var err error
		for _, piece := range splitRandom(r)(wire) {
			if r.IntN(2) == 0 {
				got, err = c.Decrypt(got, piece)
			} else if err = c.Feed(piece); err == nil {
				got, err = c.Read(got)
			}
			if err != nil {
				break
			}
		}
		want := append(append([]byte(nil), plain...), plain...)
		if !corrupt && len(got) < len(want) && err == nil && len(junk) == 0 {
			t.Fatalf("got %d bytes of %d", len(got), len(want))
		}
		if !corrupt && !bytes.HasPrefix(got, want[:min(len(got), len(want))]) {
			t.Fatal("wrong plaintext")
		}
		c.Close()
	})
}
