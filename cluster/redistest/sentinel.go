package redistest

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// sentinels is the number of sentinels StartSentinel starts.
	sentinels = 3
	// quorum is the number of sentinels that must agree that the master
	// is down before an automatic failover.
	quorum = 2
	// failoverWait bounds Failover.
	failoverWait = 30 * time.Second
)

// Sentinel is a master and one replica watched by three redis-sentinel
// processes with a quorum of 2.
//
// The sentinels consider the master down after 2 s without a valid reply
// (down-after-milliseconds 2000), so pausing or stopping it for longer
// starts an automatic failover; failover-timeout is 10 s.
//
// Failover updates Master and Replica; it must not run concurrently with
// other calls on the Sentinel or with reads of those fields. The other
// methods are safe for concurrent use.
type Sentinel struct {
	// MasterName is the name the sentinels monitor the master under, for
	// redis.FailoverOptions.MasterName.
	MasterName string
	// SentinelAddrs are the addresses of the sentinels, for
	// redis.FailoverOptions.SentinelAddrs.
	SentinelAddrs []string
	// Master is the server that is master, and Replica the other one.
	// Failover updates them; after an automatic failover they are stale
	// until the next Failover.
	Master, Replica *Server
	// Sentinels are the sentinel processes, in the order of SentinelAddrs.
	Sentinels []*Server
}

// StartSentinel starts a master, a replica of it and three sentinels, and
// waits until the replica is in sync (master_link_status:up) and every
// sentinel reports the master ok, knows the replica and knows the two other
// sentinels. Everything is stopped in t.Cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	lookPath(t, "redis-sentinel")
	master := Start(t)
	replica := Start(t, "replicaof 127.0.0.1 "+strconv.Itoa(master.Port))
	s := &Sentinel{MasterName: "redistest", Master: master, Replica: replica}
	poll(t, readyTimeout, "replica in sync", []*Server{master, replica}, func() (bool, string) {
		return inSync(master, replica)
	})

	// The sentinels start after the replica is attached, so that the INFO
	// they send the master on connecting already lists it.
	for range sentinels {
		sn := start(t, "redis-sentinel", "sentinel.conf", 1, func(dir string, ports []int) []string {
			name := s.MasterName
			return append(baseConf(dir, ports[0]),
				fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", name, master.Port, quorum),
				fmt.Sprintf("sentinel down-after-milliseconds %s 2000", name),
				fmt.Sprintf("sentinel failover-timeout %s 10000", name),
				fmt.Sprintf("sentinel parallel-syncs %s 1", name),
			)
		})
		s.Sentinels = append(s.Sentinels, sn)
		s.SentinelAddrs = append(s.SentinelAddrs, sn.Addr)
	}

	// INFO sentinel has a line like
	// master0:name=redistest,status=ok,address=127.0.0.1:6379,slaves=1,sentinels=3
	want := fmt.Sprintf("name=%s,status=ok,address=%s,slaves=1,sentinels=%d", s.MasterName, master.Addr, sentinels)
	poll(t, readyTimeout, "sentinels ready", s.servers(), func() (bool, string) {
		for _, sn := range s.Sentinels {
			info, err := commandString(sn.Addr, pollTimeout, "INFO", "sentinel")
			if err != nil {
				return false, fmt.Sprintf("sentinel %s: %v", sn.Addr, err)
			}
			if got := infoField(info, "master0"); got != want {
				return false, fmt.Sprintf("sentinel %s: master0:%s, want %s", sn.Addr, got, want)
			}
		}
		return true, ""
	})
	return s
}

// inSync reports whether replica has a working link to master and master
// lists it online.
func inSync(master, replica *Server) (bool, string) {
	info, err := commandString(replica.Addr, pollTimeout, "INFO", "replication")
	if err != nil {
		return false, fmt.Sprintf("replica %s: %v", replica.Addr, err)
	}
	if got := infoField(info, "master_link_status"); got != "up" {
		return false, fmt.Sprintf("replica %s: master_link_status:%s", replica.Addr, got)
	}
	info, err = commandString(master.Addr, pollTimeout, "INFO", "replication")
	if err != nil {
		return false, fmt.Sprintf("master %s: %v", master.Addr, err)
	}
	if got := infoField(info, "slave0"); !strings.Contains(got, "port="+strconv.Itoa(replica.Port)+",state=online") {
		return false, fmt.Sprintf("master %s: slave0:%s", master.Addr, got)
	}
	return true, ""
}

