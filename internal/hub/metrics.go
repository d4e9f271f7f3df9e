package hub

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/promdef"
)

const prefix promdef.Prefix = "aiquota_manager"

// Metrics mirror the aggregated status for alerting, and count the control
// channel's own work. docs/metrics.md lists every metric.
type Metrics struct {
	reportsAccepted prometheus.Counter
	reportsRefused  *prometheus.CounterVec
	tokenReviews    *prometheus.CounterVec
	activeSidecars  prometheus.Gauge
	statusWrites    *prometheus.CounterVec
	flushDuration   prometheus.Histogram
	writeDuration   prometheus.Histogram
	ingestDuration  prometheus.Histogram

	quotaUtil      *prometheus.GaugeVec
	quotaSidecars  *prometheus.GaugeVec
	quotaRequests  *prometheus.GaugeVec
	quotaTokens    *prometheus.GaugeVec
	quotaQueue     *prometheus.GaugeVec
	breakerState   *prometheus.GaugeVec
	policyOpen     *prometheus.GaugeVec
	chainActive    *prometheus.GaugeVec
	chainFailovers *failoverCounter
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reportsAccepted: prefix.Counter("control_reports_accepted_total", "Sidecar reports folded into the aggregated state."),
		reportsRefused:  prefix.CounterVec("control_reports_refused_total", "Sidecar reports refused, by reason (the error code returned).", "reason"),
		tokenReviews: prefix.CounterVec("control_token_reviews_total",
			"Token checks that missed the cache, by result: a TokenReview's (authenticated, refused, error), or why none was sent (busy, prefiltered: malformed, expired or for another audience, refused unread; sourceLimited: the address used up its reviews).",
			"result"),
		activeSidecars: prefix.Gauge("control_active_sidecars", "Sidecars that reported recently, across all resources."),
		statusWrites:   prefix.CounterVec("status_writes_total", "Status patches of aggregated fields, by kind and result.", "kind", "result"),
		flushDuration: prefix.Histogram("status_flush_duration_seconds", "Time of one pass over every due resource: compute, compare, patch.",
			[]float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}),
		writeDuration: prefix.Histogram("status_write_duration_seconds", "Time of one status patch.",
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}),
		ingestDuration: prefix.Histogram("control_report_duration_seconds", "Time to authenticate, decode and fold in one report.",
			[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}),
		quotaUtil: prefix.GaugeVec("quota_utilisation_ratio",
			"Used fraction of a ProviderQuota pool's per-minute or concurrency limit (concurrency: now), across all sidecars.",
			"namespace", "quota", "model", "limit"),
		quotaSidecars: prefix.GaugeVec("quota_active_sidecars", "Sidecars reporting use of a ProviderQuota.", "namespace", "quota"),
		quotaRequests: prefix.GaugeVec("quota_requests_today", "Requests used in the current UTC day (status.requestsToday).", "namespace", "quota"),
		quotaTokens:   prefix.GaugeVec("quota_tokens_today", "Tokens used in the current UTC day (status.tokensToday).", "namespace", "quota"),
		quotaQueue: prefix.GaugeVec("quota_queue_depth", "Requests waiting for capacity across all sidecars, per model pool.",
			"namespace", "quota", "model"),
		breakerState: prefix.GaugeVec("breaker_state", "Worst circuit-breaker state any sidecar reports: 0 closed, 1 open, 2 half-open.",
			"namespace", "quota", "model"),
		policyOpen: prefix.GaugeVec("circuitpolicy_open_breakers", "Breakers under a CircuitPolicy that are open or half-open (status.openBreakers).",
			"namespace", "policy"),
		chainActive: prefix.GaugeVec("chain_active_entry", "Index of the FallbackChain entry most requests went to in the last minute.",
			"namespace", "chain"),
		chainFailovers: &failoverCounter{totals: map[resourceKey]float64{}},
	}
	for _, c := range []prometheus.Collector{m.reportsAccepted, m.reportsRefused, m.tokenReviews, m.activeSidecars,
		m.statusWrites, m.flushDuration, m.writeDuration, m.ingestDuration, m.quotaUtil, m.quotaSidecars, m.quotaRequests,
		m.quotaTokens, m.quotaQueue, m.breakerState, m.policyOpen, m.chainActive, m.chainFailovers} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("register control-channel metrics"), err)
		}
	}
	return m, nil
}

