package looptls

import (
	"crypto/tls"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// handshakeConfigs are the server settings compared by the benchmarks. The
// client is crypto/tls with its defaults (it offers X25519MLKEM768, as
// current browsers do).
func handshakeConfigs(tb testing.TB) []struct {
	name string
	cfg  *tls.Config
} {
	def := serverConfig(tb)
	classic := serverConfig(tb)
	classic.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
	noTickets := serverConfig(tb)
	noTickets.SessionTicketsDisabled = true
	both := serverConfig(tb)
	both.CurvePreferences = classic.CurvePreferences
	both.SessionTicketsDisabled = true
	return []struct {
		name string
		cfg  *tls.Config
	}{
		{"default", def},
		{"X25519", classic},
		{"noTickets", noTickets},
		{"X25519+noTickets", both},
	}
}

// BenchmarkHandshake runs full TLS 1.3 handshakes (client and server in this
// process, one at a time); server-µs/op is the server's share, measured as
// the time its worker ran (Stats.HandshakeCPU).
//
// "default-stdlib" keeps the session on crypto/tls's record layer: no key
// log, no per-handshake config clone.
func BenchmarkHandshake(b *testing.B) {
	cases := handshakeConfigs(b)
	cases = append(cases, cases[0])
	cases[len(cases)-1].name = "default-stdlib"
	for _, hc := range cases {
		b.Run(hc.name, func(b *testing.B) {
			srv := NewServer(hc.cfg, Options{})
			srv.stdlibOnly = hc.name == "default-stdlib"
			l := newLoop()
			defer l.stop()
			ccfg := clientConfig(b)
			before := srv.Stats().HandshakeCPU
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				p := newPair(srv, l, ccfg, nil)
				p.handshake(b)
				p.close()
			}
			b.StopTimer()
			cpu := srv.Stats().HandshakeCPU - before
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "server-µs/op")
		})
	}
}

// recordPair is a handshaken pair driven from the benchmark goroutine: the
// client's records are captured, the server's are discarded. stdlib keeps
// the server on crypto/tls's record layer.
func recordPair(b *testing.B, stdlib bool) (*Conn, *tls.Conn, *[][]byte) {
	srv := NewServer(serverConfig(b), Options{})
	srv.stdlibOnly = stdlib
	l := newLoop()
	b.Cleanup(l.stop)
	p := newPair(srv, l, clientConfig(b), nil)
	p.handshake(b)
	captured := new([][]byte)
	l.do(func() {}) // the loop has run done
	p.cp.out = func(r []byte) { *captured = append(*captured, append([]byte(nil), r...)) }
	l.do(func() { setOut(p.c, func([]byte) {}) })
	return p.c, p.client, captured
}

// recordLayers are the record layers compared: this package's TLS 1.3 one
// and crypto/tls's.
var recordLayers = []struct {
	name   string
	stdlib bool
}{{"lean", false}, {"stdlib", true}}

