// Package promtext exposes metrics in the Prometheus text format (version 0.0.4)
// without the Prometheus client library. The limiter sidecar uses it: the client
// brings protobuf, regexp, expvar and procfs, which took about 2.2 MB of the
// sidecar's resident binary pages and 0.6 MB of its heap for a dozen metric
// families (docs/benchmarks.md, "The sidecar without the Prometheus client"). The
// manager keeps the client, which controller-runtime links anyway.
//
// What it offers is what the sidecar needs: counters, gauges and histograms, with
// or without labels (at most MaxLabels), values computed at scrape time, and the
// Go runtime's and the process's standard metrics. Updating a metric allocates
// nothing and takes no lock shared across metrics; a labelled child is found in
// its family's map under a read lock.
package promtext

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// MaxLabels is the most labels a family may have: children are keyed by an array
// of their values, so that finding one allocates nothing.
const MaxLabels = 4

// ContentType is the text format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Type is a family's metric type, as its TYPE line says it.
type Type string

const (
	CounterType   Type = "counter"
	GaugeType     Type = "gauge"
	HistogramType Type = "histogram"
)

// Registry holds a component's metric families and writes them, sorted by name,
// at each scrape.
type Registry struct {
	mu         sync.Mutex
	collectors []func(*Scrape)
	names      map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{names: map[string]bool{}} }

// Names lists every registered family's name, sorted, whether or not it has
// series yet.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.names))
	for n := range r.names {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Desc describes a family. It is made by a registry, which refuses a second
// family of one name.
type Desc struct {
	name, help string
	typ        Type
	labels     []string
	order      []int // label indexes in name order: the exposition sorts them
}

// Desc registers a family whose samples a collector (OnScrape) adds at scrape
// time. It panics on a name registered before or on more than MaxLabels labels:
// both are mistakes in the code that registers, found by its first test.
func (r *Registry) Desc(typ Type, name, help string, labels ...string) *Desc {
	if len(labels) > MaxLabels {
		panic(fmt.Sprintf("promtext: %s has %d labels, more than %d", name, len(labels), MaxLabels))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[name] {
		panic("promtext: " + name + " registered twice")
	}
	r.names[name] = true
	order := make([]int, len(labels))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(labels[a], labels[b]) })
	return &Desc{name: name, help: help, typ: typ, labels: labels, order: order}
}

// OnScrape adds a collector, which adds samples of its families at each scrape.
func (r *Registry) OnScrape(collect func(*Scrape)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.collectors = append(r.collectors, collect)
}

// Scrape gathers one exposition's samples.
type Scrape struct {
	families map[*Desc][]series
}

// series is one child's rendered lines: a counter's or gauge's one line, a
// histogram's buckets, sum and count; key orders the children of a family.
type series struct {
	key   string
	lines []byte
}

// Add adds a sample of a counter or gauge family with the given label values, in
// the order of the family's labels.
func (s *Scrape) Add(d *Desc, value float64, labelValues ...string) {
	labels := s.renderLabels(d, labelValues)
	line := appendSample(nil, d.name, labels, value)
	s.families[d] = append(s.families[d], series{key: string(labels), lines: line})
}

// renderLabels renders `{a="x",b="y"}` (names sorted), or nothing without labels.
func (s *Scrape) renderLabels(d *Desc, values []string) []byte {
	if len(values) != len(d.labels) {
		panic(fmt.Sprintf("promtext: %s takes %d label values, got %d", d.name, len(d.labels), len(values)))
	}
	return appendLabels(nil, d, values, "", "")
}

// appendLabels appends the label set of a child, with one extra label (a
// histogram bucket's le) when extraName is set.
func appendLabels(b []byte, d *Desc, values []string, extraName, extraValue string) []byte {
	if len(values) == 0 && extraName == "" {
		return b
	}
	b = append(b, '{')
	for n, i := range d.order {
		if n > 0 {
			b = append(b, ',')
		}
		b = appendLabel(b, d.labels[i], values[i])
	}
	if extraName != "" {
		if len(values) > 0 {
			b = append(b, ',')
		}
		b = appendLabel(b, extraName, extraValue)
	}
	return append(b, '}')
}

