package natstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StartCluster runs an in-process JetStream cluster of n servers on random
// loopback ports, each storing in its own t.TempDir(), and waits until it
// has a meta leader. Streams declared on it may use n replicas.
func StartCluster(tb testing.TB, n int) []*Server {
	tb.Helper()
	ports := freePorts(tb, n)
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	servers := make([]*Server, n)
	for i := range n {
		dir := tb.TempDir()
		opts := &server.Options{
			ServerName: fmt.Sprintf("natstest-%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   dir,
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "natstest",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			tb.Fatalf("natstest: cluster server %d: %v", i, err)
		}
		go ns.Start()
		tb.Cleanup(func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		})
		servers[i] = &Server{Server: ns, StoreDir: dir}
	}
	for _, s := range servers {
		if !s.ReadyForConnections(Scale(30 * time.Second)) {
			tb.Fatalf("natstest: cluster server %s not ready", s.Name())
		}
	}
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		tb.Fatalf("natstest: connect to cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	Eventually(tb, 60*time.Second, "the cluster's meta leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
	return servers
}

// freePorts reserves n loopback ports for cluster routes, which must be
// known before the servers start.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, n)
	lns := make([]net.Listener, n)
	var lc net.ListenConfig
	for i := range n {
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns[i] = ln
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

// ClusterKV declares the bucket cfg (its Replicas as given) on the cluster
// of servers and returns a handle on it through each server, each on its
// own connection, once every server knows it.
func ClusterKV(tb testing.TB, servers []*Server, cfg jetstream.KeyValueConfig) []jetstream.KeyValue {
	tb.Helper()
	ctx := Context(tb, time.Minute)
	kvs := make([]jetstream.KeyValue, len(servers))
	for i, s := range servers {
		_, js := Connect(tb, s)
		if i == 0 {
			if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
				tb.Fatalf("natstest: bucket %s: %v", cfg.Bucket, err)
			}
		}
		Eventually(tb, 30*time.Second, "the bucket on every server", func() bool {
			kv, err := js.KeyValue(ctx, cfg.Bucket)
			kvs[i] = kv
			return err == nil
		})
	}
	return kvs
}
