package deploytest

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	promql "github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/brokerflow/brokerflow/pkg/bus"
)

// natsExporterMetrics are the prometheus-nats-exporter metrics the rules and the dashboard
// use, with their labels: the exporter's -jsz collector with the chart's -prefix=nats (its
// jsz.go names them <prefix>_server_*, <prefix>_stream_*, <prefix>_consumer_*). They cannot be
// gathered here; this list is what deploy/components/monitoring may name besides Brokerflow's own.
var natsExporterMetrics = func() metricLabels {
	server := []string{"server_id", "server_name", "cluster", "domain", "meta_leader", "is_meta_leader"}
	stream := append(slices.Clone(server), "account", "account_id", "stream_name", "stream_leader", "is_stream_leader")
	consumer := append(slices.Clone(stream), "consumer_name", "consumer_leader", "is_consumer_leader", "consumer_desc", "consumer_created")
	set := func(labels []string) map[string]bool {
		m := map[string]bool{}
		for _, l := range labels {
			m[l] = true
		}
		return m
	}
	return metricLabels{
		"nats_server_total_message_bytes":    set(server),
		"nats_server_max_storage":            set(server),
		"nats_stream_total_bytes":            set(stream),
		"nats_stream_total_messages":         set(stream),
		"nats_consumer_num_pending":          set(consumer),
		"nats_consumer_num_ack_pending":      set(consumer),
		"nats_consumer_num_redelivered":      set(consumer),
		"nats_consumer_ack_floor_stream_seq": set(consumer),
	}
}()

// prometheusMetrics are made by Prometheus itself.
var prometheusMetrics = map[string]bool{"up": true}

// metricLabels is each exported metric's label names.
type metricLabels map[string]map[string]bool

// exportedMetrics is every metric Brokerflow's code defines, with its labels: each
// prometheus.*Opts literal's Name (with Namespace and Subsystem) in a non-test file of pkg/ and
// services/, a histogram's _bucket (with le), _sum and _count, the label names of the
// prometheus.New*Vec call it is passed to and of its ConstLabels when they are a literal; then
// the descriptors pkg/bus's real constructor registers, whose constant labels are not literals.
// Read from the source, not gathered: a metric vector with no observation yet is absent from a
// registry's output.
func exportedMetrics(t *testing.T) metricLabels {
	t.Helper()
	names := metricLabels{}
	add := func(name string, labels ...string) {
		if names[name] == nil {
			names[name] = map[string]bool{}
		}
		for _, l := range labels {
			names[name][l] = true
		}
	}
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
			// The label names passed beside each Opts literal to a New*Vec call.
			vecLabels := map[*ast.CompositeLit][]string{}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 {
					return true
				}
				opts, ok1 := call.Args[0].(*ast.CompositeLit)
				list, ok2 := call.Args[1].(*ast.CompositeLit)
				if ok1 && ok2 {
					vecLabels[opts] = stringLits(list)
				}
				return true
			})
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
				labels := vecLabels[lit]
				for _, e := range lit.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					key, _ := kv.Key.(*ast.Ident)
					if key != nil && key.Name == "ConstLabels" {
						if m, ok := kv.Value.(*ast.CompositeLit); ok {
							for _, el := range m.Elts {
								if kv2, ok := el.(*ast.KeyValueExpr); ok {
									labels = append(labels, stringLits(&ast.CompositeLit{Elts: []ast.Expr{kv2.Key}})...)
								}
							}
						}
					}
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
				add(name, labels...)
				if kind == "HistogramOpts" || kind == "SummaryOpts" {
					add(name+"_sum", labels...)
					add(name+"_count", labels...)
				}
				if kind == "HistogramOpts" {
					add(name+"_bucket", append(labels, "le")...)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// pkg/bus's constructor, run: every metric it registers must be one the scan found, and
	// its labels (the constant "service" among them) are added.
	rec := &descRecorder{}
	if _, err := bus.NewMetrics(rec, "svc"); err != nil {
		t.Fatal(err)
	}
	if len(rec.descs) == 0 {
		t.Fatal("bus.NewMetrics registered nothing")
	}
	for _, d := range rec.descs {
		if names[d.name] == nil {
			t.Errorf("bus.NewMetrics registers %s, which the source scan missed: the scan is broken", d.name)
		}
		add(d.name, d.labels...)
		if names[d.name+"_bucket"] != nil {
			add(d.name+"_bucket", d.labels...)
			add(d.name+"_sum", d.labels...)
			add(d.name+"_count", d.labels...)
		}
	}
	return names
}

