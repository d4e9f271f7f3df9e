package simulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aiquota/aiquota/internal/jsonduration"
)

// Provider personas the simulator can play.
const (
	ProviderOpenAI    = "openai"
	ProviderAnthropic = "anthropic"
	ProviderGemini    = "gemini"
	ProviderDeepSeek  = "deepseek"
)

var providers = []string{ProviderOpenAI, ProviderAnthropic, ProviderGemini, ProviderDeepSeek}

// DefaultContextWindow is the window of a model that no Model entry names.
const DefaultContextWindow = 128_000

// DefaultOutputTokens is the generated length when Latency.OutputTokens is zero.
const DefaultOutputTokens = 16

// maxConfigBytes bounds ParseConfig and the faults admin body: a simulator config for
// even hundreds of accounts is a few hundred kilobytes.
const maxConfigBytes = 4 << 20

// Config is the whole simulator: the accounts it serves and the seed of its randomness.
type Config struct {
	// Seed feeds all randomness (fault decisions, generated text, output lengths,
	// ids). Each request draws from a generator seeded by Seed, the account's index
	// and the account's request sequence number, so the same seed and the same
	// arrival order reproduce the same run byte for byte.
	Seed int64 `json:"seed"`
	// Accounts are the API keys the simulator accepts, each playing one provider.
	Accounts []Account `json:"accounts"`
	// Now replaces the wall clock for bucket refill, daily windows, outage windows and
	// timestamps in bodies, so tests can move time without sleeping. Latency and
	// keep-alive pacing always use real time. Nil means time.Now.
	Now func() time.Time `json:"-"`
}

// Account is one API key at one provider.
type Account struct {
	// Key selects the account; it is sent the way the persona expects
	// (Authorization: Bearer, x-api-key, x-goog-api-key or ?key=).
	Key string `json:"key"`
	// Provider is the persona: openai, anthropic, gemini or deepseek.
	Provider string `json:"provider"`
	// Limits apply to every model pool of the account unless a Model overrides them.
	// Each pool has buckets of its own, as at the providers: a burst on one model
	// never blocks another.
	Limits Limits `json:"limits"`
	// Models are optional pools; a model no entry names gets a pool of its own with
	// Limits and DefaultContextWindow.
	Models  []Model `json:"models,omitempty"`
	Latency Latency `json:"latency"`
	Faults  Faults  `json:"faults"`
}

// Limits of one pool. Zero means not limited.
type Limits struct {
	RequestsPerMinute     int64 `json:"requestsPerMinute,omitempty"`
	TokensPerMinute       int64 `json:"tokensPerMinute,omitempty"`
	InputTokensPerMinute  int64 `json:"inputTokensPerMinute,omitempty"`
	OutputTokensPerMinute int64 `json:"outputTokensPerMinute,omitempty"`
	MaxConcurrency        int64 `json:"maxConcurrency,omitempty"`
	RequestsPerDay        int64 `json:"requestsPerDay,omitempty"`
	TokensPerDay          int64 `json:"tokensPerDay,omitempty"`
}

// Model is a pool: one model or a family sharing one set of buckets.
type Model struct {
	// Names are the model names of the pool; the first names the pool in Stats.
	Names []string `json:"names"`
	// Limits, when set, replace the account's Limits field by field (a zero field
	// keeps the account's value).
	Limits *Limits `json:"limits,omitempty"`
	// ContextWindow in tokens; 0 means DefaultContextWindow.
	ContextWindow int64 `json:"contextWindow,omitempty"`
}

// Latency shapes how a response is produced.
type Latency struct {
	// TimeToFirstToken passes before the response headers and the first stream chunk.
	TimeToFirstToken Duration `json:"timeToFirstToken,omitempty"`
	// TokensPerSecond paces the output; 0 produces it at once.
	TokensPerSecond float64 `json:"tokensPerSecond,omitempty"`
	// OutputTokens is the generated length when the request's max tokens allows it;
	// 0 means DefaultOutputTokens.
	OutputTokens int64 `json:"outputTokens,omitempty"`
	// OutputJitter varies the generated length uniformly by up to this fraction of
	// OutputTokens either way (0..1), drawn from the request's seeded generator.
	OutputJitter float64 `json:"outputJitter,omitempty"`
}

