// Package promdef builds the Prometheus collectors of the manager's hub under its
// name prefix, so that every metric is declared by its name, help and labels
// alone (testkit.LintMetrics keeps the names conventional). The limiter sidecar
// does not link the Prometheus client: its metrics are internal/promtext's.
package promdef

import "github.com/prometheus/client_golang/prometheus"

// Prefix is a component's metric name prefix, such as "aiquota_limiter".
type Prefix string

func (p Prefix) name(name string) string { return string(p) + "_" + name }

func (p Prefix) Counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: p.name(name), Help: help})
}

func (p Prefix) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: p.name(name), Help: help}, labels)
}

func (p Prefix) Gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: p.name(name), Help: help})
}

func (p Prefix) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: p.name(name), Help: help}, labels)
}

func (p Prefix) GaugeFunc(name, help string, f func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p.name(name), Help: help}, f)
}

func (p Prefix) CounterFunc(name, help string, f func() float64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: p.name(name), Help: help}, f)
}

func (p Prefix) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: p.name(name), Help: help, Buckets: buckets})
}

func (p Prefix) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: p.name(name), Help: help, Buckets: buckets}, labels)
}

// Desc describes a metric a custom collector emits at scrape time.
func (p Prefix) Desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(p.name(name), help, labels, nil)
}