func (s *Sentinel) servers() []*Server {
	return append([]*Server{s.Master, s.Replica}, s.Sentinels...)
}

// MasterAddr returns the master address ("host:port") that the first
// sentinel that answers reports (SENTINEL GET-MASTER-ADDR-BY-NAME).
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	var errs []string
	for _, sn := range s.Sentinels {
		addr, err := masterAddr(sn, s.MasterName)
		if err == nil {
			return addr
		}
		errs = append(errs, fmt.Sprintf("%s: %v", sn.Addr, err))
	}
	t.Fatalf("redistest: no sentinel reports the master: %s", strings.Join(errs, "; "))
	return ""
}

func masterAddr(sn *Server, name string) (string, error) {
	reply, err := command(sn.Addr, pollTimeout, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
	if err != nil {
		return "", err
	}
	hp, ok := reply.([]any)
	if !ok || len(hp) != 2 {
		return "", fmt.Errorf("unexpected reply %q", formatReply(reply))
	}
	return formatReply(hp[0]) + ":" + formatReply(hp[1]), nil
}

// Failover waits until the replica is in sync with the master the
// sentinels report, runs SENTINEL FAILOVER on a sentinel, again while the
// sentinels refuse (NOGOODSLAVE, INPROG), and waits until every sentinel
// reports a new master address and the server there reports role:master.
// It sets Master to that server and Replica to the other one, and returns
// the new master's address.
//
// Failover does not wait for the former master to become a replica: the
// sentinels reconfigure it about 10 s later, and until then it is still a
// master that accepts writes. A second Failover right after the first
// waits for that reconfiguration, since Sentinel would otherwise promote
// the former master, data it missed and all.
func (s *Sentinel) Failover(t testing.TB) (newMaster string) {
	t.Helper()
	old := s.MasterAddr(t)
	master, replica := s.Master, s.Replica
	if replica.Addr == old {
		master, replica = replica, master
	}
	poll(t, failoverWait, "replica in sync before failover", s.servers(), func() (bool, string) {
		return inSync(master, replica)
	})
	poll(t, failoverWait, "SENTINEL FAILOVER", s.servers(), func() (bool, string) {
		var errs []string
		for _, sn := range s.Sentinels {
			_, err := command(sn.Addr, pollTimeout, "SENTINEL", "FAILOVER", s.MasterName)
			if err == nil {
				return true, ""
			}
			errs = append(errs, fmt.Sprintf("%s: %v", sn.Addr, err))
		}
		return false, strings.Join(errs, "; ")
	})
	poll(t, failoverWait, "failover to a new master", s.servers(), func() (bool, string) {
		newMaster = ""
		for _, sn := range s.Sentinels {
			addr, err := masterAddr(sn, s.MasterName)
			switch {
			case err != nil:
				return false, fmt.Sprintf("sentinel %s: %v", sn.Addr, err)
			case addr == old:
				return false, fmt.Sprintf("sentinel %s still reports %s", sn.Addr, old)
			case newMaster != "" && addr != newMaster:
				return false, fmt.Sprintf("sentinels report %s and %s", newMaster, addr)
			}
			newMaster = addr
		}
		info, err := commandString(newMaster, pollTimeout, "INFO", "replication")
		if err != nil {
			return false, fmt.Sprintf("new master %s: %v", newMaster, err)
		}
		if role := infoField(info, "role"); role != "master" {
			return false, fmt.Sprintf("new master %s: role:%s", newMaster, role)
		}
		return true, ""
	})
	if newMaster == replica.Addr {
		s.Master, s.Replica = replica, master
	}
	return newMaster
}
