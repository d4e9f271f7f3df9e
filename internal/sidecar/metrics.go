package sidecar

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/aiquota/aiquota/internal/limiter"
)

const namespace = "aiquota_limiter"

// Request outcomes, the outcome label of requests_total.
const (
	outcomeSuccess       = "success"
	outcomeUpstreamError = "upstream_error" // the provider's error, passed through
	outcomeRateLimited   = "rate_limited"   // local 429: queue timeout, queue full, too large
	outcomeCircuitOpen   = "circuit_open"   // local 503
	outcomeContextLength = "context_length" // local 400 from the pre-check
	outcomeBadRequest    = "bad_request"    // malformed request, too large or unreadable body
	outcomeBodyTimeout   = "body_timeout"   // the body did not arrive within the read deadline
	outcomeOverloaded    = "overloaded"     // local 503: the byte budget stayed spent
	outcomeNotFound      = "not_found"      // no route, no model
	outcomeUnavailable   = "unavailable"    // not ready, upstream unreachable after retries
	outcomeCanceled      = "canceled"       // the app went away: no failure of anyone's
	outcomeStreamFailed  = "stream_failed"  // an error after streaming began
	outcomeInternalError = "internal_error" // a bug reached the handler's last-resort recover
)

// metrics is the sidecar's private registry: nothing global, so tests and several
// servers in one process do not collide.
type metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	upstreamStatus  *prometheus.CounterVec
	retries         *prometheus.CounterVec
	retryDelay      *prometheus.HistogramVec
	queueWait       *prometheus.HistogramVec
	upstreamLatency *prometheus.HistogramVec
	addedLatency    prometheus.Histogram
	configReloads   prometheus.Counter
	configErrors    prometheus.Counter
	configInfo      *prometheus.GaugeVec
	panics          prometheus.Counter
	ready           prometheus.Gauge
	failovers       *prometheus.CounterVec
	engineCollector *engineCollector
}

