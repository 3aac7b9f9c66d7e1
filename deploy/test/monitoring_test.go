package deploytest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	promql "github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// natsExporterMetrics are the prometheus-nats-exporter metrics the rules and the dashboard
// use: the exporter's -jsz collector with the chart's -prefix=nats (its jsz.go names them
// <prefix>_server_*, <prefix>_stream_*, <prefix>_consumer_*). They cannot be gathered here;
// this list is what deploy/components/monitoring may name besides Brokerflow's own.
var natsExporterMetrics = map[string]bool{
	"nats_server_total_message_bytes":    true,
	"nats_server_max_storage":            true,
	"nats_stream_total_bytes":            true,
	"nats_stream_total_messages":         true,
	"nats_consumer_num_pending":          true,
	"nats_consumer_num_ack_pending":      true,
	"nats_consumer_num_redelivered":      true,
	"nats_consumer_ack_floor_stream_seq": true,
}

// prometheusMetrics are made by Prometheus itself.
var prometheusMetrics = map[string]bool{"up": true}

// exportedMetrics is every metric name Brokerflow's code defines: each prometheus.*Opts
// literal's Name (with Namespace and Subsystem) in a non-test file of pkg/ and services/, with
// a histogram's _bucket, _sum and _count, plus the Go runtime and process collectors every
// binary registers (service.NewRegistry). Read from the source, not gathered: a metric vector
// with no observation yet is absent from a registry's output.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, root := range []string{"pkg", "services"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, root), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.CompositeLit)
				if !ok {
					return true
				}
				sel, ok := lit.Type.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				kind := sel.Sel.Name
				if kind != "CounterOpts" && kind != "GaugeOpts" && kind != "HistogramOpts" && kind != "SummaryOpts" {
					return true
				}
				parts := map[string]string{}
				for _, e := range lit.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					key, _ := kv.Key.(*ast.Ident)
					val, _ := kv.Value.(*ast.BasicLit)
					if key != nil && val != nil && val.Kind == token.STRING {
						parts[key.Name], _ = strconv.Unquote(val.Value)
					}
				}
				var fq []string
				for _, p := range []string{parts["Namespace"], parts["Subsystem"], parts["Name"]} {
					if p != "" {
						fq = append(fq, p)
					}
				}
				name := strings.Join(fq, "_")
				if parts["Name"] == "" {
					t.Errorf("%s: a %s whose Name is not a string literal; deploy/test cannot read it", path, kind)
					return true
				}
				names[name] = true
				if kind == "HistogramOpts" || kind == "SummaryOpts" {
					names[name+"_sum"], names[name+"_count"] = true, true
				}
				if kind == "HistogramOpts" {
					names[name+"_bucket"] = true
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !names["brokerflow_bus_messages_handled_total"] {
		t.Fatalf("found no brokerflow_bus_messages_handled_total in the code (found %v): the scan is broken", names)
	}
	return names
}

func knownMetric(exported map[string]bool, name string) bool {
	return exported[name] || natsExporterMetrics[name] || prometheusMetrics[name] ||
		strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
}

// metricNames returns the metric names expr selects.
func metricNames(t *testing.T, p promql.Parser, where, expr string) []string {
	t.Helper()
	e, err := p.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	var out []string
	promql.Inspect(e, func(n promql.Node, _ []promql.Node) error {
		if vs, ok := n.(*promql.VectorSelector); ok {
			if vs.Name == "" {
				t.Errorf("%s: a selector without a metric name: %s", where, vs)
			}
			out = append(out, vs.Name)
		}
		return nil
	})
	return out
}

// The PrometheusRule parses with Prometheus's own rule parser (unknown fields refused, every
// expression and template checked), and every metric it names is exported.
func TestPrometheusRules(t *testing.T) {
	exported := exportedMetrics(t)
	p := promql.NewParser(promql.Options{})
	objs := ofKind(render(t, filepath.Join("overlays", "prod")), "PrometheusRule")
	if len(objs) == 0 {
		t.Fatal("the prod overlay has no PrometheusRule")
	}
	alerts := map[string]bool{}
	for _, o := range objs {
		var pr struct {
			Spec json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(o.JSON, &pr); err != nil {
			t.Fatal(err)
		}
		// spec is a rule file: {groups: [...]}.
		y, err := yaml.JSONToYAML(pr.Spec)
		if err != nil {
			t.Fatal(err)
		}
		groups, errs := rulefmt.Parse(y, false, model.UTF8Validation, p, slog.New(slog.NewTextHandler(io.Discard, nil)))
		for _, err := range errs {
			t.Errorf("%s: %v", o, err)
		}
		if groups == nil {
			continue
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				alerts[r.Alert] = true
				if r.Alert != "" && r.Labels["severity"] == "" {
					t.Errorf("%s: alert %s has no severity", o, r.Alert)
				}
				for _, name := range metricNames(t, p, o.String()+" "+r.Alert, r.Expr) {
					if !knownMetric(exported, name) {
						t.Errorf("%s: alert %s uses %s, which no code exports and the NATS exporter does not make", o, r.Alert, name)
					}
				}
			}
		}
	}
	// What the runbook promises: lag, the oldest message, failures, 429 pauses, gateway 5xx,
	// storage.
	for _, a := range []string{"BrokerflowConsumerLagHigh", "BrokerflowOldestMessageStuck", "BrokerflowFailureRateHigh", "BrokerflowConsumerPaused", "BrokerflowGateway5xx", "BrokerflowJetStreamStorageFilling"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}
}

// Every query of the Grafana dashboard parses and names exported metrics.
func TestDashboard(t *testing.T) {
	exported := exportedMetrics(t)
	p := promql.NewParser(promql.Options{})
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "components", "monitoring", "dashboards", "brokerflow.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatal("the dashboard has no uid or no panels")
	}
	var used []string
	for _, panel := range dash.Panels {
		if len(panel.Targets) == 0 {
			t.Errorf("panel %q has no query", panel.Title)
		}
		for _, tg := range panel.Targets {
			for _, name := range metricNames(t, p, "panel "+panel.Title, tg.Expr) {
				used = append(used, name)
				if !knownMetric(exported, name) {
					t.Errorf("panel %q uses %s, which no code exports and the NATS exporter does not make", panel.Title, name)
				}
			}
		}
	}
	// Each of Brokerflow's own metrics is on the dashboard.
	sort.Strings(used)
	for name := range exported {
		if strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count") {
			continue
		}
		base := strings.TrimSuffix(name, "_bucket")
		if exported[base+"_bucket"] && name == base {
			continue // a histogram is shown by its buckets
		}
		if !contains(used, name) {
			t.Errorf("the dashboard shows nothing of %s", name)
		}
	}
}

func contains(list []string, s string) bool {
	i := sort.SearchStrings(list, s)
	return i < len(list) && list[i] == s
}
