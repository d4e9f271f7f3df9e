package sidecar

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/promdef"
	"github.com/aiquota/aiquota/internal/tokenizer"
)

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
// servers in one process do not collide. docs/metrics.md lists every metric.
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

	// requestLatency and firstToken are per provider and model; models reach them
	// through modelObservers, which bounds the label and keeps the children.
	requestLatency *prometheus.HistogramVec
	firstToken     *prometheus.HistogramVec
	modelMu        sync.RWMutex
	models         map[modelKey]*modelObservers
}

const prefix promdef.Prefix = "aiquota_limiter"

func newMetrics(engine *limiter.Engine, bytes *byteBudget) *metrics {
	latencyBuckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		requests: prefix.CounterVec("requests_total", "Requests from the app by provider, model pool and outcome.", "provider", "pool", "outcome"),
		upstreamStatus: prefix.CounterVec("upstream_responses_total",
			"Upstream attempts by provider, model pool, key ID and HTTP status (0 = no response).", "provider", "pool", "key", "code"),
		retries: prefix.CounterVec("retries_total", "Upstream retries by provider, model pool and failure kind.", "provider", "pool", "kind"),
		retryDelay: prefix.HistogramVec("retry_delay_seconds", "Backoff delay before each retry.",
			[]float64{.1, .25, .5, 1, 2, 4, 8, 16, 32, 60, 120}, "provider", "pool"),
		queueWait: prefix.HistogramVec("queue_wait_seconds", "Time from asking for capacity to admission or refusal (near 0 when there was room).",
			[]float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}, "provider", "pool"),
		upstreamLatency: prefix.HistogramVec("upstream_latency_seconds",
			"Upstream time of a request: its attempts, each from sending to the end of the response body.", latencyBuckets, "provider", "pool"),
		requestLatency: prefix.HistogramVec("request_latency_seconds",
			"Time of a quota-consuming request as the app sees it, from arrival to the end of the answer: queue, retries and upstream together.",
			latencyBuckets, "provider", "model"),
		firstToken: prefix.HistogramVec("time_to_first_token_seconds",
			"Time from a streamed request's arrival to the first event relayed to the app.", latencyBuckets, "provider", "model"),
		addedLatency: prefix.Histogram("added_latency_seconds",
			"Time the sidecar itself adds to a request: total minus upstream time, queue wait and retry delays.",
			[]float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1}),
		configReloads: prefix.Counter("config_reloads_total", "Configurations loaded successfully, the first included."),
		configErrors:  prefix.Counter("config_reload_errors_total", "Configuration loads that failed; the previous configuration stays in force."),
		configInfo:    prefix.GaugeVec("config_info", "The configuration in force (value 1), by document hash and source resource.", "hash", "source"),
		panics:        prefix.Counter("handler_panics_total", "Requests that hit the handler's last-resort recover (a bug)."),
		ready:         prefix.Gauge("ready", "1 while the sidecar is ready (valid config, keys readable, not draining)."),
		failovers: prefix.CounterVec("chain_failovers_total",
			"Requests that moved from one fallback chain entry (provider/model) to the next, by chain and failure kind.", "chain", "from", "to", "reason"),
		engineCollector: &engineCollector{engine: engine},
		models:          map[modelKey]*modelObservers{},
	}
	m.reg.MustRegister(m.requests, m.upstreamStatus, m.retries, m.retryDelay, m.queueWait,
		m.upstreamLatency, m.requestLatency, m.firstToken, m.addedLatency, m.configReloads, m.configErrors, m.configInfo,
		m.panics, m.ready, m.failovers, m.engineCollector,
		prefix.GaugeFunc("body_memory_held_bytes", "Bytes request bodies and kept response copies hold now.",
			func() float64 { return float64(bytes.held.Load()) }),
		prefix.GaugeFunc("body_memory_peak_bytes", "The most bytes request bodies and kept response copies held at once since the start.",
			func() float64 { return float64(bytes.peak.Load()) }),
		prefix.GaugeFunc("body_memory_budget_bytes", "The most bytes request bodies and kept response copies may hold at once (--body-memory-bytes).",
			func() float64 { return float64(bytes.size) }),
		prefix.CounterFunc("body_memory_refusals_total", "Requests answered 503 because body memory did not free up in time.",
			func() float64 { return float64(bytes.refused.Load()) }),
		prefix.CounterFunc("tokenizer_work_total", "Work the BPE tokenizer did counting prompts: characters examined, vocabulary lookups and merge steps, linear in the text.",
			func() float64 { return float64(tokenizer.Work()) }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type modelKey struct{ provider, model string }

type modelObservers struct{ latency, firstToken prometheus.Observer }

// observersFor returns the latency histograms of a provider's model. A model the
// provider does not list counts as its unlisted pool, so the apps' made-up names
// cannot grow the label; the children are kept so that an observation is a map
// lookup, not a label hash.
func (m *metrics) observersFor(up *upstream, model string) *modelObservers {
	if !up.cfg.Lists(model) {
		model = limiterconfig.UnlistedPool
	}
	k := modelKey{up.cfg.Name, model}
	m.modelMu.RLock()
	o := m.models[k]
	m.modelMu.RUnlock()
	if o != nil {
		return o
	}
	m.modelMu.Lock()
	defer m.modelMu.Unlock()
	if o = m.models[k]; o == nil {
		o = &modelObservers{latency: m.requestLatency.WithLabelValues(k.provider, k.model), firstToken: m.firstToken.WithLabelValues(k.provider, k.model)}
		m.models[k] = o
	}
	return o
}

// observeEnd records what the app saw of a request: for a quota-consuming one its
// latency and the time to its first streamed event, and, when sampled, its access
// log line. An app that went away chose when the request ended, so its time says
// nothing.
func (x *exchange) observeEnd() {
	end := time.Now()
	if x.route.up != nil && x.pool.Name != "" && x.outcome != outcomeCanceled {
		o := x.s.metrics.observersFor(x.route.up, x.route.model)
		o.latency.Observe(end.Sub(x.start).Seconds())
		if !x.firstByte.IsZero() {
			o.firstToken.Observe(x.firstByte.Sub(x.start).Seconds())
		}
	}
	x.s.access.write(x, end)
}

// noteFirstByte marks the first streamed bytes relayed to the app.
func (x *exchange) noteFirstByte() {
	if x.firstByte.IsZero() {
		x.firstByte = time.Now()
	}
}

// engineCollector turns an engine snapshot into gauges and counters at scrape time,
// so the request path pays nothing for them.
type engineCollector struct{ engine *limiter.Engine }

var (
	descQueueDepth = prefix.Desc("queue_depth", "Requests waiting for capacity.", "provider", "pool")
	descUtil       = prefix.Desc("account_utilisation_ratio", "Used fraction of an account's limit: a bucket's capacity (above 1 while in debt), or its concurrency slots.", "provider", "pool", "key", "limit")
	descReqLimit   = prefix.Desc("account_limit_requests_per_second", "Effective request rate limit of an account (after margin, learning, throttling, lease).", "provider", "pool", "key")
	descTokLimit   = prefix.Desc("account_limit_tokens_per_second", "Effective token rate limit of an account (after margin, learning, throttling, lease), by what it counts: all, input or output tokens.", "provider", "pool", "key", "direction")
	descReqLearned = prefix.Desc("account_learned_limit_requests_per_second", "Request rate limit the provider's headers reported.", "provider", "pool", "key")
	descTokLearned = prefix.Desc("account_learned_limit_tokens_per_second", "Token rate limit the provider's headers reported, by what it counts: all, input or output tokens.", "provider", "pool", "key", "direction")
	descInFlight   = prefix.Desc("in_flight_requests", "Admitted requests not yet finished.", "provider", "pool", "key")
	descReserved   = prefix.Desc("tokens_reserved_total", "Tokens reserved at admission.", "provider", "pool", "key")
	descUsed       = prefix.Desc("tokens_used_total", "Tokens the provider reported used.", "provider", "pool", "key", "direction")
	descRefunded   = prefix.Desc("tokens_refunded_total", "Reserved tokens given back at settlement.", "provider", "pool", "key")
	descOverrun    = prefix.Desc("tokens_overrun_total", "Tokens used beyond the reservation (taken as bucket debt).", "provider", "pool", "key")
	descBreaker    = prefix.Desc("breaker_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open.", "provider", "model")
	descOpens      = prefix.Desc("breaker_opens_total", "Times the breaker opened.", "provider", "model")
	descRefused    = prefix.Desc("retries_refused_total", "Retries the pool's retry budget refused (the failure went to the app).", "provider", "pool")
)

// rateDescs maps a per-minute limit kind to its effective and learned descriptors
// and, for tokens, the direction label: one unit per metric name.
var rateDescs = map[string]struct {
	limit, learned *prometheus.Desc
	direction      string
}{
	limiter.KindRequests.String():     {descReqLimit, descReqLearned, ""},
	limiter.KindTokens.String():       {descTokLimit, descTokLearned, "all"},
	limiter.KindInputTokens.String():  {descTokLimit, descTokLearned, "input"},
	limiter.KindOutputTokens.String(): {descTokLimit, descTokLearned, "output"},
}

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueDepth, descUtil, descReqLimit, descTokLimit, descReqLearned, descTokLearned, descInFlight, descReserved, descUsed, descRefunded, descOverrun, descBreaker, descOpens, descRefused} {
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
				emitRate(ch, l.Kind, false, l.RatePerMinute, &p)
			}
			if l.Learned > 0 {
				emitRate(ch, l.Kind, true, float64(l.Learned), &p)
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

// emitRate sends a per-minute limit as its per-second metric.
func emitRate(ch chan<- prometheus.Metric, kind string, learned bool, perMinute float64, p *limiter.AccountSnapshot) {
	d, ok := rateDescs[kind]
	if !ok {
		return
	}
	desc := d.limit
	if learned {
		desc = d.learned
	}
	labels := []string{p.Provider, p.Pool, p.Key}
	if d.direction != "" {
		labels = append(labels, d.direction)
	}
	ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, perMinute/60, labels...)
}

func statusLabel(code int) string { return strconv.Itoa(code) }