// failoverCounter exports each FallbackChain's status.failovers.total, which only
// grows (the sidecars' counts since the chain was created), as a counter: rate and
// increase then give any window, where a gauge per window could not.
type failoverCounter struct {
	mu     sync.Mutex
	totals map[resourceKey]float64
}

var descChainFailovers = prefix.Desc("chain_failovers_total",
	"Failovers down a FallbackChain across all its sidecars since the chain was created (status.failovers.total).", "namespace", "chain")

func (c *failoverCounter) Describe(ch chan<- *prometheus.Desc) { ch <- descChainFailovers }

func (c *failoverCounter) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.totals {
		ch <- prometheus.MustNewConstMetric(descChainFailovers, prometheus.CounterValue, v, k.Namespace, k.Name)
	}
}

func (c *failoverCounter) set(k resourceKey, total int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.totals[k] = float64(total)
	} else {
		delete(c.totals, k)
	}
}

func breakerValue(state string) float64 {
	switch state {
	case hubapi.BreakerOpen:
		return 1
	case hubapi.BreakerHalfOpen:
		return 2
	}
	return 0
}

type usageRef struct{ used, limit int64 }

func ref(u *quotav1alpha1.Usage) *usageRef {
	if u == nil {
		return nil
	}
	return &usageRef{used: u.Used, limit: u.Limit}
}

// observeQuota replaces a ProviderQuota's series with the view's.
func (m *Metrics) observeQuota(k resourceKey, v *quotaView) {
	labels := map[string]string{"namespace": k.Namespace, "quota": k.Name}
	m.quotaUtil.DeletePartialMatch(labels)
	m.quotaQueue.DeletePartialMatch(labels)
	m.breakerState.DeletePartialMatch(labels)
	if v == nil || v.status.ActiveSidecars == 0 {
		m.quotaSidecars.DeletePartialMatch(labels)
		m.quotaRequests.DeletePartialMatch(labels)
		m.quotaTokens.DeletePartialMatch(labels)
		return
	}
	st := &v.status
	m.quotaSidecars.WithLabelValues(k.Namespace, k.Name).Set(float64(st.ActiveSidecars))
	m.quotaTokens.WithLabelValues(k.Namespace, k.Name).Set(float64(st.TokensToday))
	m.quotaRequests.WithLabelValues(k.Namespace, k.Name).Set(float64(st.RequestsToday))
	for _, mu := range st.Models {
		for limit, u := range map[string]*usageRef{
			hubapi.LimitRequestsPerMinute:     ref(mu.RequestsPerMinute),
			hubapi.LimitTokensPerMinute:       ref(mu.TokensPerMinute),
			hubapi.LimitInputTokensPerMinute:  ref(mu.InputTokensPerMinute),
			hubapi.LimitOutputTokensPerMinute: ref(mu.OutputTokensPerMinute),
			"maxConcurrency":                  ref(mu.Concurrency),
		} {
			if u != nil && u.limit > 0 {
				m.quotaUtil.WithLabelValues(k.Namespace, k.Name, mu.Name, limit).Set(float64(u.used) / float64(u.limit))
			}
		}
	}
	for pool, depth := range v.queues {
		m.quotaQueue.WithLabelValues(k.Namespace, k.Name, pool).Set(float64(depth))
	}
	for _, b := range v.breakers {
		m.breakerState.WithLabelValues(k.Namespace, k.Name, b.model).Set(breakerValue(b.state))
	}
}

func (m *Metrics) observePolicy(k resourceKey, v *policyOwned) {
	if v == nil || len(v.Breakers) == 0 {
		m.policyOpen.DeleteLabelValues(k.Namespace, k.Name)
		return
	}
	m.policyOpen.WithLabelValues(k.Namespace, k.Name).Set(float64(v.OpenBreakers))
}

func (m *Metrics) observeChain(k resourceKey, v *chainView) {
	labels := map[string]string{"namespace": k.Namespace, "chain": k.Name}
	if v == nil || v.activeSidecars == 0 {
		m.chainActive.DeletePartialMatch(labels)
		m.chainFailovers.set(k, 0, false)
		return
	}
	if e := v.status.ActiveEntry; e != nil {
		m.chainActive.WithLabelValues(k.Namespace, k.Name).Set(float64(*e))
	} else {
		m.chainActive.DeletePartialMatch(labels)
	}
	m.chainFailovers.set(k, v.status.Failovers.Total, true)
}
