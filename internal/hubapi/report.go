// Package hubapi is the wire schema of the control channel: what a limiter sidecar
// reports to the manager every few seconds, and what the manager answers.
//
// Like limiterconfig it is shared by the data plane (internal/hubclient builds and
// sends reports) and the control plane (internal/hub decodes and aggregates
// them), so it holds plain data, bounded decoding and validation, and nothing else:
// no Kubernetes types and no I/O beyond the reader handed to it.
//
// Counters are cumulative since the sidecar process started (Boot): a lost report
// loses nothing, because the next one carries the totals, and a restart shows as a
// new Boot.ID, so the manager knows the counters began again at zero.
//
// Compatibility: fields are only ever added within a schema version, and decoders
// ignore fields they do not know, so a manager and its sidecars can be upgraded in
// either order. A change of meaning bumps the version; each side refuses versions
// it does not speak, with an error that says so.
package hubapi

import (
	"time"
)

// SchemaVersion is the value of Report.SchemaVersion and Response.SchemaVersion.
const SchemaVersion = "aiquota.dev/report/v1"

// Path is the HTTP path of the report endpoint; reports are POSTed to it as JSON.
const Path = "/v1/report"

// ContentType is the media type of reports and responses.
const ContentType = "application/json"

// Bounds. A sidecar serving a handful of models sends a few kilobytes; the limits
// leave room for a sidecar with many keys and on-demand models while keeping one
// report's cost to the manager small and predictable.
const (
	MaxReportBytes     = 1 << 20
	MaxResponseBytes   = 1 << 20
	MaxAccounts        = 1024
	MaxQueues          = 512
	MaxBreakers        = 512
	MaxTransitions     = 32
	MaxChainEntries    = 16
	MaxFailoverCounts  = 256
	MaxHeaderWindows   = 8
	maxNameLen         = 253
	maxNamespaceLen    = 63
	maxIDLen           = 128
	maxReportInterval  = time.Hour
	maxCounterValue    = 1 << 62 // far beyond any real total; catches garbage
	maxBucketMagnitude = 1e15
)

// MinReportInterval is the shortest report interval a report may state; a sidecar
// configured for less reports at this interval.
const MinReportInterval = 100 * time.Millisecond

// Resource kinds a report's Config.Kind may name (the rendered config's source).
const (
	KindFallbackChain = "FallbackChain"
	KindProviderQuota = "ProviderQuota"
)

// Breaker states, spelled as the CircuitPolicy status spells them.
const (
	BreakerClosed   = "Closed"
	BreakerOpen     = "Open"
	BreakerHalfOpen = "HalfOpen"
)

// Per-minute limit kinds, spelled as limiterconfig's fields.
const (
	LimitRequestsPerMinute     = "requestsPerMinute"
	LimitTokensPerMinute       = "tokensPerMinute"
	LimitInputTokensPerMinute  = "inputTokensPerMinute"
	LimitOutputTokensPerMinute = "outputTokensPerMinute"
)

// LimitKinds lists the per-minute kinds a Bucket or header Window may name.
var LimitKinds = []string{LimitRequestsPerMinute, LimitTokensPerMinute, LimitInputTokensPerMinute, LimitOutputTokensPerMinute}

// Report is one sidecar's state at SentAt.
type Report struct {
	// SchemaVersion must equal SchemaVersion.
	SchemaVersion string `json:"schemaVersion"`
	// Pod is the reporting pod as the downward API names it; the manager checks it
	// against the pod its service-account token is bound to.
	Pod Pod `json:"pod"`
	// Boot identifies the sidecar process; a new ID means counters restarted at zero.
	Boot Boot `json:"boot"`
	// Seq numbers the reports of one Boot, from 1, increasing.
	Seq uint64 `json:"seq"`
	// SentAt is the sidecar's clock when the report was built.
	SentAt time.Time `json:"sentAt"`
	// ReportInterval is how often this sidecar reports; the manager considers it gone
	// after a few intervals of silence.
	ReportInterval Duration `json:"reportInterval"`
	// Final is set on the last report before the sidecar exits: the manager folds it
	// in and forgets the sidecar at once instead of waiting for it to expire.
	Final bool `json:"final,omitempty"`
	// Config is the limiter configuration in force.
	Config Config `json:"config"`
	// Chain is the configuration's fallback chain, each entry resolved to its pool,
	// in order; empty for a configuration without a chain.
	Chain []ChainEntry `json:"chain,omitempty"`
	// Accounts are the (provider, key, model pool) buckets and their counters.
	Accounts []Account `json:"pools,omitempty"`
	// Queues are the (provider, model pool) admission queues.
	Queues []Queue `json:"queues,omitempty"`
	// Breakers are the (provider, model) circuit breakers in use.
	Breakers []Breaker `json:"breakers,omitempty"`
	// Failovers count requests that moved down the chain, by step and reason,
	// cumulative since Boot.
	Failovers []FailoverCount `json:"failovers,omitempty"`
	// LastFailover is the most recent one.
	LastFailover *Failover `json:"lastFailover,omitempty"`
}

