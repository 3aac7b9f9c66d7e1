package deploytest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/bus"
)

type scaledObject struct {
	Metadata struct{ Name string } `json:"metadata"`
	Spec     struct {
		ScaleTargetRef struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int `json:"minReplicaCount"`
		MaxReplicaCount *int `json:"maxReplicaCount"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// natsTriggerKeys are the nats-jetstream scaler's metadata keys (KEDA 2.x); required first.
var natsTriggerKeys = []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold", "activationLagThreshold", "useHttps"}

// crmSyncMaxReplicas caps crm-sync: every replica shares the CRM account's quota.
const crmSyncMaxReplicas = 3

// Each consuming service has a ScaledObject whose nats-jetstream triggers name exactly its
// durable consumers as pkg/bus declares them (stream and durable name): renaming a consumer in
// the code, or in the manifests, fails here.
func TestScaledObjectsNameTheDeclaredConsumers(t *testing.T) {
	r := load(t, "prod")
	natsNS := natsNamespace(t, r)
	var sos []scaledObject
	for _, o := range ofKind(r.objs, "ScaledObject") {
		var so scaledObject
		if err := json.Unmarshal(o.JSON, &so); err != nil {
			t.Fatal(err)
		}
		sos = append(sos, so)
	}
	consuming := map[string]bool{}
	for _, c := range bus.Consumers {
		consuming[c.Service] = true
	}
	for svc := range consuming {
		if svc == bus.ServiceReporting || svc == bus.ServiceAlerter {
			// One writer to its SQLite read model (deploy/base/reporting); the alerter's few
			// alerts need no scaling, and its two replicas share a lease (deploy/base/alerter).
			continue
		}
		i := slices.IndexFunc(sos, func(so scaledObject) bool { return so.Spec.ScaleTargetRef.Name == svc })
		if i < 0 {
			t.Errorf("no ScaledObject scales %s, which consumes %v", svc, durables(bus.ConsumersOf(svc)))
			continue
		}
		so := sos[i]
		var got []string
		for _, tr := range so.Spec.Triggers {
			if tr.Type != "nats-jetstream" {
				t.Errorf("ScaledObject %s: trigger %s; want nats-jetstream", so.Metadata.Name, tr.Type)
				continue
			}
			for _, k := range natsTriggerKeys[:5] {
				if tr.Metadata[k] == "" {
					t.Errorf("ScaledObject %s: trigger without %s", so.Metadata.Name, k)
				}
			}
			for k := range tr.Metadata {
				if !slices.Contains(natsTriggerKeys, k) {
					t.Errorf("ScaledObject %s: %s is not a nats-jetstream trigger setting", so.Metadata.Name, k)
				}
			}
			if want := fmt.Sprintf("nats-headless.%s.svc.cluster.local:8222", natsNS); tr.Metadata["natsServerMonitoringEndpoint"] != want {
				t.Errorf("ScaledObject %s: natsServerMonitoringEndpoint %q, want the chart's headless Service %q", so.Metadata.Name, tr.Metadata["natsServerMonitoringEndpoint"], want)
			}
			got = append(got, tr.Metadata["stream"]+"/"+tr.Metadata["consumer"])
		}
		sort.Strings(got)
		if want := durables(bus.ConsumersOf(svc)); !slices.Equal(got, want) {
			t.Errorf("ScaledObject %s scales on %v; %s's declared consumers (pkg/bus) are %v", so.Metadata.Name, got, svc, want)
		}
		if d := findDeployment(r, svc); d == nil {
			t.Errorf("ScaledObject %s: no Deployment %s", so.Metadata.Name, svc)
		} else if d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas while KEDA scales it; each apply would reset the count", svc)
		}
		if k := so.Spec.ScaleTargetRef.Kind; k != "" && k != "Deployment" {
			t.Errorf("ScaledObject %s targets a %s", so.Metadata.Name, k)
		}
		if so.Spec.MaxReplicaCount == nil {
			t.Errorf("ScaledObject %s has no maxReplicaCount", so.Metadata.Name)
		}
	}
	for _, so := range sos {
		if !consuming[so.Spec.ScaleTargetRef.Name] {
			t.Errorf("ScaledObject %s scales %s, which declares no consumer", so.Metadata.Name, so.Spec.ScaleTargetRef.Name)
		}
		if so.Spec.ScaleTargetRef.Name == bus.ServiceCRMSync && (so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount > crmSyncMaxReplicas) {
			t.Errorf("ScaledObject %s: crm-sync must be capped at %d replicas (the CRM quota sets its pace)", so.Metadata.Name, crmSyncMaxReplicas)
		}
	}
}

func durables(specs []bus.ConsumerSpec) []string {
	var out []string
	for _, c := range specs {
		out = append(out, c.Stream+"/"+c.Durable)
	}
	sort.Strings(out)
	return out
}

// The consumers KEDA reads are the ones `streams apply` makes: their descriptions, which the
// alert rules select on, start with "brokerflow ".
func TestConsumerDescriptionsMatchTheRules(t *testing.T) {
	top := bus.DefaultTopology()
	for _, c := range bus.AllConsumers() {
		if d := top.ConsumerConfig(c).Description; !strings.HasPrefix(d, "brokerflow ") {
			t.Errorf("consumer %s: description %q; the rules' consumer_desc=~\"brokerflow .+\" would miss it", c.Durable, d)
		}
	}
}
