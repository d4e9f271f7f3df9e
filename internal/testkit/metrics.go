package testkit

import (
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// LintMetrics runs promlint over what g exposes now and returns its problems as
// one error, nil when there are none. The Go and process collectors a component
// links are linted too: a scrape does not tell them apart.
func LintMetrics(g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		return fmt.Errorf("lint metrics: %w", err)
	}
	if len(problems) == 0 {
		return nil
	}
	lines := make([]string, len(problems))
	for i, p := range problems {
		lines[i] = p.Metric + ": " + p.Text
	}
	return fmt.Errorf("%d metric naming problems:\n%s", len(problems), strings.Join(lines, "\n"))
}

// MetricNames lists the names of the metric families g exposes now, sorted; a
// histogram's series names (_bucket, _sum, _count) are derived from them.
func MetricNames(g prometheus.Gatherer) ([]string, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	names := make([]string, len(mfs))
	for i, mf := range mfs {
		names[i] = mf.GetName()
	}
	sort.Strings(names)
	return names, nil
}