// Faults are injected failures. Status faults and outages refuse a request before it
// touches any bucket; resets, malformed bodies and mid-stream errors happen to
// admitted requests, which are charged for what was generated.
type Faults struct {
	// ErrorRates maps a fault to its probability per request. Keys are status codes
	// "429", "500", "502", "503", "504", "529", or "quota" for the persona's
	// billing-exhausted error (OpenAI 429 insufficient_quota, DeepSeek 402, Anthropic
	// 400 credit balance, Gemini 429 quota). Probabilities add up to at most 1.
	ErrorRates map[string]float64 `json:"errorRates,omitempty"`
	// Outages are windows, relative to the server's start (or to SetFaults), in
	// which every request gets 503 (529 overloaded_error for Anthropic).
	Outages []Outage `json:"outages,omitempty"`
	// ResetRate is the probability that an admitted request's connection is reset
	// before any byte of the response.
	ResetRate float64 `json:"resetRate,omitempty"`
	// MalformedRate is the probability of a 200 whose body is truncated JSON (for a
	// stream: a chunk cut in half, then the end of the stream).
	MalformedRate float64 `json:"malformedRate,omitempty"`
	// MidStreamErrorRate is the probability that a stream ends with the persona's
	// error event after some chunks.
	MidStreamErrorRate float64 `json:"midStreamErrorRate,omitempty"`
	// KeepAlive, DeepSeek style, sends blank lines (non-streaming) or ": keep-alive"
	// SSE comments (streaming) for this long before the answer.
	KeepAlive Duration `json:"keepAlive,omitempty"`
}

// Outage is a window [Start, End).
type Outage struct {
	Start Duration `json:"start"`
	End   Duration `json:"end"`
}

// FaultQuota is the Faults.ErrorRates key of the persona's billing-exhausted error;
// the other keys are status codes.
const FaultQuota = "quota"

var faultKeys = []string{"429", "500", "502", "503", "504", "529", FaultQuota}

// Duration is a time.Duration written in JSON as a Go duration string ("1m30s").
type Duration = jsonduration.Duration

