package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/brokerflow/brokerflow/pkg/natsauth"
)

// path reads a nested value of m.
func path(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

// seedRE matches an nkey seed (user, account, operator, server or cluster).
var seedRE = regexp.MustCompile(`\bS[UAONC][A-Z2-7]{50,}\b`)

// The production values for the NATS chart: three clustered servers, JetStream on files with an
// fsync before every ack, the monitoring port and exporter the scaler and the rules read, and
// no users or seeds of their own (they come from `brokerflow users helm-values`).
func TestNATSValues(t *testing.T) {
	for _, tc := range []struct {
		file     string
		replicas float64
	}{{"values.yaml", 3}, {"values-dev.yaml", 1}} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "nats", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if seedRE.Match(b) {
				t.Fatalf("%s holds an nkey seed; seeds go in Secrets only", tc.file)
			}
			var v map[string]any
			if err := yaml.UnmarshalStrict(b, &v); err != nil {
				t.Fatal(err)
			}
			clustered, _ := path(v, "config", "cluster", "enabled").(bool)
			if tc.replicas > 1 && (!clustered || path(v, "config", "cluster", "replicas") != tc.replicas) {
				t.Errorf("config.cluster: want enabled with %v replicas", tc.replicas)
			}
			if tc.replicas == 1 && clustered {
				t.Error("config.cluster is enabled in the single-server values")
			}
			for _, k := range [][]string{{"config", "jetstream", "enabled"}, {"config", "jetstream", "fileStore", "enabled"}, {"config", "jetstream", "fileStore", "pvc", "enabled"}, {"config", "monitor", "enabled"}} {
				if path(v, k...) != true {
					t.Errorf("%v must be true", k)
				}
			}
			if path(v, "config", "jetstream", "memoryStore", "enabled") != false {
				t.Error("config.jetstream.memoryStore must be off: every stream is on files")
			}
			if got := path(v, "config", "jetstream", "merge", "sync_interval"); got != "always" {
				t.Errorf("config.jetstream.merge.sync_interval = %v, want always (docs/operations.md, Durability)", got)
			}
			if path(v, "config", "merge", "authorization") != nil {
				t.Error("config.merge.authorization is set here; it comes only from `brokerflow users helm-values`")
			}
			if tc.replicas > 1 {
				if path(v, "promExporter", "enabled") != true {
					t.Error("promExporter must be enabled: the alert rules read its nats_* metrics")
				}
				if path(v, "podTemplate", "topologySpreadConstraints", "topology.kubernetes.io/zone") == nil {
					t.Error("the servers are not spread over zones")
				}
			}
		})
	}
}

// What `brokerflow users helm-values` renders is config.merge.authorization, which the values
// above leave to it, with public keys only.
func TestUsersHelmValuesMerge(t *testing.T) {
	dir := t.TempDir()
	if err := natsauth.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	b, err := natsauth.HelmValues(dir)
	if err != nil {
		t.Fatal(err)
	}
	if seedRE.Match(b) {
		t.Fatal("helm-values holds a seed")
	}
	var v map[string]any
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatal(err)
	}
	users, _ := path(v, "config", "merge", "authorization", "users").([]any)
	if len(users) == 0 {
		t.Fatalf("helm-values renders no config.merge.authorization.users:\n%s", b)
	}
}
