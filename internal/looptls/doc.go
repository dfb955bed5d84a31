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
// Record layer, after a TLS 1.3 handshake (record13.go). Once crypto/tls
// has finished the handshake, the Conn drops the tls.Conn and the pipe and
// keeps only what record protection needs: two cipher.AEADs (AES-GCM from
// crypto/aes and crypto/cipher, ChaCha20-Poly1305 from
// golang.org/x/crypto), their IVs and sequence numbers, and the two
// application traffic secrets for KeyUpdate, plus the handshake's
// tls.ConnectionState for ConnectionState(). It gets there in three steps:
//
//   - Secrets: the Server hands crypto/tls a config whose
//     GetConfigForClient gives each handshake a clone of the user's config
//     (or of what the user's own GetConfigForClient returns) with a
//     KeyLogWriter bound to that handshake (keylog.go). It keeps
//     CLIENT_TRAFFIC_SECRET_0 and SERVER_TRAFFIC_SECRET_0 and passes every
//     line on to the user's KeyLogWriter, if any. Keys and IVs come from
//     HKDF-Expand-Label (RFC 8446 §7.1, §7.3).
//   - Input: during the handshake the pipe never hands crypto/tls a byte
//     past the end of the record it is reading (it parses the record
//     headers), so when the handshake returns, everything after the
//     client's Finished (typically its first request, sent in the same
//     segment) is still in the pipe; the loop's first call after done(nil)
//     moves it to the lean layer.
//   - Write sequence number: crypto/tls may have sent a NewSessionTicket
//     under the server's application key. The pipe keeps a copy of the
//     last application_data record crypto/tls wrote; if it opens with that
//     key at sequence number k, ours starts at k+1, else at 0. The read
//     sequence number starts at 0.
//
// The layer follows RFC 8446 §5: outer type 23 and version 0x0303,
// additional data the record header, nonce the IV XOR the sequence number;
// ciphertext over 2^14+256 bytes or plaintext over 2^14 (padding included)
// is record_overflow; close_notify ends reading with io.EOF, other alerts
// are errors; the only post-handshake message accepted from a client is a
// whole KeyUpdate in its own record (update_requested gets our KeyUpdate
// under the old key before we switch); anything else, an unprotected
// record included, is unexpected_message. A failed record is
// bad_record_mac. Every fatal error sends its alert and is sticky; writes
// are split at 2^14 bytes and sealed into a pooled buffer passed to out.
// An incomplete record is the only input kept between calls, in a pooled
// buffer that goes back once the record completes.
//
// This is not a fork of crypto/tls: crypto/tls does the whole handshake
// (negotiation, certificates, key exchange, tickets, resumption,
// HelloRetryRequest, client authentication). What runs here is only the
// post-handshake record protection, the part kernel TLS would take over
// (this kernel has no tls ULP): about 500 lines with comments, checked
// against RFC 8448's test vectors and crypto/tls clients.
//
// Record layer on crypto/tls (TLS 1.2 sessions, and a TLS 1.3 session that
// cannot switch: a secret missing from the key log, input not at a record
// boundary): crypto/tls treats a Read error of its transport that is a
// net.Error with Temporary() true as not permanent (crypto/tls/conn.go,
// readRecordOrCCS: it does not set c.in.err, and the partial record stays
// in rawInput). The pipe returns such an error when it has no more bytes,
// so Conn.Read calls tls.Conn.Read until it returns that error: every
// complete record is decrypted, a partial one waits for the next Feed, and
// the loop never blocks. Writes encrypt and call out before returning.
// Record order on the wire is the order of Write calls, which is why Write
// is loop-only. Stats.Lean counts the sessions on the lean layer.
//
// At rest a Conn holds no input buffer and no goroutine, and the
// handshake's timer and wake channel are gone.
//
// # Figures
//
// Measured on the 2-core development VM (noisy), Go 1.26, ECDSA P-256
// certificate, crypto/tls client in the same process:
//
//   - Live heap per idle Conn after the handshake and one 100-byte message
//     each way (BenchmarkIdleConn, 5,000 conns, HeapAlloc freed by
//     dropping them): 2,224 bytes on the lean layer whatever the client
//     offers, against 6,816 on crypto/tls's record layer with a client
//     that offers X25519MLKEM768 (browsers' and Go's default; 6,792 before
//     the lean layer existed) and 4,096 with one offering X25519 only
//     (4,072 before). TLS 1.2 sessions: 4,216 (crypto/tls's layer).
//     Lean breakdown (heap profile): the two AES-128-GCM states 1,536
//     (crypto/cipher's GCM keeps the AES encryption and decryption key
//     schedules and the GHASH table, 768 bytes each; ChaCha20-Poly1305
//     keeps its 32-byte key), rec13 256, the saved tls.ConnectionState
//     with its exporter ~350 (kept so that ConnectionState and
//     ExportKeyingMaterial behave as before), the Conn 80. The client's key shares no longer matter: nothing sized
//     by the ClientHello survives the handshake. On crypto/tls's record
//     layer the tls.Conn's rawInput and hand buffers keep the capacity the
//     ClientHello needed (~2,048 + ~1,536 bytes with the post-quantum
//     share) and the tls.Conn struct ~912.
//   - Handshake (TLS 1.3, GOMAXPROCS=1, BenchmarkHandshake): ~500 µs per
//     handshake for client and server together, of which the server worker
//     ran ~200 µs (Stats.HandshakeCPU). The lean layer's setup (config
//     clone, key log lines, key schedule, trial opens) adds ~5 µs of server
//     time, 76 allocations and 7 KB allocated per handshake (952 and
//     131 KB for both sides, against 876 and 124 KB). Restricting
//     CurvePreferences to X25519, P-256 skips the ML-KEM encapsulation
//     (measured within noise here, ~10%); it gives up post-quantum key
//     exchange, so it is not the default.
//     Session tickets save the certificate signature when a client
//     resumes: keep them.
//   - Records (BenchmarkRecordRead/Write, 100-byte messages, AES-128-GCM):
//     Decrypt ~145 ns and 0 allocations on the lean layer (crypto/tls:
//     ~320 ns, 2 allocations of 24 bytes, its atLeastReader); Write
//     ~170-250 ns, 0 allocations, on both (noisy).
//
// # Limits and alternatives
//
// The lean layer refuses a client's handshake message split across
// records (a KeyUpdate is 5 bytes; no known client splits it) and any
// post-handshake message but KeyUpdate: there is no post-handshake client
// authentication (crypto/tls has none either). A KeyUpdate costs a key
// schedule and a new AEAD (~1 µs, ~1.3 KB of garbage); as in crypto/tls,
// more than 16 records in a row without application data (KeyUpdates,
// empty records) end the connection. Close from another goroutine does
// not return a lean Conn's partial-record buffer to its pool (the loop
// owns it); the GC frees it.
// TLS 1.2 sessions keep crypto/tls's record layer and its retained
// buffers (~4.2 KB idle); nothing in crypto/tls's API releases them.
//
// The AES-GCM state is the floor: crypto/tls chooses the suite (TLS 1.3
// suites are not configurable, and it picks AES-GCM whenever the CPU has
// AES instructions), and crypto/cipher's GCM keeps ~768 bytes per
// direction. Dropping the saved ConnectionState would save ~350 bytes more
// but ConnectionState().ExportKeyingMaterial would then panic.
//
// A fork of crypto/tls with a non-blocking handshake (the nbio approach)
// would free the worker pool but means maintaining a TLS stack; the worker
// pool costs a goroutine per handshake in progress only. crypto/tls's QUIC
// API is event-driven but requires the QUIC transport parameters extension
// from the client, so it cannot serve TCP clients. Kernel TLS (kTLS) would
// take the record layer out of user space with the same secrets and
// sequence numbers this package now derives, where the kernel has the tls
// module (setsockopt TCP_ULP "tls", then TLS_TX/TLS_RX); it does not here.
//
// See README.md in this directory for wiring it into a gnet EventHandler.
package looptls
