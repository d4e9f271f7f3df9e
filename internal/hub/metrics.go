package hub

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
)

const metricsNamespace = "aiquota_manager"

// Metrics mirror the aggregated status for alerting, and count the control
// channel's own work.
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
	quotaToday     *prometheus.GaugeVec
	quotaQueue     *prometheus.GaugeVec
	breakerState   *prometheus.GaugeVec
	policyOpen     *prometheus.GaugeVec
	chainActive    *prometheus.GaugeVec
	chainFailovers *prometheus.GaugeVec
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reportsAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "control_reports_accepted_total",
			Help: "Sidecar reports folded into the aggregated state.",
		}),
		reportsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "control_reports_refused_total",
			Help: "Sidecar reports refused, by reason (the error code returned).",
		}, []string{"reason"}),
		tokenReviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "control_token_reviews_total",
			Help: "Token checks that missed the cache, by result: a TokenReview's (authenticated, refused, error), or why none was sent (busy, prefiltered: malformed, expired or for another audience, refused unread; sourceLimited: the address used up its reviews).",
		}, []string{"result"}),
		activeSidecars: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "control_active_sidecars",
			Help: "Sidecars that reported recently, across all resources.",
		}),
		statusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "status_writes_total",
			Help: "Status patches of aggregated fields, by kind and result.",
		}, []string{"kind", "result"}),
		flushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "status_flush_duration_seconds",
			Help:    "Time of one pass over every due resource: compute, compare, patch.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		writeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "status_write_duration_seconds",
			Help:    "Time of one status patch.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		ingestDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "control_report_duration_seconds",
			Help:    "Time to authenticate, decode and fold in one report.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		quotaUtil: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "quota_utilisation_ratio",
			Help: "Used fraction of a ProviderQuota pool's limit over the last minute (concurrency: now; daily: today), across all sidecars.",
		}, []string{"namespace", "quota", "model", "limit"}),
		quotaSidecars: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "quota_active_sidecars",
			Help: "Sidecars reporting use of a ProviderQuota.",
		}, []string{"namespace", "quota"}),
		quotaToday: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "quota_used_today",
			Help: "Tokens or requests used in the current UTC day (status.tokensToday / requestsToday).",
		}, []string{"namespace", "quota", "unit"}),
		quotaQueue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "quota_queue_depth",
			Help: "Requests waiting for capacity across all sidecars, per model pool.",
		}, []string{"namespace", "quota", "model"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "breaker_state",
			Help: "Worst circuit-breaker state any sidecar reports: 0 closed, 1 open, 2 half-open.",
		}, []string{"namespace", "quota", "model"}),
		policyOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "circuitpolicy_open_breakers",
			Help: "Breakers under a CircuitPolicy that are open or half-open (status.openBreakers).",
		}, []string{"namespace", "policy"}),
		chainActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "chain_active_entry",
			Help: "Index of the FallbackChain entry most requests went to in the last minute.",
		}, []string{"namespace", "chain"}),
		chainFailovers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "chain_failovers",
			Help: "Failovers down a FallbackChain: total since creation, and in the last hour.",
		}, []string{"namespace", "chain", "window"}),
	}
	for _, c := range []prometheus.Collector{m.reportsAccepted, m.reportsRefused, m.tokenReviews, m.activeSidecars,
		m.statusWrites, m.flushDuration, m.writeDuration, m.ingestDuration, m.quotaUtil, m.quotaSidecars, m.quotaToday,
		m.quotaQueue, m.breakerState, m.policyOpen, m.chainActive, m.chainFailovers} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("register control-channel metrics"), err)
		}
	}
	return m, nil
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
		m.quotaToday.DeletePartialMatch(labels)
		return
	}
	st := &v.status
	m.quotaSidecars.WithLabelValues(k.Namespace, k.Name).Set(float64(st.ActiveSidecars))
	m.quotaToday.WithLabelValues(k.Namespace, k.Name, "tokens").Set(float64(st.TokensToday))
	m.quotaToday.WithLabelValues(k.Namespace, k.Name, "requests").Set(float64(st.RequestsToday))
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
		m.chainFailovers.DeletePartialMatch(labels)
		return
	}
	if e := v.status.ActiveEntry; e != nil {
		m.chainActive.WithLabelValues(k.Namespace, k.Name).Set(float64(*e))
	} else {
		m.chainActive.DeletePartialMatch(labels)
	}
	m.chainFailovers.WithLabelValues(k.Namespace, k.Name, "total").Set(float64(v.status.Failovers.Total))
	m.chainFailovers.WithLabelValues(k.Namespace, k.Name, "lastHour").Set(float64(v.status.Failovers.LastHour))
}
