package sidecar

import (
	"strconv"
	"sync"
	"time"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/promtext"
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
	reg *promtext.Registry

	requests        *promtext.Vec[promtext.Counter]
	upstreamStatus  *promtext.Vec[promtext.Counter]
	retries         *promtext.Vec[promtext.Counter]
	retryDelay      *promtext.Vec[promtext.Histogram]
	queueWait       *promtext.Vec[promtext.Histogram]
	upstreamLatency *promtext.Vec[promtext.Histogram]
	addedLatency    *promtext.Histogram
	configReloads   *promtext.Counter
	configErrors    *promtext.Counter
	configInfo      *promtext.Vec[promtext.Gauge]
	panics          *promtext.Counter
	ready           *promtext.Gauge
	failovers       *promtext.Vec[promtext.Counter]

	// requestLatency and firstToken are per provider and model; models reach them
	// through modelObservers, which bounds the label and keeps the children.
	requestLatency *promtext.Vec[promtext.Histogram]
	firstToken     *promtext.Vec[promtext.Histogram]
	modelMu        sync.RWMutex
	models         map[modelKey]*modelObservers
}

// prefix is the limiter's metric name prefix.
const prefix = "aiquota_limiter_"

func newMetrics(engine *limiter.Engine, bytes *byteBudget) *metrics {
	reg := promtext.NewRegistry()
	latencyBuckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	m := &metrics{
		reg:      reg,
		requests: reg.CounterVec(prefix+"requests_total", "Requests from the app by provider, model pool and outcome.", "provider", "pool", "outcome"),
		upstreamStatus: reg.CounterVec(prefix+"upstream_responses_total",
			"Upstream attempts by provider, model pool, key ID and HTTP status (0 = no response).", "provider", "pool", "key", "code"),
		retries: reg.CounterVec(prefix+"retries_total", "Upstream retries by provider, model pool and failure kind.", "provider", "pool", "kind"),
		retryDelay: reg.HistogramVec(prefix+"retry_delay_seconds", "Backoff delay before each retry.",
			[]float64{.1, .25, .5, 1, 2, 4, 8, 16, 32, 60, 120}, "provider", "pool"),
		queueWait: reg.HistogramVec(prefix+"queue_wait_seconds", "Time from asking for capacity to admission or refusal (near 0 when there was room).",
			[]float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}, "provider", "pool"),
		upstreamLatency: reg.HistogramVec(prefix+"upstream_latency_seconds",
			"Upstream time of a request: its attempts, each from sending to the end of the response body.", latencyBuckets, "provider", "pool"),
		requestLatency: reg.HistogramVec(prefix+"request_latency_seconds",
			"Time of a quota-consuming request as the app sees it, from arrival to the end of the answer: queue, retries and upstream together.",
			latencyBuckets, "provider", "model"),
		firstToken: reg.HistogramVec(prefix+"time_to_first_token_seconds",
			"Time from a streamed request's arrival to the first event relayed to the app.", latencyBuckets, "provider", "model"),
		addedLatency: reg.Histogram(prefix+"added_latency_seconds",
			"Time the sidecar itself adds to a request: total minus upstream time, queue wait and retry delays.",
			[]float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1}),
		configReloads: reg.Counter(prefix+"config_reloads_total", "Configurations loaded successfully, the first included."),
		configErrors:  reg.Counter(prefix+"config_reload_errors_total", "Configuration loads that failed; the previous configuration stays in force."),
		configInfo:    reg.GaugeVec(prefix+"config_info", "The configuration in force (value 1), by document hash and source resource.", "hash", "source"),
		panics:        reg.Counter(prefix+"handler_panics_total", "Requests that hit the handler's last-resort recover (a bug)."),
		ready:         reg.Gauge(prefix+"ready", "1 while the sidecar is ready (valid config, keys readable, not draining)."),
		failovers: reg.CounterVec(prefix+"chain_failovers_total",
			"Requests that moved from one fallback chain entry (provider/model) to the next, by chain and failure kind.", "chain", "from", "to", "reason"),
		models: map[modelKey]*modelObservers{},
	}
	reg.GaugeFunc(prefix+"body_memory_held_bytes", "Bytes request bodies and kept response copies hold now.",
		func() float64 { return float64(bytes.held.Load()) })
	reg.GaugeFunc(prefix+"body_memory_peak_bytes", "The most bytes request bodies and kept response copies held at once since the start.",
		func() float64 { return float64(bytes.peak.Load()) })
	reg.GaugeFunc(prefix+"body_memory_budget_bytes", "The most bytes request bodies and kept response copies may hold at once (--body-memory-bytes).",
		func() float64 { return float64(bytes.size) })
	reg.CounterFunc(prefix+"body_memory_refusals_total", "Requests answered 503 because body memory did not free up in time.",
		func() float64 { return float64(bytes.refused.Load()) })
	reg.CounterFunc(prefix+"tokenizer_work_total", "Work the BPE tokenizer did counting prompts: characters examined, vocabulary lookups and merge steps, linear in the text.",
		func() float64 { return float64(tokenizer.Work()) })
	reg.OnScrape(newEngineCollector(reg, engine).collect)
	reg.Runtime()
	return m
}

type modelKey struct{ provider, model string }

type modelObservers struct{ latency, firstToken *promtext.Histogram }

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
		o = &modelObservers{latency: m.requestLatency.With(k.provider, k.model), firstToken: m.firstToken.With(k.provider, k.model)}
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
type engineCollector struct {
	engine *limiter.Engine

	queueDepth, util, inFlight, reserved, used, refunded, overrun, breaker, opens, refused *promtext.Desc
	// rates maps a per-minute limit kind to its effective and learned families
	// and, for tokens, the direction label: one unit per metric name.
	rates map[string]rateDescs
}