// BenchmarkRecordRead decrypts 100-byte messages, one record each, the way
// the loop does (Decrypt into a reused buffer).
func BenchmarkRecordRead(b *testing.B) {
	for _, rl := range recordLayers {
		b.Run(rl.name, func(b *testing.B) {
			c, client, captured := recordPair(b, rl.stdlib)
			msg := make([]byte, 100)
			dst := make([]byte, 0, 4096)
			b.ReportAllocs()
			b.SetBytes(100)
			b.ResetTimer()
			for i := 0; i < b.N; {
				b.StopTimer()
				*captured = (*captured)[:0]
				batch := min(b.N-i, 1024)
				for range batch {
					if _, err := client.Write(msg); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				for _, r := range *captured {
					var err error
					dst, err = c.Decrypt(dst[:0], r)
					if err != nil || len(dst) != 100 {
						b.Fatalf("decrypt: %d bytes, %v", len(dst), err)
					}
				}
				i += batch
			}
		})
	}
}

// BenchmarkRecordWrite encrypts 100-byte messages, one record each.
func BenchmarkRecordWrite(b *testing.B) {
	for _, rl := range recordLayers {
		b.Run(rl.name, func(b *testing.B) {
			c, _, _ := recordPair(b, rl.stdlib)
			msg := make([]byte, 100)
			b.ReportAllocs()
			b.SetBytes(100)
			b.ResetTimer()
			for range b.N {
				if err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecordWriteAfterShrink is a 100-byte write by a connection the
// idle sweep shrank: the cost of rebuilding the cipher state included.
func BenchmarkRecordWriteAfterShrink(b *testing.B) {
	c, _, _ := recordPair(b, false)
	msg := make([]byte, 100)
	b.ReportAllocs()
	b.SetBytes(100)
	b.ResetTimer()
	for range b.N {
		c.Shrink()
		if err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// keep holds the conns of the last idle measurement, for heap profiles.
var keep []any

// BenchmarkIdleConn measures the heap a server Conn keeps while idle after
// a handshake and one 100-byte message each way: N conns (env
// LOOPTLS_IDLE_N, default 5000) are made, then the server side is dropped;
// bytes/conn is the live heap freed by that, per conn. Run with -benchtime=1x.
//
// Clients: "browser" is crypto/tls with its defaults (it offers
// X25519MLKEM768, as current browsers do: a ClientHello of about 1.5 KB),
// "X25519" offers X25519 only (about 300 bytes), "tls12" is a TLS 1.2
// client (crypto/tls's record layer). Each runs on the lean record layer
// and, for comparison, with every session kept on crypto/tls's ("stdlib").
func BenchmarkIdleConn(b *testing.B) {
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("LOOPTLS_IDLE_N")); err == nil && v > 0 {
		n = v
	}
	clients := []struct {
		name string
		mod  func(*tls.Config)
	}{
		{"browser", func(*tls.Config) {}},
		{"X25519", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519} }},
		{"tls12", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }},
	}
	for _, cl := range clients {
		for _, rl := range recordLayers {
			b.Run(cl.name+"/"+rl.name, func(b *testing.B) {
				cc := clientConfig(b)
				cl.mod(cc)
				for range b.N {
					b.ReportMetric(idleBytes(b, serverConfig(b), cc, n, rl.stdlib), "bytes/conn")
				}
			})
		}
	}
	// Server settings (tickets, curve preferences), browser client.
	for _, hc := range handshakeConfigs(b)[1:] {
		b.Run("server-"+hc.name, func(b *testing.B) {
			for range b.N {
				b.ReportMetric(idleBytes(b, hc.cfg, clientConfig(b), n, false), "bytes/conn")
			}
		})
	}
}

func idleBytes(b *testing.B, cfg, ccfg *tls.Config, n int, stdlib bool) float64 {
	srv := NewServer(cfg, Options{Workers: 64, Queue: n})
	srv.stdlibOnly = stdlib
	l := newLoop()
	defer l.stop()
	pairs := make([]*pair, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	msg := make([]byte, 100)
	for i := range pairs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			p := newPair(srv, l, ccfg, nil)
			p.handshake(b)
			if _, err := p.client.Write(msg); err != nil {
				b.Error(err)
				return
			}
			p.waitPlain(b, 100)
			var err error
			l.do(func() { err = p.c.Write(msg); p.plain = nil })
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := io.ReadFull(p.client, make([]byte, 100)); err != nil {
				b.Error(err)
			}
			pairs[i] = p
		}()
	}
	wg.Wait()
	waitFor(b, "idle pool", func() bool { return srv.Stats().Running == 0 })
	time.Sleep(10 * time.Millisecond) // let finished goroutines exit their stacks
	servers := make([]*Conn, n)
	for i, p := range pairs {
		servers[i] = p.c
		p.c = nil
	}
	keep = []any{servers, pairs}
	servers = nil // only keep holds them now
	withKeep := heapAlloc()
	if os.Getenv("LOOPTLS_KEEP") != "" {
		return 0 // keep them for -memprofile
	}
	keep = []any{pairs}
	without := heapAlloc()
	return float64(withKeep-without) / float64(n)
}

// heapAlloc returns the live heap after GC. HeapAlloc, not HeapInuse: the
// server's objects share spans with the client's, so freeing them leaves
// spans in use and HeapInuse would under-count.
func heapAlloc() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