func newMetrics(engine *limiter.Engine, bytes *byteBudget) *metrics {
	latencyBuckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_total",
			Help: "Requests from the app by provider, model pool and outcome.",
		}, []string{"provider", "pool", "outcome"}),
		upstreamStatus: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_responses_total",
			Help: "Upstream attempts by provider, model pool, key ID and HTTP status (0 = no response).",
		}, []string{"provider", "pool", "key", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "retries_total",
			Help: "Upstream retries by provider, model pool and failure kind.",
		}, []string{"provider", "pool", "kind"}),
		retryDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "retry_delay_seconds",
			Help:    "Backoff delay before each retry.",
			Buckets: []float64{.1, .25, .5, 1, 2, 4, 8, 16, 32, 60, 120},
		}, []string{"provider", "pool"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "queue_wait_seconds",
			Help:    "Time from asking for capacity to admission or refusal (near 0 when there was room).",
			Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"provider", "pool"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "upstream_latency_seconds",
			Help:    "Time of each upstream attempt, from sending to the end of the response body.",
			Buckets: latencyBuckets,
		}, []string{"provider", "pool"}),
		addedLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "added_latency_seconds",
			Help:    "Time the sidecar itself adds to a request: total minus upstream time, queue wait and retry delays.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}),
		configReloads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "config_reloads_total",
			Help: "Configurations loaded successfully, the first included.",
		}),
		configErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "config_reload_errors_total",
			Help: "Configuration loads that failed; the previous configuration stays in force.",
		}),
		configInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_info",
			Help: "The configuration in force (value 1), by document hash and source resource.",
		}, []string{"hash", "source"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "handler_panics_total",
			Help: "Requests that hit the handler's last-resort recover (a bug).",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ready",
			Help: "1 while the sidecar is ready (valid config, keys readable, not draining).",
		}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "aiquota", Name: "chain_failovers_total",
			Help: "Requests that moved from one fallback chain entry (provider/model) to the next, by chain and failure kind.",
		}, []string{"chain", "from", "to", "reason"}),
		engineCollector: &engineCollector{engine: engine},
	}
	m.reg.MustRegister(m.requests, m.upstreamStatus, m.retries, m.retryDelay, m.queueWait,
		m.upstreamLatency, m.addedLatency, m.configReloads, m.configErrors, m.configInfo,
		m.panics, m.ready, m.failovers, m.engineCollector,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "body_bytes_held",
			Help: "Bytes request bodies and kept response copies hold now.",
		}, func() float64 { return float64(bytes.held.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "body_bytes_held_peak",
			Help: "The most bytes request bodies and kept response copies held at once since the start.",
		}, func() float64 { return float64(bytes.peak.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "body_bytes_budget",
			Help: "The most bytes request bodies and kept response copies may hold at once (--body-memory-bytes).",
		}, func() float64 { return float64(bytes.size) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "body_memory_refusals_total",
			Help: "Requests answered 503 because body memory did not free up in time.",
		}, func() float64 { return float64(bytes.refused.Load()) }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// engineCollector turns an engine snapshot into gauges and counters at scrape time,
// so the request path pays nothing for them.
type engineCollector struct{ engine *limiter.Engine }

var (
	descQueueDepth = prometheus.NewDesc(namespace+"_queue_depth", "Requests waiting for capacity.", []string{"provider", "pool"}, nil)
	descUtil       = prometheus.NewDesc(namespace+"_bucket_utilisation", "Used fraction of a bucket's capacity (above 1 while in debt).", []string{"provider", "pool", "key", "limit"}, nil)
	descLimit      = prometheus.NewDesc(namespace+"_bucket_limit_per_minute", "Effective per-minute limit of a bucket (after margin, learning, throttling, lease).", []string{"provider", "pool", "key", "limit"}, nil)
	descLearned    = prometheus.NewDesc(namespace+"_learned_limit_per_minute", "Per-minute limit the provider's headers reported.", []string{"provider", "pool", "key", "limit"}, nil)
	descInFlight   = prometheus.NewDesc(namespace+"_in_flight", "Admitted requests not yet finished.", []string{"provider", "pool", "key"}, nil)
	descReserved   = prometheus.NewDesc(namespace+"_tokens_reserved_total", "Tokens reserved at admission.", []string{"provider", "pool", "key"}, nil)
	descUsed       = prometheus.NewDesc(namespace+"_tokens_used_total", "Tokens the provider reported used.", []string{"provider", "pool", "key", "direction"}, nil)
	descRefunded   = prometheus.NewDesc(namespace+"_tokens_refunded_total", "Reserved tokens given back at settlement.", []string{"provider", "pool", "key"}, nil)
	descOverrun    = prometheus.NewDesc(namespace+"_tokens_overrun_total", "Tokens used beyond the reservation (taken as bucket debt).", []string{"provider", "pool", "key"}, nil)
	descBreaker    = prometheus.NewDesc(namespace+"_breaker_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open.", []string{"provider", "model"}, nil)
	descOpens      = prometheus.NewDesc(namespace+"_breaker_opens_total", "Times the breaker opened.", []string{"provider", "model"}, nil)
	descRefused    = prometheus.NewDesc(namespace+"_retries_refused_total", "Retries the pool's retry budget refused (the failure went to the app).", []string{"provider", "pool"}, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueDepth, descUtil, descLimit, descLearned, descInFlight, descReserved, descUsed, descRefunded, descOverrun, descBreaker, descOpens, descRefused} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.engine.Snapshot()
	for _, q := range s.Queues {
		ch <- prometheus.MustNewConstMetric(descQueueDepth, prometheus.GaugeValue, float64(q.Depth), q.Provider, q.Pool)
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(q.RetriesRefused), q.Provider, q.Pool)
	}
	for _, p := range s.Accounts {
		for _, l := range p.Limits {
			if l.Burst > 0 || l.RatePerMinute > 0 {
				ch <- prometheus.MustNewConstMetric(descUtil, prometheus.GaugeValue, l.Utilisation, p.Provider, p.Pool, p.Key, l.Kind)
				ch <- prometheus.MustNewConstMetric(descLimit, prometheus.GaugeValue, l.RatePerMinute, p.Provider, p.Pool, p.Key, l.Kind)
			}
			if l.Learned > 0 {
				ch <- prometheus.MustNewConstMetric(descLearned, prometheus.GaugeValue, float64(l.Learned), p.Provider, p.Pool, p.Key, l.Kind)
			}
		}
		if p.MaxConcurrency > 0 {
			ch <- prometheus.MustNewConstMetric(descUtil, prometheus.GaugeValue, float64(p.InFlight)/float64(p.MaxConcurrency), p.Provider, p.Pool, p.Key, limiter.LimitConcurrency)
		}
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(p.InFlight), p.Provider, p.Pool, p.Key)
		ch <- prometheus.MustNewConstMetric(descReserved, prometheus.CounterValue, float64(p.Counters.ReservedTokens), p.Provider, p.Pool, p.Key)
		ch <- prometheus.MustNewConstMetric(descUsed, prometheus.CounterValue, float64(p.Counters.InputTokens), p.Provider, p.Pool, p.Key, "input")
		ch <- prometheus.MustNewConstMetric(descUsed, prometheus.CounterValue, float64(p.Counters.OutputTokens), p.Provider, p.Pool, p.Key, "output")
		ch <- prometheus.MustNewConstMetric(descRefunded, prometheus.CounterValue, float64(p.Counters.RefundedTokens), p.Provider, p.Pool, p.Key)
		ch <- prometheus.MustNewConstMetric(descOverrun, prometheus.CounterValue, float64(p.Counters.OverrunTokens), p.Provider, p.Pool, p.Key)
	}
	for _, b := range s.Breakers {
		ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, float64(b.State), b.Provider, b.Model)
		ch <- prometheus.MustNewConstMetric(descOpens, prometheus.CounterValue, float64(b.Opens), b.Provider, b.Model)
	}
}

func statusLabel(code int) string { return strconv.Itoa(code) }
