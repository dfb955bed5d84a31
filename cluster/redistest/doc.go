// Package redistest runs real Redis processes for tests.
//
// It starts redis-server and redis-sentinel from PATH on free ports of
// 127.0.0.1, each in its own temporary directory and without persistence,
// in three topologies:
//
//   - Start: one standalone redis-server; StartTLS: the same, reached over
//     TLS only, with a throwaway CA.
//   - StartSentinel: a master and one replica watched by three sentinels.
//   - StartCluster: a Redis Cluster of three masters without replicas.
//
// Every process is stopped by the cleanup of the test that started it, also
// when the test fails. Nothing is ever skipped: a missing binary fails the
// test with a hint that `make test` installs it.
//
// A typical test:
//
//	func TestPublish(t *testing.T) {
//		srv := redistest.Start(t)
//		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
//		defer rdb.Close()
//		// ...
//	}
//
// The functions that take a testing.TB report failures with t.Fatalf, so,
// like t.Fatalf itself, they must be called from the goroutine running the
// test.
package redistest
