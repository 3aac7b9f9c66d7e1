package app_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/gen"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

// browser starts a headless Chromium from the operating system's package
// (as root it needs --no-sandbox), for one test. A test that needs it and
// cannot find it fails: `make test` installs it when run as root.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("no Chromium on PATH: install Debian's chromium package (`apt-get install -y chromium`; `make test` does it when run as root)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1400, 900),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("lang", "en-US"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	ctx, cancel := context.WithTimeout(ctx, natstest.Scale(90*time.Second))
	t.Cleanup(cancel)
	return ctx
}

// dashboardDOM is what the page shows: each table's cells by source, the
// text of each chart's SVG, the journey's steps, and every resource loaded.
type dashboardDOM struct {
	Funnel      map[string][]string `json:"funnel"`
	Speed       map[string][]string `json:"speed"`
	ROI         map[string][]string `json:"roi"`
	FunnelChart []string            `json:"funnelChart"`
	SpeedChart  []string            `json:"speedChart"`
	ROIChart    []string            `json:"roiChart"`
	Steps       []string            `json:"steps"`
	Resources   []string            `json:"resources"`
}

const readDashboard = `(() => {
  const table = id => Object.fromEntries([...document.querySelectorAll('#' + id + ' tbody tr')]
    .map(tr => [tr.dataset.source, [...tr.querySelectorAll('td')].map(td => td.textContent.trim())]));
  const texts = id => [...document.querySelectorAll('#' + id + ' svg text')].map(t => t.textContent.trim()).filter(s => s !== '');
  return {
    funnel: table('funnel-table'), speed: table('speed-table'), roi: table('roi-table'),
    funnelChart: texts('funnel-chart'), speedChart: texts('speed-chart'), roiChart: texts('roi-chart'),
    steps: [...document.querySelectorAll('#journey-steps li')].map(li => li.dataset.step + '@' + li.querySelector('.system').textContent),
    resources: performance.getEntriesByType('resource').map(e => e.name),
  };
})()`

var dollarsPrinter = message.NewPrinter(language.English)

func dollars(minor int64) string {
	return dollarsPrinter.Sprintf("$%d.%02d", minor/100, minor%100)
}

func secondsOf(ms int64) string { return fmt.Sprintf("%.3f s", float64(ms)/1000) }

// only keeps the texts that match re, sorted.
func only(texts []string, re string) []string {
	m := regexp.MustCompile(re)
	out := []string{}
	for _, s := range texts {
		if m.MatchString(s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// checkDashboard loads the dashboard in Chromium, with the journey of
// journey's contact open, and checks that every chart and table shows what the
// generator sent: the funnel, speed to lead (the percentiles of the speeds
// on the bus) and ROI per source, and the journey's steps as the API gives
// them. It saves a
// screenshot of the whole page as the test's artifact.
func checkDashboard(t *testing.T, base string, truth map[string]*gen.Counts, speeds map[string][]int64, journey *reporting.Journey) {
	t.Helper()
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?contact_id="+fmt.Sprint(journey.Journey["contact_id"]))); err != nil {
		t.Fatalf("load the dashboard: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('.chart[data-drawn="true"]').length === 3`)); err != nil {
		t.Fatalf("the dashboard's three charts were not drawn: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), "dashboard.png")
	if err := os.WriteFile(path, shot, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the dashboard: %s", path)
	dom, err := chromedp.Run(ctx, chromedp.Evaluate[dashboardDOM](readDashboard))
	if err != nil {
		t.Fatal(err)
	}

	var funnelLabels, speedLabels, roiLabels []string
	for source, want := range truth {
		// The funnel, in the table and in the chart's labels.
		wantFunnel := []int{want.Leads, want.Rejected, want.Contacts, want.ActiveClients, want.Transactions, want.Closings}
		got := dom.Funnel[source]
		if len(got) < len(wantFunnel) {
			t.Errorf("funnel table, %s: %v", source, got)
			continue
		}
		for i, n := range wantFunnel {
			if got[i] != strconv.Itoa(n) {
				t.Errorf("funnel table, %s: %v, the generator sent %v", source, got[:len(wantFunnel)], wantFunnel)
				break
			}
			funnelLabels = append(funnelLabels, strconv.Itoa(n))
		}

		// Speed to lead: the percentiles of the speeds on the bus.
		s := slices.Clone(speeds[source])
		slices.Sort(s)
		p50, p90 := secondsOf(reporting.Percentile(s, 0.5)), secondsOf(reporting.Percentile(s, 0.9))
		if wantSpeed := []string{strconv.Itoa(want.Synced), p50, p90}; !slices.Equal(dom.Speed[source], wantSpeed) {
			t.Errorf("speed table, %s: %v, want %v", source, dom.Speed[source], wantSpeed)
		}
		speedLabels = append(speedLabels, p50, p90)

		// ROI: the spend set, the closings' gross commission, the net the
		// ledger booked, nothing paid yet, and ROI on the net.
		roi := dollarsPrinter.Sprintf("%.1f%%", 100*float64(want.NetMinor-want.SpendMinor)/float64(want.SpendMinor))
		wantROI := []string{dollars(want.SpendMinor), dollars(want.GrossMinor), dollars(want.NetMinor), "$0.00", dollars(want.GrossMinor), roi,
			dollars(want.SpendMinor / int64(want.Leads)), dollars(want.SpendMinor / int64(want.Contacts))}
		if !slices.Equal(dom.ROI[source], wantROI) {
			t.Errorf("ROI table, %s: %v, want %v", source, dom.ROI[source], wantROI)
		}
		roiLabels = append(roiLabels, dollars(want.SpendMinor), dollars(want.NetMinor))
	}
	if len(dom.Funnel) != len(truth) {
		t.Errorf("funnel table has %d sources, the generator used %d", len(dom.Funnel), len(truth))
	}
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"funnel chart", only(dom.FunnelChart, `^\d+$`), sorted(funnelLabels)},
		{"speed chart", only(dom.SpeedChart, `^\d+\.\d{3} s$`), sorted(speedLabels)},
		{"ROI chart", only(dom.ROIChart, `^\$`), sorted(roiLabels)},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s labels %v, want %v (all its text: %q)", c.name, c.got, c.want, map[string][]string{
				"funnel chart": dom.FunnelChart, "speed chart": dom.SpeedChart, "ROI chart": dom.ROIChart}[c.name])
		}
	}

	// The journey of a returning person who became an active client: two
	// leads, each to the contact, the stage change, the loop, its closing
	// and the commission booked, in the API's order.
	wantSteps := make([]string, len(journey.Steps))
	for i, s := range journey.Steps {
		wantSteps[i] = s.Step + "@" + s.Source
	}
	if !slices.Equal(dom.Steps, wantSteps) || !slices.Equal(sorted(wantSteps), sorted([]string{
		"lead@website", "lead@zillow", "contact@followupboss", "contact@followupboss", "active_client@followupboss",
		"transaction@dotloop", "closing@dotloop", "commission_booked@quickbooks",
	})) {
		t.Errorf("journey steps %v; the API's %v", dom.Steps, wantSteps)
	}
	// Offline: everything the page loaded came from reporting itself.
	for _, r := range dom.Resources {
		if !strings.HasPrefix(r, base+"/") {
			t.Errorf("the dashboard loaded %s, not from reporting", r)
		}
	}
	if len(dom.Resources) == 0 {
		t.Error("the dashboard loaded no resources: no chart library?")
	}
}
