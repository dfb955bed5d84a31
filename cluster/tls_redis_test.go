package cluster_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reverbgo/reverb/cluster/redistest"
)

// These tests run the nodes over a redis-server that speaks TLS only (its
// plain port is 0), with a certificate signed by a throwaway CA.

// TestTLSRedis: with the CA of Redis's certificate in tls_ca_file, given
// by a rediss:// url or by host and port with tls = true, the nodes form a
// cluster, events cross nodes and presence is cluster-wide.
func TestTLSRedis(t *testing.T) {
	confs := []struct {
		name string
		conf func(srv *redistest.TLSServer) string
	}{
		{"url", func(srv *redistest.TLSServer) string {
			return fmt.Sprintf("url = \"rediss://127.0.0.1:%d\"\ntls_ca_file = %q\n", srv.Port, srv.CAFile)
		}},
		{"host_port", func(srv *redistest.TLSServer) string {
			return fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\ntls = true\ntls_ca_file = %q\n", srv.Port, srv.CAFile)
		}},
	}
	reverbBinary(t) // built before the clock starts
	for _, c := range confs {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			srv := redistest.StartTLS(t)
			redisUp := time.Since(start)
			conf := c.conf(srv)
			n1, n2 := startNodeWith(t, conf), startNodeWith(t, conf)
			n1.waitLog(0, "Connected to Redis", 10*time.Second)
			n2.waitLog(0, "Connected to Redis", 10*time.Second)
			waitCluster(t, n1, n2)
			t.Logf("TLS Redis up in %s, nodes formed in %s", redisUp.Round(time.Millisecond), (time.Since(start) - redisUp).Round(time.Millisecond))

			// A subscriber on node 2 gets what is triggered through node 1.
			b := dial(t, n2)
			b.subscribe("tls-news")
			n1.trigger("tls-news", "created", `{"id":1}`, "")
			expectData(b, "created", `{"id":1}`)

			// A member on node 1 is listed by node 2 right after her
			// subscription_succeeded.
			alice := dial(t, n1)
			if data := alice.join("presence-tls", "alice"); !strings.Contains(data, `"count":1`) {
				t.Fatalf("alice's view: %s", data)
			}
			expectUsers(t, "presence-tls", []string{"alice"}, n2, n1)

			// Everything went over TLS: the server has no other port.
			if got := srv.Do(t, "CONFIG", "GET", "port"); got != "port\n0" {
				t.Fatalf("CONFIG GET port = %q", got)
			}
		})
	}
}

// TestTLSRedisWithoutCA: with tls = true but the system's roots, which do
// not know Redis's CA, the nodes never connect. Each says Redis is
// unreachable and keeps serving its own clients; nothing crosses nodes.
func TestTLSRedisWithoutCA(t *testing.T) {
	srv := redistest.StartTLS(t)
	conf := fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\ntls = true\n", srv.Port)
	n1, n2 := startNodeWith(t, conf), startNodeWith(t, conf)
	for _, n := range []*node{n1, n2} {
		n.waitLog(0, "Redis unreachable", 10*time.Second)
		logs := n.logs.String()
		line := logs[strings.Index(logs, "Redis unreachable"):]
		line, _, _ = strings.Cut(line, "\n")
		if !strings.Contains(line, "certificate signed by unknown authority") {
			t.Fatalf("node %d does not say why Redis is unreachable:\n%s", n.port, logs)
		}
		t.Logf("node %d: ...%s", n.port, line)
	}

	a, b := dial(t, n1), dial(t, n2)
	a.subscribe("tls-news")
	b.subscribe("tls-news")
	n1.trigger("tls-news", "local", "1", "")
	expectData(a, "local", "1")
	select {
	case e := <-b.events:
		t.Fatalf("node 2 delivered %s %s without Redis", e.Event, e.Data)
	case <-time.After(time.Second):
	}

	for _, n := range []*node{n1, n2} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/up", n.port))
		if err != nil {
			t.Fatalf("node %d /up: %v", n.port, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("node %d /up: %d", n.port, resp.StatusCode)
		}
		if logs := n.logs.String(); strings.Contains(logs, "Connected to Redis") {
			t.Fatalf("node %d connected to Redis without its CA:\n%s", n.port, logs)
		}
		select {
		case <-n.done:
			t.Fatalf("node %d exited:\n%s", n.port, n.logs.String())
		default:
		}
	}
}
