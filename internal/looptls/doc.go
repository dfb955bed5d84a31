// Package looptls terminates TLS on gnet's event loops with the standard
// library's crypto/tls, in place of a relay (a crypto/tls listener, two
// goroutines and two copy buffers per connection, a Unix socket to the
// engine).
//
// # Design
//
// A Conn puts a tls.Conn over an in-memory net.Conn (the pipe). The loop
// feeds it the ciphertext it read from the socket; the tls.Conn's records go
// to an out callback that the integration points at the socket.
//
// Handshake: crypto/tls cannot resume a handshake after an error (its
// handshake error is sticky), so the handshake runs where it may block: on
// a worker goroutine of the Server's bounded pool, over the pipe in blocking
// mode (Read waits for Feed). A Conn takes no worker until the client's
// first record is complete (or is obviously not TLS), so clients that
// connect and send nothing, or dribble a partial ClientHello, cost a timer
// and a small buffer, not a goroutine. Beyond Options.Workers running
// handshakes, Options.Queue wait; beyond that the connection is refused
// (ErrOverloaded, Stats.Refused). Options.HandshakeTimeout runs from NewConn.
// The worker writes the server's flights through out, then switches the
// pipe to non-blocking mode and calls done(nil); the integration re-enters
// the loop from there.
//
// Record layer, after the handshake, on the loop: crypto/tls treats a Read
// error of its transport that is a net.Error with Temporary() true as not
// permanent (crypto/tls/conn.go, readRecordOrCCS: it does not set c.in.err,
// and the partial record stays in rawInput). The pipe returns such an error
// when it has no more bytes, so Conn.Read calls tls.Conn.Read until it
// returns that error: every complete record is decrypted, a partial one
// waits for the next Feed, and the loop never blocks. Writes encrypt and call
// out before returning. Record order on the wire is the order of Write
// calls, which is why Write is loop-only.
//
// At rest the pipe holds no buffer (input buffers come from a pool and go
// back when drained; Decrypt does not even copy), there is no goroutine,
// and the handshake's timer and wake channel are gone.
//
// # Figures
//
// Measured on the 2-core development VM (noisy), Go 1.26, ECDSA P-256
// certificate, crypto/tls client in the same process:
//
//   - Live heap per idle Conn after the handshake and one 100-byte message
//     each way: 6,792 bytes with a client that offers X25519MLKEM768 (Go's
//     and current browsers' default, a ~1.5 KB ClientHello); 4,072 bytes
//     with a client offering X25519 only (BenchmarkIdleConn, 5,000 conns,
//     HeapAlloc freed by dropping them). Breakdown (heap profile): the
//     tls.Conn's rawInput and hand buffers keep the capacity the ClientHello
//     needed (~2,048 + ~1,536 bytes with the post-quantum share), the two
//     AES-GCM states ~1,792, the tls.Conn struct ~912, traffic secrets and
//     the exporter ~250, this package's Conn ~160. The server settings
//     (session tickets, curve preferences) do not change it.
//   - Handshake (TLS 1.3, GOMAXPROCS=1, BenchmarkHandshake): ~500 µs per
//     handshake for client and server together, of which the server worker
//     ran ~200 µs (Stats.HandshakeCPU); ~874 allocations, ~120 KB allocated
//     for both sides. Restricting CurvePreferences to X25519, P-256 skips
//     the ML-KEM encapsulation (measured within noise here, ~10%); it gives
//     up post-quantum key exchange, so it is not the default. Turning
//     session tickets off made no measurable difference here; they save
//     the certificate signature when a client resumes: keep them.
//   - Records (BenchmarkRecordRead/Write, 100-byte messages, AES-GCM):
//     Decrypt ~340 ns, 2 allocations of 24 bytes (crypto/tls's
//     atLeastReader); Write ~235 ns, 0 allocations.
//
// # Limits and alternatives
//
// The rawInput and hand buffers of a tls.Conn keep the size of the largest
// record and handshake message received; nothing in crypto/tls's API
// releases them, and a client that sends one 16 KB record makes its
// connection keep ~17 KB more until it closes. Reaching into the tls.Conn
// with unsafe to reset them would save ~1–3.5 KB per connection but ties the
// server to crypto/tls internals; it is not done. The AES-GCM state is chosen
// by crypto/tls (TLS 1.3 suites are not configurable), so it cannot be
// traded for ChaCha20's smaller one.
//
// A fork of crypto/tls with a non-blocking handshake (the nbio approach)
// would free the worker pool but means maintaining a TLS stack; the worker
// pool costs a goroutine per handshake in progress only. crypto/tls's QUIC
// API is event-driven but requires the QUIC transport parameters extension
// from the client, so it cannot serve TCP clients. Kernel TLS (kTLS) would
// drop the record layer from user space, but crypto/tls does not expose the
// traffic secrets and record sequence numbers that setting it up needs (only
// the KeyLogWriter debugging hook prints the secrets), nor a way to hand
// over TLS 1.3 KeyUpdates: out of reach with the standard library.
//
// See README.md in this directory for wiring it into a gnet EventHandler.
package looptls