// appendLabel appends name="value", the value escaped and, were it not UTF-8,
// made so: a scraper refuses an exposition with an invalid label value.
func appendLabel(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, '=', '"')
	if !utf8.ValidString(value) {
		value = strings.ToValidUTF8(value, "\uFFFD")
	}
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func appendSample(b []byte, name string, labels []byte, value float64) []byte {
	b = append(b, name...)
	b = append(b, labels...)
	b = append(b, ' ')
	b = appendFloat(b, value)
	return append(b, '\n')
}

// appendFloat writes a value as the Prometheus client does.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// Write renders every family, sorted by name, its children sorted by labels.
// Families without series write nothing, as the client's do.
func (r *Registry) Write() []byte {
	r.mu.Lock()
	collectors := slices.Clone(r.collectors)
	r.mu.Unlock()
	s := &Scrape{families: map[*Desc][]series{}}
	for _, c := range collectors {
		c(s)
	}
	descs := make([]*Desc, 0, len(s.families))
	for d := range s.families {
		descs = append(descs, d)
	}
	slices.SortFunc(descs, func(a, b *Desc) int { return cmp.Compare(a.name, b.name) })
	var out []byte
	for _, d := range descs {
		out = append(out, "# HELP "...)
		out = append(out, d.name...)
		out = append(out, ' ')
		out = append(out, helpEscaper.Replace(d.help)...)
		out = append(out, "\n# TYPE "...)
		out = append(out, d.name...)
		out = append(out, ' ')
		out = append(out, d.typ...)
		out = append(out, '\n')
		ss := s.families[d]
		slices.SortFunc(ss, func(a, b series) int { return cmp.Compare(a.key, b.key) })
		for _, x := range ss {
			out = append(out, x.lines...)
		}
	}
	return out
}

// helpEscaper escapes a HELP line's text.
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

// ServeHTTP serves the exposition to a scraper.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	body := r.Write()
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// Counter is a count that only goes up.
type Counter struct{ n atomic.Uint64 }

func (c *Counter) Inc()           { c.n.Add(1) }
func (c *Counter) Add(n uint64)   { c.n.Add(n) }
func (c *Counter) value() float64 { return float64(c.n.Load()) }

// Gauge is a value that goes up and down.
type Gauge struct{ bits atomic.Uint64 }

func (g *Gauge) Set(v float64)  { g.bits.Store(math.Float64bits(v)) }
func (g *Gauge) value() float64 { return math.Float64frombits(g.bits.Load()) }

// Histogram counts observations in buckets by their upper bounds.
type Histogram struct {
	upper   []float64       // sorted; shared by a family's children
	counts  []atomic.Uint64 // per bucket, not cumulative; the last is above every bound
	sumBits atomic.Uint64
}

func newHistogram(upper []float64) *Histogram {
	return &Histogram{upper: upper, counts: make([]atomic.Uint64, len(upper)+1)}
}

// Observe counts v in the first bucket whose bound is at least v.
func (h *Histogram) Observe(v float64) {
	h.counts[sort.SearchFloat64s(h.upper, v)].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// render appends the histogram's bucket, sum and count lines.
func (h *Histogram) render(b []byte, d *Desc, values []string) []byte {
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		le := "+Inf"
		if i < len(h.upper) {
			le = string(appendFloat(nil, h.upper[i]))
		}
		b = append(b, d.name...)
		b = append(b, "_bucket"...)
		b = appendLabels(b, d, values, "le", le)
		b = append(b, ' ')
		b = strconv.AppendUint(b, cum, 10)
		b = append(b, '\n')
	}
	labels := appendLabels(nil, d, values, "", "")
	b = appendSample(b, d.name+"_sum", labels, math.Float64frombits(h.sumBits.Load()))
	b = append(b, d.name...)
	b = append(b, "_count"...)
	b = append(b, labels...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, cum, 10)
	return append(b, '\n')
}