// Pod identifies a pod.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// Boot identifies one run of the sidecar process.
type Boot struct {
	// ID is random per process start.
	ID string `json:"id"`
	// StartedAt is when the process started: counters count from then.
	StartedAt time.Time `json:"startedAt"`
}

// Config names the configuration in force and the resource it was rendered from.
type Config struct {
	// Hash is the sidecar's hash of the configuration document.
	Hash string `json:"hash"`
	// Kind is KindFallbackChain or KindProviderQuota; Namespace and Name name the
	// resource; Generation is its spec generation when rendered.
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Generation int64  `json:"generation,omitempty"`
}

// ChainEntry is one fallback-chain entry: the provider (ProviderQuota name), the
// model, and the pool that serves that model.
type ChainEntry struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Pool     string `json:"pool"`
}

// Account is one account (key) on one model pool of one provider.
type Account struct {
	// Provider is the ProviderQuota name; Pool the model pool's name; Key the
	// credential's non-secret ID.
	Provider string `json:"provider"`
	Pool     string `json:"pool"`
	Key      string `json:"key"`
	// Counters are cumulative since Boot (or since the pool was created, which the
	// manager notices as a counter that went down or a pool it had not seen).
	Counters Counters `json:"counters"`
	// InFlight is the number of admitted requests not finished.
	InFlight int64 `json:"inFlight"`
	// Limits are the limits this sidecar was configured with for this key.
	Limits Limits `json:"limits"`
	// SafetyMarginPercent is the provider's margin, taken off the limits.
	SafetyMarginPercent int32 `json:"safetyMarginPercent,omitempty"`
	// Learned are per-minute limits the provider's rate-limit headers reported; zero
	// where none was reported.
	Learned Limits `json:"learned"`
	// Buckets are the effective per-minute buckets (after margin, learning,
	// throttling and lease) and what they hold now.
	Buckets []Bucket `json:"buckets,omitempty"`
	// RequestsToday and TokensToday are this sidecar's own counts for the current
	// UTC day (they restart with the process).
	RequestsToday int64 `json:"requestsToday"`
	TokensToday   int64 `json:"tokensToday"`
	// Throttle is the factor upstream 429s put on the rates, 0.5..1.
	Throttle float64 `json:"throttle"`
	// Headers is the latest provider rate-limit header sample, when learning is on.
	Headers *HeaderSample `json:"headers,omitempty"`
	// Demand is what this sidecar would use of the account, for the manager's
	// lease allocator.
	Demand *Demand `json:"demand,omitempty"`
	// Lease is the grant this sidecar enforces now; absent when it holds none (no
	// lease yet, or the last one lapsed).
	Lease Grants `json:"lease,omitempty"`
}

// Counters are cumulative counts of upstream attempts and their outcomes.
type Counters struct {
	// Requests are upstream attempts (a retried request counts once per attempt,
	// as the provider counts it).
	Requests int64 `json:"requests"`
	// Retries are attempts that were followed by another attempt.
	Retries      int64 `json:"retries"`
	InputTokens  int64 `json:"inputTokens"`
	OutputTokens int64 `json:"outputTokens"`
	// RateLimited are upstream 429s; ServerErrors upstream 5xx; OtherErrors other
	// upstream 4xx; Unanswered attempts without a response (connection errors,
	// timeouts).
	RateLimited  int64 `json:"rateLimited"`
	ServerErrors int64 `json:"serverErrors"`
	OtherErrors  int64 `json:"otherErrors"`
	Unanswered   int64 `json:"unanswered"`
}

// Limits are a pool's limits for one key; zero is "not set".
type Limits struct {
	RequestsPerMinute     int64 `json:"requestsPerMinute,omitempty"`
	TokensPerMinute       int64 `json:"tokensPerMinute,omitempty"`
	InputTokensPerMinute  int64 `json:"inputTokensPerMinute,omitempty"`
	OutputTokensPerMinute int64 `json:"outputTokensPerMinute,omitempty"`
	MaxConcurrency        int64 `json:"maxConcurrency,omitempty"`
	RequestsPerDay        int64 `json:"requestsPerDay,omitempty"`
	TokensPerDay          int64 `json:"tokensPerDay,omitempty"`
}

// PerMinute returns the per-minute limit of kind (one of LimitKinds), 0 otherwise.
func (l Limits) PerMinute(kind string) int64 {
	switch kind {
	case LimitRequestsPerMinute:
		return l.RequestsPerMinute
	case LimitTokensPerMinute:
		return l.TokensPerMinute
	case LimitInputTokensPerMinute:
		return l.InputTokensPerMinute
	case LimitOutputTokensPerMinute:
		return l.OutputTokensPerMinute
	}
	return 0
}

// Bucket is one effective per-minute token bucket.
type Bucket struct {
	Kind          string  `json:"kind"`
	RatePerMinute float64 `json:"ratePerMinute"`
	Burst         float64 `json:"burst"`
	// Level is what the bucket holds now; negative is debt.
	Level float64 `json:"level"`
}

