// Package loop is the transport: the only package that imports gnet. It runs
// a multi-reactor gnet engine, reads HTTP requests and WebSocket frames from
// gnet's buffers with wsproto, hands WebSocket messages to pusher sessions on
// the connection's own loop and HTTP API requests to a bounded worker pool.
//
// Inbound, each HTTP request is parsed once (wsproto.ParseRequest), routed
// once (pusher's Route), then answered on the loop (the upgrade, /up, errors)
// or by the worker pool (the HTTP API). Outbound, every frame and response
// written on a loop goes through one path, the connection state's Write and
// Writev, which pusher sessions use as their pusher.Conn.
//
// With TLS (tls.go, over internal/looptls), the handshake runs on a bounded
// pool of goroutines; then the handlers read the input decrypted on the
// loop, and what they write is encrypted there.
//
// Concurrency: every connection belongs to one event loop; its state is only
// touched there. Other goroutines reach a loop only through gnet's
// concurrency-safe calls (AsyncWrite, Wake, Close, EventLoop.Execute).
package loop