// Counter registers an unlabelled counter.
func (r *Registry) Counter(name, help string) *Counter {
	c := &Counter{}
	d := r.Desc(CounterType, name, help)
	r.OnScrape(func(s *Scrape) { s.Add(d, c.value()) })
	return c
}

// Gauge registers an unlabelled gauge.
func (r *Registry) Gauge(name, help string) *Gauge {
	g := &Gauge{}
	d := r.Desc(GaugeType, name, help)
	r.OnScrape(func(s *Scrape) { s.Add(d, g.value()) })
	return g
}

// GaugeFunc registers a gauge whose value f computes at scrape time.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	d := r.Desc(GaugeType, name, help)
	r.OnScrape(func(s *Scrape) { s.Add(d, f()) })
}

// CounterFunc registers a counter whose value f computes at scrape time.
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	d := r.Desc(CounterType, name, help)
	r.OnScrape(func(s *Scrape) { s.Add(d, f()) })
}

// Histogram registers an unlabelled histogram with the given bucket bounds.
func (r *Registry) Histogram(name, help string, buckets []float64) *Histogram {
	return r.HistogramVec(name, help, buckets).With()
}

// Vec is a family of children, one per combination of label values.
type Vec[T any] struct {
	desc     *Desc
	newChild func() *T
	mu       sync.RWMutex
	children map[labelKey]*vecChild[T]
}

type labelKey [MaxLabels]string

type vecChild[T any] struct {
	values []string
	metric *T
}

func newVec[T any](r *Registry, d *Desc, newChild func() *T, render func(*Scrape, *T, []string)) *Vec[T] {
	v := &Vec[T]{desc: d, newChild: newChild, children: map[labelKey]*vecChild[T]{}}
	r.OnScrape(func(s *Scrape) {
		v.mu.RLock()
		defer v.mu.RUnlock()
		for _, c := range v.children {
			render(s, c.metric, c.values)
		}
	})
	return v
}

// With returns the child of the label values, in the order of the family's
// labels, creating it at first use. It panics on a wrong number of values, as
// the client does: the caller's code names the labels.
func (v *Vec[T]) With(values ...string) *T {
	if len(values) != len(v.desc.labels) {
		panic(fmt.Sprintf("promtext: %s takes %d label values, got %d", v.desc.name, len(v.desc.labels), len(values)))
	}
	var k labelKey
	copy(k[:], values)
	v.mu.RLock()
	c := v.children[k]
	v.mu.RUnlock()
	if c != nil {
		return c.metric
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c = v.children[k]; c == nil {
		c = &vecChild[T]{values: slices.Clone(values), metric: v.newChild()}
		v.children[k] = c
	}
	return c.metric
}

// Reset removes every child.
func (v *Vec[T]) Reset() {
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.children)
}

// CounterVec registers a labelled counter family.
func (r *Registry) CounterVec(name, help string, labels ...string) *Vec[Counter] {
	d := r.Desc(CounterType, name, help, labels...)
	return newVec(r, d, func() *Counter { return &Counter{} },
		func(s *Scrape, c *Counter, values []string) { s.Add(d, c.value(), values...) })
}

// GaugeVec registers a labelled gauge family.
func (r *Registry) GaugeVec(name, help string, labels ...string) *Vec[Gauge] {
	d := r.Desc(GaugeType, name, help, labels...)
	return newVec(r, d, func() *Gauge { return &Gauge{} },
		func(s *Scrape, g *Gauge, values []string) { s.Add(d, g.value(), values...) })
}

// HistogramVec registers a labelled histogram family with the given bucket
// bounds, which must be sorted.
func (r *Registry) HistogramVec(name, help string, buckets []float64, labels ...string) *Vec[Histogram] {
	if !slices.IsSorted(buckets) {
		panic("promtext: " + name + "'s buckets are not sorted")
	}
	d := r.Desc(HistogramType, name, help, labels...)
	buckets = slices.Clone(buckets)
	return newVec(r, d, func() *Histogram { return newHistogram(buckets) },
		func(s *Scrape, h *Histogram, values []string) {
			s.families[d] = append(s.families[d], series{key: string(appendLabels(nil, d, values, "", "")), lines: h.render(nil, d, values)})
		})
}