func stringLits(lit *ast.CompositeLit) []string {
	var out []string
	for _, e := range lit.Elts {
		if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
			s, _ := strconv.Unquote(b.Value)
			out = append(out, s)
		}
	}
	return out
}

// descRecorder is a prometheus.Registerer that keeps what each collector describes.
type descRecorder struct {
	descs []recordedDesc
}

type recordedDesc struct {
	name   string
	labels []string
}

var descRE = regexp.MustCompile(`fqName: "([^"]+)".*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}`)

func (r *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("cannot read descriptor %s", d)
		}
		rd := recordedDesc{name: m[1]}
		for _, kv := range strings.Split(m[2], ",") {
			if k, _, ok := strings.Cut(kv, "="); ok {
				rd.labels = append(rd.labels, strings.TrimSpace(k))
			}
		}
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.TrimSpace(l); l != "" {
				rd.labels = append(rd.labels, l)
			}
		}
		r.descs = append(r.descs, rd)
	}
	return nil
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *descRecorder) Unregister(prometheus.Collector) bool { return true }

// targetLabels are added to every scraped series by Prometheus and the ServiceMonitor.
var targetLabels = map[string]bool{"job": true, "instance": true, "namespace": true, "service": true, "pod": true, "container": true, "endpoint": true}

func knownMetric(exported metricLabels, name string) bool {
	return exported[name] != nil || natsExporterMetrics[name] != nil || prometheusMetrics[name] ||
		strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
}

// metricNames returns the metric names expr selects, and checks that each label a Brokerflow or
// NATS exporter metric is matched or grouped on is one it has: a renamed label would make a rule
// silently match nothing.
func metricNames(t *testing.T, p promql.Parser, exported metricLabels, where, expr string) []string {
	t.Helper()
	e, err := p.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	hasLabel := func(metric, label string) bool {
		if labels := natsExporterMetrics[metric]; labels != nil {
			return labels[label]
		}
		return targetLabels[label] || exported[metric] == nil || exported[metric][label]
	}
	var out []string
	promql.Inspect(e, func(n promql.Node, _ []promql.Node) error {
		switch n := n.(type) {
		case *promql.VectorSelector:
			if n.Name == "" {
				t.Errorf("%s: a selector without a metric name: %s", where, n)
			}
			out = append(out, n.Name)
			for _, m := range n.LabelMatchers {
				if m.Name != "__name__" && !hasLabel(n.Name, m.Name) {
					t.Errorf("%s: %s has no label %s", where, n.Name, m.Name)
				}
			}
		case *promql.AggregateExpr:
			if n.Without {
				break
			}
			var inner []string
			promql.Inspect(n.Expr, func(m promql.Node, _ []promql.Node) error {
				if vs, ok := m.(*promql.VectorSelector); ok {
					inner = append(inner, vs.Name)
				}
				return nil
			})
			for _, l := range n.Grouping {
				if !slices.ContainsFunc(inner, func(metric string) bool { return hasLabel(metric, l) }) {
					t.Errorf("%s: grouped by %s, which none of %v has", where, l, inner)
				}
			}
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
				for _, name := range metricNames(t, p, exported, o.String()+" "+r.Alert, r.Expr) {
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
			for _, name := range metricNames(t, p, exported, "panel "+panel.Title, tg.Expr) {
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
		if exported[base+"_bucket"] != nil && name == base {
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
