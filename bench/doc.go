// Package bench is a load client for Pusher-protocol WebSocket servers
// (this one, Soketi, Laravel Reverb). It runs the scenarios of `reverb
// bench`:
//
//   - connect: N idle subscribed connections over C public channels; connect
//     rate, connect+subscribe latency, and with the server's PID its RSS per
//     connection and CPU per connect+subscribe;
//   - fanout: M subscribers, events triggered through the signed HTTP API at
//     a fixed rate, each carrying its send time; delivery latency, loss,
//     deliveries/s, server CPU per delivery;
//   - burst: like fanout, K events per trigger (batch_events);
//   - client-events: groups of connections on private channels whispering
//     client-* events to each other; relay latency and throughput;
//   - api: HTTP trigger requests/s and latency with K keep-alive clients;
//   - churn: connect, subscribe, disconnect in a loop;
//   - cross: N subscribers of one channel on one node of a cluster
//     (--port), numbered events triggered through the HTTP API of another
//     (--api-port) by K keep-alive clients, paced (--rate) or as fast as
//     they go; delivery latency, accepted triggers/s, 503 refusals
//     (counted, not retried unless --retry-503) and events lost (accepted
//     but missed by some subscriber, checked per subscriber and event),
//     with --server-pid A,B the CPU of both nodes per event.
//   - presence: M members (--connections) join one presence channel one
//     after another, each on its own connection (through a port the nodes
//     of a cluster share, each lands on any node); every initial member
//     list and member_added is checked (no duplicate, no member_removed, no
//     unknown user), then the wait until all know all M, then --queries
//     rounds of the HTTP API's users and user_count; ok or fail, time to
//     convergence, member_added propagation and API latencies (presence.go).
//
// With --reconnect the fanout scenario survives a rolling restart of the
// nodes behind its port: a connection the server closes once it was
// subscribed, during the ramp or after it (the 4200 of a draining node, or a plain EOF) is dialed, upgraded and
// subscribed again with a capped, jittered exponential backoff, a few
// attempts at a time per process. Events carry sequence numbers, checked
// per connection: the connections never dropped must receive every
// accepted event (their losses must be 0), and the dropped ones report
// their drops by close code, reconnects, time to reconnect and the events
// missed while they were closed, apart (see reconnect.go). The wait for
// deliveries after the last event ends once every connection connected at
// that moment has everything due to it; one still reconnecting owes
// nothing (Result.DrainEnd says what ended the wait).
//
// --hold keeps the connections quiet between the ramp and the first event,
// for checks that want them all held (a presence check, a rolling
// restart). --ready-file tells a script when the ramp is over, and
// --hold-until ends the hold once the script says its checks are done and
// no connection is down, so that the events neither meet the checks' load
// nor wait longer than they need.
//
// WebSocket connections are dialed and upgraded with blocking sockets (a
// bounded number in flight), then handed to gnet's client event loops
// (Client.Enroll) for the steady state, so an idle connection costs no
// goroutine. Config.Client = "goroutine" keeps a goroutine per connection
// instead, for comparison. Latencies go to one HDR histogram per event loop
// and are merged at the end; past ~18k connections (one process may hold
// 20000 open files here) the run is split over child processes that the
// bench starts by re-executing itself with a hidden --worker flag.
//
// With Config.TLS (--tls) the connections speak wss:// and, unless
// --api-tls=false, the HTTP API calls https:// (--tls-insecure,
// --tls-ca, --tls-server-name). Each connection runs a full handshake, as
// distinct browsers would, unless --tls-resume shares a session cache. The
// handshake, upgrade and subscription run on the blocking socket; then
// crypto/tls's record layer moves onto the gnet loop over an in-memory
// transport (see tls.go), so an idle TLS connection still costs no
// goroutine: about 9 KB of heap against 1.3 KB without TLS (the tls.Conn,
// its AES-GCM states and the buffers it keeps from the handshake).
//
// Run is the entry point; ParseArgs turns command-line arguments into a
// Config. Nothing here is used by the server.
package bench
