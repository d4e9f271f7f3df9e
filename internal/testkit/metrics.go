package testkit

import (
	"bytes"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// LintMetrics runs promlint over what g exposes now and returns its problems as
// one error, nil when there are none. The Go and process collectors a component
// links are linted too: a scrape does not tell them apart.
func LintMetrics(g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	return lint(mfs)
}

// LintExposition parses a text exposition with the Prometheus client's parser
// and runs promlint over it, as LintMetrics does over a registry.
func LintExposition(text []byte) error {
	families, err := ParseExposition(text)
	if err != nil {
		return err
	}
	return lint(slices.SortedFunc(maps.Values(families), func(a, b *dto.MetricFamily) int {
		return strings.Compare(a.GetName(), b.GetName())
	}))
}

// ParseExposition parses a text exposition as Prometheus would, by family name.
func ParseExposition(text []byte) (map[string]*dto.MetricFamily, error) {
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parse the exposition: %w", err)
	}
	return families, nil
}

func lint(mfs []*dto.MetricFamily) error {
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

// MetricNames lists the names of the metric families c describes, sorted, whether
// or not they have series yet (a vector without children gathers nothing); a
// histogram's series names (_bucket, _sum, _count) are derived from them.
func MetricNames(c prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	seen := map[string]bool{}
	for d := range ch {
		// A Desc keeps its name to itself but prints it.
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			seen[m[1]] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// CounterSum sums the counter name's series in g whose label has value, as a
// query sum(name{label="value"}) would.
func CounterSum(g prometheus.Gatherer, name, label, value string) (float64, error) {
	families, err := g.Gather()
	if err != nil {
		return 0, fmt.Errorf("gather metrics: %w", err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n, nil
}
