package observability_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/k8s/install"
)

// dashboardExprs are the PromQL queries of the Grafana dashboard's panels.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(install.Dashboard()), &d); err != nil {
		t.Fatalf("k8s/install/dashboards/kar.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("%d queries in the dashboard", len(exprs))
	}
	return exprs
}

// metricName finds the metric names in PromQL (kar's, Go's, the process').
var metricName = regexp.MustCompile(`\b(?:kar|go|process)_[A-Za-z0-9_]+`)

// exported says whether a name in a query is a series the scrape has: a
// family, or a histogram family's _bucket, _sum or _count.
func exported(fams map[string]*dto.MetricFamily, name string) bool {
	if fams[name] != nil {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] != nil && fams[base].GetType() == dto.MetricType_HISTOGRAM {
			return true
		}
	}
	return false
}

// TestDashboardQueriesExportedMetrics scrapes a real sidecar on its
// -metrics_port after a small workload (a service call, an actor call, a
// request held for a missing service) and checks that every metric the
// Grafana dashboard queries is one the sidecar exports. The metrics port
// serves /metrics and nothing else of the REST API.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	exprs := dashboardExprs(t)
	b := testenv.Backend(t)
	const app = "obsdash"
	appPort := component(t, nil)
	metricsPort := testenv.FreePort(t)
	server := startSidecar(t, b, "server", "-app", app, "-service", "svc", "-actors", "Counter",
		"-app_port", strconv.Itoa(appPort), "-metrics_port", strconv.Itoa(metricsPort))
	waitMember(t, b, app, "svc", "Counter")
	for _, c := range []struct{ path, pragma, body string }{
		{"/kar/v1/service/svc/call/ok", "", "{}"},
		{"/kar/v1/actor/Counter/c1/call/incr", "", "[]"},
		{"/kar/v1/service/nobody/call/x", "async", "{}"},
	} {
		if s := call(t, server, "POST", c.path, c.pragma, c.body); s >= 300 {
			t.Fatalf("POST %s: %d", c.path, s)
		}
	}

	names := map[string]bool{}
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			names[name] = true
		}
	}
	if len(names) < 20 {
		t.Fatalf("%d metric names found in the dashboard's queries: %v", len(names), names)
	}
	var fams map[string]*dto.MetricFamily
	var missing []string
	testenv.Eventually(t, 15*time.Second, func() bool {
		fams = scrape(t, metricsPort)
		missing = missing[:0]
		for name := range names {
			if !exported(fams, name) {
				missing = append(missing, name)
			}
		}
		slices.Sort(missing)
		return len(missing) == 0
	}, "every metric of the dashboard's queries on the sidecar's /metrics (missing: %v)", &missing)

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/kar/v1/system/health", metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /kar/v1/system/health on the metrics port: %d, want 404 (only /metrics is served there)", resp.StatusCode)
	}
}