// ParseConfig decodes and validates a JSON config. Unknown fields are errors, so a
// typo in a hand-written file never silently means "no limit".
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if err := decodeStrict(data, &c); err != nil {
		return Config{}, fmt.Errorf("decode simulator config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ParseFaults decodes and validates a Faults document (the body of PUT /sim/faults).
func ParseFaults(data []byte) (Faults, error) {
	var f Faults
	if err := decodeStrict(data, &f); err != nil {
		return Faults{}, fmt.Errorf("decode faults: %w", err)
	}
	v := &validator{what: "faults"}
	v.faults("faults", &f)
	if err := v.err(); err != nil {
		return Faults{}, err
	}
	return f, nil
}

func decodeStrict(data []byte, into any) error {
	if len(data) > maxConfigBytes {
		return fmt.Errorf("document is %d bytes, more than the %d allowed", len(data), maxConfigBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}

// Validate reports every problem at once, each with its field path.
func (c *Config) Validate() error {
	v := &validator{}
	if len(c.Accounts) == 0 {
		v.addf("accounts", "must list at least one account")
	}
	keys := map[string]int{}
	for i := range c.Accounts {
		a := &c.Accounts[i]
		path := fmt.Sprintf("accounts[%d]", i)
		if a.Key == "" {
			v.addf(path+".key", "must not be empty")
		} else if j, dup := keys[a.Key]; dup {
			// Never print the key itself: configs end up in CI logs.
			v.addf(path+".key", "is the same key as accounts[%d]", j)
		} else {
			keys[a.Key] = i
		}
		if strings.ContainsAny(a.Key, " \t\r\n") {
			v.addf(path+".key", "must not contain whitespace (it could not be sent in a header)")
		}
		if !slices.Contains(providers, a.Provider) {
			v.addf(path+".provider", "is %q, want one of %s", clip(a.Provider, 40), strings.Join(providers, ", "))
		}
		v.limits(path+".limits", &a.Limits)
		names := map[string]bool{}
		for j := range a.Models {
			m := &a.Models[j]
			mp := fmt.Sprintf("%s.models[%d]", path, j)
			if len(m.Names) == 0 {
				v.addf(mp+".names", "must list at least one model name")
			}
			for k, n := range m.Names {
				np := fmt.Sprintf("%s.names[%d]", mp, k)
				switch {
				case n == "":
					v.addf(np, "must not be empty")
				case names[n]:
					v.addf(np, "model %q is in more than one pool", clip(n, 80))
				}
				names[n] = true
			}
			if m.Limits != nil {
				v.limits(mp+".limits", m.Limits)
			}
			if m.ContextWindow < 0 {
				v.addf(mp+".contextWindow", "must not be negative")
			}
		}
		v.latency(path+".latency", &a.Latency)
		v.faults(path+".faults", &a.Faults)
	}
	return v.err()
}

func (v *validator) limits(path string, l *Limits) {
	for _, f := range []struct {
		name string
		val  int64
	}{
		{"requestsPerMinute", l.RequestsPerMinute},
		{"tokensPerMinute", l.TokensPerMinute},
		{"inputTokensPerMinute", l.InputTokensPerMinute},
		{"outputTokensPerMinute", l.OutputTokensPerMinute},
		{"maxConcurrency", l.MaxConcurrency},
		{"requestsPerDay", l.RequestsPerDay},
		{"tokensPerDay", l.TokensPerDay},
	} {
		if f.val < 0 {
			v.addf(path+"."+f.name, "is %d; a limit must be positive, or 0 for none", f.val)
		}
	}
}

func (v *validator) latency(path string, l *Latency) {
	if l.TimeToFirstToken < 0 {
		v.addf(path+".timeToFirstToken", "must not be negative")
	}
	if !(l.TokensPerSecond >= 0) || math.IsInf(l.TokensPerSecond, 0) {
		v.addf(path+".tokensPerSecond", "is %v, want a finite number >= 0", l.TokensPerSecond)
	}
	if l.OutputTokens < 0 {
		v.addf(path+".outputTokens", "must not be negative")
	}
	if !(l.OutputJitter >= 0 && l.OutputJitter <= 1) {
		v.addf(path+".outputJitter", "is %v, want 0..1", l.OutputJitter)
	}
}

func (v *validator) faults(path string, f *Faults) {
	keys := make([]string, 0, len(f.ErrorRates))
	for k := range f.ErrorRates {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	sum := 0.0
	for _, k := range keys {
		p := f.ErrorRates[k]
		if !slices.Contains(faultKeys, k) {
			v.addf(path+".errorRates", "has key %q, want one of %s", clip(k, 20), strings.Join(faultKeys, ", "))
		}
		v.probability(fmt.Sprintf("%s.errorRates[%q]", path, clip(k, 20)), p)
		sum += p
	}
	if sum > 1+1e-9 {
		v.addf(path+".errorRates", "probabilities add up to %.4g, more than 1", sum)
	}
	for i, o := range f.Outages {
		op := fmt.Sprintf("%s.outages[%d]", path, i)
		if o.Start < 0 {
			v.addf(op+".start", "must not be negative")
		}
		if o.End <= o.Start {
			v.addf(op+".end", "(%s) must be after start (%s)", o.End.D(), o.Start.D())
		}
	}
	v.probability(path+".resetRate", f.ResetRate)
	v.probability(path+".malformedRate", f.MalformedRate)
	v.probability(path+".midStreamErrorRate", f.MidStreamErrorRate)
	if f.ResetRate+f.MalformedRate > 1+1e-9 {
		v.addf(path, "resetRate and malformedRate add up to more than 1")
	}
	if f.KeepAlive < 0 {
		v.addf(path+".keepAlive", "must not be negative")
	}
}

func (v *validator) probability(path string, p float64) {
	if !(p >= 0 && p <= 1) {
		v.addf(path, "is %v, want a probability 0..1", p)
	}
}

type validator struct {
	what     string // what is invalid; "" means the simulator config
	problems []string
}

func (v *validator) addf(path, format string, args ...any) {
	v.problems = append(v.problems, path+": "+fmt.Sprintf(format, args...))
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	what := v.what
	if what == "" {
		what = "simulator config"
	}
	return errors.New("invalid " + what + ": " + strings.Join(v.problems, "; "))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// overlay resolves a Model's limits over the account's.
func overlay(base Limits, over *Limits) Limits {
	if over == nil {
		return base
	}
	pick := func(b, o int64) int64 {
		if o != 0 {
			return o
		}
		return b
	}
	return Limits{
		RequestsPerMinute:     pick(base.RequestsPerMinute, over.RequestsPerMinute),
		TokensPerMinute:       pick(base.TokensPerMinute, over.TokensPerMinute),
		InputTokensPerMinute:  pick(base.InputTokensPerMinute, over.InputTokensPerMinute),
		OutputTokensPerMinute: pick(base.OutputTokensPerMinute, over.OutputTokensPerMinute),
		MaxConcurrency:        pick(base.MaxConcurrency, over.MaxConcurrency),
		RequestsPerDay:        pick(base.RequestsPerDay, over.RequestsPerDay),
		TokensPerDay:          pick(base.TokensPerDay, over.TokensPerDay),
	}
}

// DefaultConfig is what providersim serves without --config: one account per persona
// with limits from the published tier tables (docs/providers.md), no added latency
// and no faults.
//
//   - sk-sim-openai: OpenAI Tier 3, 10,000 RPM and 10M TPM per model; gpt-5.5 has a
//     256K window.
//   - sk-sim-anthropic: one pool per family. Opus 4.7 1,000 RPM, Sonnet 4 4,000 RPM,
//     Haiku 4 10,000 RPM; the table's TPM is the family's input-tokens-per-minute
//     limit, and output tokens per minute are a fifth of it, the ratio of Anthropic's
//     published tiers; max concurrency 50 / 200 / 500. claude-opus-4-7 has a 1M
//     window. Unlisted models get Sonnet's limits.
//   - sk-sim-gemini: pay-as-you-go, gemini-2.5-pro 2,000 RPM / 20M TPM with a 1M
//     window; gemini-2.5-flash 10,000 RPM / 100M TPM; unlisted models get Flash's.
//   - sk-sim-deepseek: Standard, 2,000 RPM, 2M TPM, 5B tokens per day per model;
//     deepseek-chat has a 1M window.
func DefaultConfig() Config {
	return Config{
		Seed: 1,
		Accounts: []Account{
			{
				Key:      "sk-sim-openai",
				Provider: ProviderOpenAI,
				Limits:   Limits{RequestsPerMinute: 10_000, TokensPerMinute: 10_000_000},
				Models:   []Model{{Names: []string{"gpt-5.5"}, ContextWindow: 256_000}},
			},
			{
				Key:      "sk-sim-anthropic",
				Provider: ProviderAnthropic,
				Limits:   Limits{RequestsPerMinute: 4_000, InputTokensPerMinute: 2_000_000, OutputTokensPerMinute: 400_000, MaxConcurrency: 200},
				Models: []Model{
					{Names: []string{"claude-opus-4-7"}, ContextWindow: 1_000_000,
						Limits: &Limits{RequestsPerMinute: 1_000, InputTokensPerMinute: 400_000, OutputTokensPerMinute: 80_000, MaxConcurrency: 50}},
					{Names: []string{"claude-sonnet-4"}},
					{Names: []string{"claude-haiku-4"},
						Limits: &Limits{RequestsPerMinute: 10_000, InputTokensPerMinute: 5_000_000, OutputTokensPerMinute: 1_000_000, MaxConcurrency: 500}},
				},
			},
			{
				Key:      "sk-sim-gemini",
				Provider: ProviderGemini,
				Limits:   Limits{RequestsPerMinute: 10_000, TokensPerMinute: 100_000_000},
				Models: []Model{
					{Names: []string{"gemini-2.5-pro"}, ContextWindow: 1_000_000,
						Limits: &Limits{RequestsPerMinute: 2_000, TokensPerMinute: 20_000_000}},
					{Names: []string{"gemini-2.5-flash"}},
				},
			},
			{
				Key:      "sk-sim-deepseek",
				Provider: ProviderDeepSeek,
				Limits:   Limits{RequestsPerMinute: 2_000, TokensPerMinute: 2_000_000, TokensPerDay: 5_000_000_000},
				Models:   []Model{{Names: []string{"deepseek-chat"}, ContextWindow: 1_000_000}},
			},
		},
	}
}
