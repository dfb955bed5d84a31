// Package wsproto parses HTTP/1.1 request heads and RFC 6455 WebSocket
// frames from byte slices, answers the WebSocket handshake from the parsed
// head, encodes HTTP responses, and encodes server (and test client) frames.
//
// It is written for an event-loop server (gnet): the caller hands in
// whatever bytes have arrived so far and the parsers are incremental. When
// the input holds only a prefix of a request head or a frame, they return
// n == 0 and a nil error ("need more bytes") and consume nothing; the final
// result does not depend on how the input was split. Once n > 0 bytes are
// reported consumed, the caller drops them from its buffer and calls again
// with the rest. No parser allocates memory based on a length declared by
// the peer.
//
// Concurrency contract: the package starts no goroutines and does no I/O.
// The functions are pure (they touch only their arguments) and may be
// called from any goroutine. A Decoder holds per-connection state and is
// loop-only: it must be used by one goroutine at a time, normally the
// connection's event loop.
package wsproto