type rateDescs struct {
	limit, learned *promtext.Desc
	direction      string
}

func newEngineCollector(reg *promtext.Registry, engine *limiter.Engine) *engineCollector {
	const gauge, counter = promtext.GaugeType, promtext.CounterType
	reqLimit := reg.Desc(gauge, prefix+"account_limit_requests_per_second", "Effective request rate limit of an account (after margin, learning, throttling, lease).", "provider", "pool", "key")
	tokLimit := reg.Desc(gauge, prefix+"account_limit_tokens_per_second", "Effective token rate limit of an account (after margin, learning, throttling, lease), by what it counts: all, input or output tokens.", "provider", "pool", "key", "direction")
	reqLearned := reg.Desc(gauge, prefix+"account_learned_limit_requests_per_second", "Request rate limit the provider's headers reported.", "provider", "pool", "key")
	tokLearned := reg.Desc(gauge, prefix+"account_learned_limit_tokens_per_second", "Token rate limit the provider's headers reported, by what it counts: all, input or output tokens.", "provider", "pool", "key", "direction")
	return &engineCollector{
		engine:     engine,
		queueDepth: reg.Desc(gauge, prefix+"queue_depth", "Requests waiting for capacity.", "provider", "pool"),
		util:       reg.Desc(gauge, prefix+"account_utilisation_ratio", "Used fraction of an account's limit: a bucket's capacity (above 1 while in debt), or its concurrency slots.", "provider", "pool", "key", "limit"),
		inFlight:   reg.Desc(gauge, prefix+"in_flight_requests", "Admitted requests not yet finished.", "provider", "pool", "key"),
		reserved:   reg.Desc(counter, prefix+"tokens_reserved_total", "Tokens reserved at admission.", "provider", "pool", "key"),
		used:       reg.Desc(counter, prefix+"tokens_used_total", "Tokens the provider reported used.", "provider", "pool", "key", "direction"),
		refunded:   reg.Desc(counter, prefix+"tokens_refunded_total", "Reserved tokens given back at settlement.", "provider", "pool", "key"),
		overrun:    reg.Desc(counter, prefix+"tokens_overrun_total", "Tokens used beyond the reservation (taken as bucket debt).", "provider", "pool", "key"),
		breaker:    reg.Desc(gauge, prefix+"breaker_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open.", "provider", "model"),
		opens:      reg.Desc(counter, prefix+"breaker_opens_total", "Times the breaker opened.", "provider", "model"),
		refused:    reg.Desc(counter, prefix+"retries_refused_total", "Retries the pool's retry budget refused (the failure went to the app).", "provider", "pool"),
		rates: map[string]rateDescs{
			limiter.KindRequests.String():     {reqLimit, reqLearned, ""},
			limiter.KindTokens.String():       {tokLimit, tokLearned, "all"},
			limiter.KindInputTokens.String():  {tokLimit, tokLearned, "input"},
			limiter.KindOutputTokens.String(): {tokLimit, tokLearned, "output"},
		},
	}
}

func (c *engineCollector) collect(s *promtext.Scrape) {
	snap := c.engine.Snapshot()
	for _, q := range snap.Queues {
		s.Add(c.queueDepth, float64(q.Depth), q.Provider, q.Pool)
		s.Add(c.refused, float64(q.RetriesRefused), q.Provider, q.Pool)
	}
	for _, p := range snap.Accounts {
		for _, l := range p.Limits {
			if l.Burst > 0 || l.RatePerMinute > 0 {
				s.Add(c.util, l.Utilisation, p.Provider, p.Pool, p.Key, l.Kind)
				c.addRate(s, l.Kind, false, l.RatePerMinute, &p)
			}
			if l.Learned > 0 {
				c.addRate(s, l.Kind, true, float64(l.Learned), &p)
			}
		}
		if p.MaxConcurrency > 0 {
			s.Add(c.util, float64(p.InFlight)/float64(p.MaxConcurrency), p.Provider, p.Pool, p.Key, limiter.LimitConcurrency)
		}
		s.Add(c.inFlight, float64(p.InFlight), p.Provider, p.Pool, p.Key)
		s.Add(c.reserved, float64(p.Counters.ReservedTokens), p.Provider, p.Pool, p.Key)
		s.Add(c.used, float64(p.Counters.InputTokens), p.Provider, p.Pool, p.Key, "input")
		s.Add(c.used, float64(p.Counters.OutputTokens), p.Provider, p.Pool, p.Key, "output")
		s.Add(c.refunded, float64(p.Counters.RefundedTokens), p.Provider, p.Pool, p.Key)
		s.Add(c.overrun, float64(p.Counters.OverrunTokens), p.Provider, p.Pool, p.Key)
	}
	for _, b := range snap.Breakers {
		s.Add(c.breaker, float64(b.State), b.Provider, b.Model)
		s.Add(c.opens, float64(b.Opens), b.Provider, b.Model)
	}
}

// addRate adds a per-minute limit as its per-second metric.
func (c *engineCollector) addRate(s *promtext.Scrape, kind string, learned bool, perMinute float64, p *limiter.AccountSnapshot) {
	d, ok := c.rates[kind]
	if !ok {
		return
	}
	desc := d.limit
	if learned {
		desc = d.learned
	}
	if d.direction == "" {
		s.Add(desc, perMinute/60, p.Provider, p.Pool, p.Key)
		return
	}
	s.Add(desc, perMinute/60, p.Provider, p.Pool, p.Key, d.direction)
}

func statusLabel(code int) string { return strconv.Itoa(code) }