// HeaderSample is one observation of a provider's rate-limit headers.
type HeaderSample struct {
	At time.Time `json:"at"`
	// Windows by limit kind (LimitKinds).
	Windows map[string]Window `json:"windows"`
}

// Window is one reported limit; absent values are nil.
type Window struct {
	Limit     *int64 `json:"limit,omitempty"`
	Remaining *int64 `json:"remaining,omitempty"`
}

// Queue is one (provider, model pool) admission queue.
type Queue struct {
	Provider string `json:"provider"`
	Pool     string `json:"pool"`
	// Depth is the number of requests waiting now.
	Depth int64 `json:"depth"`
	// Admitted, Queued and Rejected are cumulative.
	Admitted int64 `json:"admitted"`
	Queued   int64 `json:"queued"`
	Rejected int64 `json:"rejected"`
}

// Breaker is one (provider, model) circuit breaker.
type Breaker struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	// Policy is the CircuitPolicy (in the config source's namespace) governing the
	// breaker; empty for the built-in defaults.
	Policy string `json:"policy,omitempty"`
	// State is BreakerClosed, BreakerOpen or BreakerHalfOpen.
	State string `json:"state"`
	// Since is when the breaker entered State; absent when it never changed.
	Since *time.Time `json:"since,omitempty"`
	// ConsecutiveFailures counted toward opening.
	ConsecutiveFailures int64 `json:"consecutiveFailures"`
	// Opens counts transitions to Open, cumulative.
	Opens int64 `json:"opens"`
	// Transitions are the most recent state changes, oldest first.
	Transitions []Transition `json:"transitions,omitempty"`
	// LastFailure is the most recent counted failure, when the sidecar records it.
	LastFailure *FailureSample `json:"lastFailure,omitempty"`
}

// Transition is one breaker state change.
type Transition struct {
	At   time.Time `json:"at"`
	From string    `json:"from"`
	To   string    `json:"to"`
}

// FailureSample describes one failed call: its kind and status code, never content.
type FailureSample struct {
	At time.Time `json:"at"`
	// Kind is a failure kind (limiterconfig.Failure*).
	Kind string `json:"kind"`
	// Status is the upstream HTTP status; 0 without a response.
	Status int `json:"status,omitempty"`
}

// FailoverCount counts moves from one chain entry to another for one reason.
type FailoverCount struct {
	// From and To are indexes into Report.Chain.
	From   int    `json:"from"`
	To     int    `json:"to"`
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// Failover is one move down the chain.
type Failover struct {
	At     time.Time `json:"at"`
	From   int       `json:"from"`
	To     int       `json:"to"`
	Reason string    `json:"reason"`
}

// Response is the manager's answer to an accepted report. It is versioned like
// Report: fields are only added, and a sidecar ignores fields it does not know.
type Response struct {
	// SchemaVersion must equal SchemaVersion.
	SchemaVersion string `json:"schemaVersion"`
	// Seq is the report sequence number the manager folded in.
	Seq uint64 `json:"seq"`
	// Leases are this sidecar's shares of its accounts, when the manager leases
	// accounts (its --account-leases flag, on by default). An account of the
	// report without a lease here is enforced at its configured limits, as by a
	// sidecar of a manager that predates leases.
	Leases []Lease `json:"leases,omitempty"`
	// Today is what the pools of the report's quotas used today across the
	// account's sidecars, past and present: the report's accounts' pools and every
	// other pool the manager counted today.
	Today []PoolToday `json:"today,omitempty"`
	// DayKnown says the manager knows the day's use of the report's quotas (its
	// count is seeded from their status): Today is complete, and the sidecar's
	// daily caps may open. Until a response says so they stay closed.
	DayKnown bool `json:"dayKnown,omitempty"`
}

// ErrorBody is the JSON body of every refused report, with a stable code for
// programs and a message for people.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes of refused reports.
const (
	CodeUnauthenticated  = "unauthenticated"      // 401: no, malformed, expired, forged or wrong-audience token
	CodeForbidden        = "forbidden"            // 403: token not bound to a pod
	CodePodMismatch      = "podMismatch"          // 403: the report claims another pod than the token's
	CodeNamespace        = "namespaceMismatch"    // 403: the report is about another namespace
	CodeNotInjected      = "notInjected"          // 403: the pod's injection record does not name the report's configuration, or a quota's report names another quota
	CodeMalformed        = "malformedReport"      // 400: not a valid report
	CodeReadFailed       = "readFailed"           // 400: the body could not be read (the sender went away)
	CodeTooLarge         = "reportTooLarge"       // 413
	CodeUnsupportedMedia = "unsupportedMediaType" // 415
	CodeStale            = "staleReport"          // 409: a sequence number already folded in
	CodeNotLeader        = "notLeader"            // 503: this replica does not aggregate; retry
	CodeUnavailable      = "unavailable"          // 503: the API server could not check the token; retry
	CodeBusy             = "busy"                 // 503 (429 when this caller's address has had too many): too many tokens being checked; retry after Retry-After
	CodeMethod           = "methodNotAllowed"     // 405
	CodeNotFound         = "notFound"             // 404
)
