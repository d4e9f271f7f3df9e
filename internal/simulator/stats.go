package simulator

// Stats is the simulator's ground truth: what each account and pool admitted, refused
// and served. GET /sim/stats returns it as JSON.
type Stats struct {
	// Unauthenticated counts requests whose credentials matched no account (or that
	// had none). They belong to no account.
	Unauthenticated int64 `json:"unauthenticated"`
	// Unrouted counts requests to paths no persona serves, from any caller.
	Unrouted int64          `json:"unrouted"`
	Accounts []AccountStats `json:"accounts"`
}

// AccountStats is one account. The key itself never appears: Index is the account's
// position in Config.Accounts and KeyID a short hash of the key.
type AccountStats struct {
	Index    int    `json:"index"`
	KeyID    string `json:"keyId"`
	Provider string `json:"provider"`
	// Requests counts every request that authenticated as this account.
	Requests int64 `json:"requests"`
	// Rejected counts refusals that happened before a model pool was known: auth
	// (the key sent the wrong way for the persona), bad_request (unreadable body,
	// no model, a route of another persona).
	Rejected map[string]int64 `json:"rejected,omitempty"`
	// Pools are the model pools that saw traffic or are configured, by name.
	Pools []PoolStats `json:"pools"`
}

// PoolStats is one model pool of one account.
type PoolStats struct {
	Pool string `json:"pool"`
	// Requests counts requests that named a model of this pool: Admitted, plus the
	// refusals in Rejected, plus CountTokensCalls.
	Requests int64 `json:"requests"`
	// Admitted requests passed every limit; Completed of them have ended (in any way:
	// answered, reset, cut off, client gone). Admitted - Completed are in flight.
	Admitted  int64 `json:"admitted"`
	Completed int64 `json:"completed"`
	InFlight  int64 `json:"inFlight"`
	// Rejected counts refusals by reason: rpm, tpm, itpm, otpm, concurrency, daily,
	// context, bad_request, injected_fault (injected status errors and outages).
	Rejected map[string]int64 `json:"rejected,omitempty"`
	// InputTokens and OutputTokens are the usage reported to clients (and charged to
	// the buckets after settlement), by the simulator's own counting rule.
	InputTokens  int64 `json:"inputTokens"`
	OutputTokens int64 `json:"outputTokens"`
	// MaxConcurrent is the most requests in flight at once.
	MaxConcurrent int64 `json:"maxConcurrent"`
	// PeakUsage is the most each per-minute bucket held in use (capacity minus level)
	// right after an admission.
	PeakUsage BucketUsage `json:"peakUsage"`
	// Faults that happened to admitted requests.
	Resets          int64 `json:"resets"`
	Malformed       int64 `json:"malformed"`
	MidStreamErrors int64 `json:"midStreamErrors"`
	// CountTokensCalls counts token-counting requests, which use no bucket.
	CountTokensCalls int64 `json:"countTokensCalls"`
}

// BucketUsage is per bucket: requests, tokens, input tokens, output tokens.
type BucketUsage struct {
	Requests     int64 `json:"requests"`
	Tokens       int64 `json:"tokens"`
	InputTokens  int64 `json:"inputTokens"`
	OutputTokens int64 `json:"outputTokens"`
}

func (s *PoolStats) reject(reason string) {
	if s.Rejected == nil {
		s.Rejected = map[string]int64{}
	}
	s.Rejected[reason]++
}

// Pool returns the stats of the named pool, or false.
func (a AccountStats) Pool(name string) (PoolStats, bool) {
	for _, p := range a.Pools {
		if p.Pool == name {
			return p, true
		}
	}
	return PoolStats{}, false
}
