package sidecar

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aiquota/aiquota/internal/hub"
	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
)

// exportedMetrics are the names the limiter's and the manager's registries
// describe, taken from the code rather than from a list kept by hand.
func exportedMetrics(t *testing.T) []string {
	t.Helper()
	reg := prometheus.NewRegistry()
	if _, err := hub.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	return append(testkit.MetricNames(newMetrics(limiter.New(limiter.Options{}), newByteBudget(1)).reg), testkit.MetricNames(reg)...)
}

var metricRef = regexp.MustCompile(`\baiquota_[a-z]+_[a-z0-9_]*[a-z0-9]`)

// unknownMetrics returns the aiquota metric names expr uses that exported does not
// hold (a histogram's series count as its name).
func unknownMetrics(expr string, exported []string) []string {
	var out []string
	for _, name := range metricRef.FindAllString(expr, -1) {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(exported, b) {
				base = b
			}
		}
		if !slices.Contains(exported, base) {
			out = append(out, name)
		}
	}
	return out
}

// TestDashboardQueriesNameExportedMetrics: the chart's Grafana dashboard parses,
// every panel query names at least one aiquota metric, and every aiquota metric it
// or the chart's alerts name is one the code exports.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	chart := filepath.Join(testenv.Root(), "charts", "aiquota")
	raw, err := os.ReadFile(filepath.Join(chart, "dashboards", "aiquota.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dash.UID == "" {
		t.Error("the dashboard has no uid: every import would make a new copy")
	}
	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			if !metricRef.MatchString(q.Expr) {
				t.Errorf("panel %q: query %q names no aiquota metric", p.Title, q.Expr)
			}
			if bad := unknownMetrics(q.Expr, exported); len(bad) > 0 {
				t.Errorf("panel %q: query %q names %v, which the code does not export", p.Title, q.Expr, bad)
			}
		}
	}
	for _, v := range dash.Templating.List {
		if bad := unknownMetrics(v.Definition, exported); len(bad) > 0 {
			t.Errorf("variable %q names %v, which the code does not export", v.Name, bad)
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
	rules, err := os.ReadFile(filepath.Join(chart, "templates", "monitoring.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if bad := unknownMetrics(string(rules), exported); len(bad) > 0 {
		t.Errorf("the chart's alerts name %v, which the code does not export", bad)
	}
}

// TestMetricsDocListsEveryMetric: docs/metrics.md has a row for every metric the
// code exports, and names no other (apart from the table of old names).
func TestMetricsDocListsEveryMetric(t *testing.T) {
	exported := exportedMetrics(t)
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc, _, _ := strings.Cut(string(raw), "### Renamed from earlier versions")
	after := strings.SplitAfter(string(raw), "## Dashboard")
	for _, name := range exported {
		if !strings.HasPrefix(name, "aiquota_") {
			continue // the Go and process collectors' are the client library's
		}
		if !strings.Contains(doc, "| `"+name+"` |") {
			t.Errorf("docs/metrics.md has no row for %s", name)
		}
	}
	if bad := unknownMetrics(doc+after[len(after)-1], exported); len(bad) > 0 {
		t.Errorf("docs/metrics.md names %v, which the code does not export", bad)
	}
}
