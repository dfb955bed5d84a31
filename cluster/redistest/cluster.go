package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
)

// clusterNodes is the number of masters StartCluster creates.
const clusterNodes = 3

// Cluster is a Redis Cluster of three masters without replicas, each
// serving a third of the 16384 hash slots.
//
// The fields are set when the Cluster is returned and never change, so a
// Cluster is safe for concurrent use; see Server for its nodes.
type Cluster struct {
	// Addrs are the client addresses of the nodes, in the order of Nodes,
	// for redis.ClusterOptions.Addrs.
	Addrs []string
	// Nodes are the redis-server processes. Each has its own ClusterPort.
	Nodes []*Server
}

// StartCluster starts three redis-server nodes with cluster-enabled and an
// explicit free cluster-port each, joins them with
// `redis-cli --cluster create ... --cluster-yes` and waits until every node
// reports cluster_state:ok, all 16384 slots assigned and three known nodes.
// The nodes use cluster-node-timeout 5000. Everything is stopped in
// t.Cleanup.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli := lookPath(t, "redis-cli")
	c := &Cluster{}
	for range clusterNodes {
		n := start(t, "redis-server", "redis.conf", 2, func(dir string, ports []int) []string {
			return append(baseConf(dir, ports[0]),
				"cluster-enabled yes",
				"cluster-port "+strconv.Itoa(ports[1]),
				"cluster-config-file nodes.conf",
				"cluster-node-timeout 5000",
			)
		})
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, c.Addrs...), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli %v: %v\n%s", args, err, out)
	}

	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": "16384",
		"cluster_known_nodes":    strconv.Itoa(clusterNodes),
	}
	poll(t, readyTimeout, "cluster ok", c.Nodes, func() (bool, string) {
		for _, n := range c.Nodes {
			info, err := commandString(n.Addr, pollTimeout, "CLUSTER", "INFO")
			if err != nil {
				return false, fmt.Sprintf("node %s: %v", n.Addr, err)
			}
			for field, v := range want {
				if got := infoField(info, field); got != v {
					return false, fmt.Sprintf("node %s: %s:%s", n.Addr, field, got)
				}
			}
		}
		return true, ""
	})
	return c
}
