package testkit

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestLintMetrics(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    prometheus.Collector
		want string // a fragment of the error; "" for none
	}{
		{"conventional", prometheus.NewCounter(prometheus.CounterOpts{Name: "x_requests_total", Help: "Requests."}), ""},
		{"counter without _total", prometheus.NewCounter(prometheus.CounterOpts{Name: "x_requests", Help: "Requests."}), "_total"},
		{"milliseconds", prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_wait_milliseconds", Help: "Wait."}), "base unit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(tc.c)
			if c, ok := tc.c.(prometheus.Counter); ok {
				c.Inc()
			}
			err := LintMetrics(reg)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("LintMetrics: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("LintMetrics = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestMetricNamesIncludesVectorsWithoutSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "b_total", Help: "B."}, []string{"l"}),
		prometheus.NewHistogram(prometheus.HistogramOpts{Name: "a_seconds", Help: "A."}))
	if diff := cmp.Diff([]string{"a_seconds", "b_total"}, MetricNames(reg)); diff != "" {
		t.Errorf("MetricNames (-want +got):\n%s", diff)
	}
}
