package limiterconfig

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func validConfig() *Config {
	return &Config{
		SchemaVersion: SchemaVersion,
		Source:        Source{Kind: "FallbackChain", Namespace: "ns", Name: "chat", Generation: 3},
		Providers: []Provider{{
			Name: "openai-tier3", Type: ProviderOpenAI, Endpoint: "https://api.openai.com",
			Keys:   []Key{{ID: "k/api-key", File: "/var/run/aiquota/keys/k/api-key"}},
			Limits: Limits{RequestsPerMinute: 10_000, TokensPerMinute: 10_000_000},
			Models: []ModelPool{
				{Names: []string{"gpt-5.5"}, ContextWindow: 256_000, Tokenizer: TokenizerO200kBase},
				{Names: []string{"gpt-4.1-mini", "gpt-4.1-mini-2025"}, Limits: &Limits{RequestsPerMinute: 30_000}, MaxOutputTokens: 32_768},
			},
			SafetyMarginPercent: 2, LearnFromHeaders: true, Policy: "standard",
		}},
		Chain: &Chain{
			Entries:         []ChainEntry{{Provider: "openai-tier3", Model: "gpt-5.5", Policy: "standard"}, {Provider: "openai-tier3", Model: "gpt-4.1-mini"}},
			FallbackOn:      []string{FailureRateLimited, FailureServerError},
			ModelAliases:    []string{"chat-default"},
			DefaultPriority: 5,
		},
		Policies: []Policy{func() Policy { p := DefaultPolicy(); p.Name = "standard"; return p }()},
		Queue:    &Queue{MaxWait: Duration(30 * time.Second), MaxDepth: 1000},
		Control:  &Control{URL: "https://aiquota-manager.aiquota-system.svc:9444", TokenFile: "/var/run/aiquota/token/token", ReportInterval: Duration(5 * time.Second)},
	}
}

// roundTrip marshals c, parses it back, fails t unless that gives c again, and
// returns the document and what it parsed to.
func roundTrip(t *testing.T, c *Config) ([]byte, *Config) {
	t.Helper()
	b, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatalf("re-parse of a marshalled valid config: %v\n%s", err, b)
	}
	if d := cmp.Diff(c, got); d != "" {
		t.Fatalf("round trip changed the config (-want +got):\n%s", d)
	}
	return b, got
}

func TestRoundTrip(t *testing.T) {
	b, got := roundTrip(t, validConfig())
	again, err := Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, again) {
		t.Errorf("Marshal is not deterministic:\n%s\n---\n%s", b, again)
	}
	if !bytes.HasSuffix(b, []byte("}\n")) {
		t.Errorf("rendered document should end with a newline")
	}
	if !strings.Contains(string(b), `"recoveryTimeout": "1m0s"`) {
		t.Errorf("durations should render as Go duration strings:\n%s", b)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{"wrong schema", func(c *Config) { c.SchemaVersion = "v0" }, []string{`schemaVersion: is "v0"`}},
		{"no providers", func(c *Config) { c.Providers = nil; c.Chain = nil }, []string{"providers: must list at least one provider"}},
		{"bad type", func(c *Config) { c.Providers[0].Type = "openia" }, []string{`providers[0].type: is "openia"`}},
		{"relative endpoint", func(c *Config) { c.Providers[0].Endpoint = "api.openai.com" }, []string{"providers[0].endpoint", "absolute http or https URL"}},
		{"no keys", func(c *Config) { c.Providers[0].Keys = nil }, []string{"providers[0].keys: must list at least one key file"}},
		{"duplicate key", func(c *Config) { c.Providers[0].Keys = append(c.Providers[0].Keys, c.Providers[0].Keys[0]) }, []string{`providers[0].keys[1].id: "k/api-key" is listed twice`}},
		{"empty key file", func(c *Config) { c.Providers[0].Keys[0].File = "" }, []string{"providers[0].keys[0].file: must not be empty"}},
		{"negative limit", func(c *Config) { c.Providers[0].Limits.TokensPerDay = -1 }, []string{"providers[0].limits.tokensPerDay: is -1"}},
		{"negative pool limit", func(c *Config) { c.Providers[0].Models[1].Limits.MaxConcurrency = -2 }, []string{"providers[0].models[1].limits.maxConcurrency: is -2"}},
		{"margin", func(c *Config) { c.Providers[0].SafetyMarginPercent = 60 }, []string{"providers[0].safetyMarginPercent: is 60, want 0..50"}},
		{"model in two pools", func(c *Config) { c.Providers[0].Models[1].Names[1] = "gpt-5.5" }, []string{`providers[0].models[1].names[1]: model "gpt-5.5" is in more than one pool`}},
		{"empty pool", func(c *Config) { c.Providers[0].Models[0].Names = nil }, []string{"providers[0].models[0].names: must list at least one model name"}},
		{"tokenizer", func(c *Config) { c.Providers[0].Models[0].Tokenizer = "p50k" }, []string{`providers[0].models[0].tokenizer: is "p50k"`}},
		{"unknown provider policy", func(c *Config) { c.Providers[0].Policy = "nope" }, []string{`providers[0].policy: names policy "nope"`}},
		{"duplicate provider", func(c *Config) { c.Providers = append(c.Providers, c.Providers[0]) }, []string{`providers[1].name: "openai-tier3" is listed twice`}},
		{"unlisted models", func(c *Config) { c.Providers[0].UnlistedModels = "share" }, []string{`providers[0].unlistedModels: is "share", want shareAccountLimits or reject`}},
		{"model named like the unlisted pool", func(c *Config) { c.Providers[0].Models[0].Names[0] = UnlistedPool }, []string{`providers[0].models[0].names[0]: "(unlisted)" names the pool of unlisted models`}},
		{"chain entry its provider rejects", func(c *Config) {
			c.Providers[0].UnlistedModels = UnlistedReject
			c.Chain.Entries[0].Model = "gpt-9"
		}, []string{`chain.entries[0].model: "gpt-9" is not listed by provider "openai-tier3", which rejects unlisted models`}},
		{"chain to unknown provider", func(c *Config) { c.Chain.Entries[0].Provider = "x" }, []string{`chain.entries[0].provider: names provider "x"`}},
		{"chain repeats", func(c *Config) { c.Chain.Entries[1] = c.Chain.Entries[0] }, []string{"chain.entries[1]: repeats openai-tier3/gpt-5.5"}},
		{"chain empty", func(c *Config) { c.Chain.Entries = nil }, []string{"chain.entries: must list at least one entry"}},
		{"chain bad failure kind", func(c *Config) { c.Chain.FallbackOn = []string{"sometimes"} }, []string{`chain.fallbackOn[0]: is "sometimes"`}},
		{"chain priority", func(c *Config) { c.Chain.DefaultPriority = 12 }, []string{"chain.defaultPriority: is 12, want 1..9"}},
		{"policy threshold", func(c *Config) { c.Policies[0].FailureThreshold = 0 }, []string{"policies[0].failureThreshold: is 0, want at least 1"}},
		{"policy delays", func(c *Config) { c.Policies[0].Retry.MaxDelay = Duration(time.Millisecond) }, []string{"policies[0].retry.maxDelay: (1ms) must not be below baseDelay (1s)"}},
		{"policy jitter", func(c *Config) { c.Policies[0].Retry.JitterPercent = 101 }, []string{"policies[0].retry.jitterPercent: is 101"}},
		{"policy unnamed", func(c *Config) { c.Policies[0].Name = "" }, []string{"policies[0].name: must not be empty"}},
		{"queue", func(c *Config) { c.Queue.MaxWait = -1 }, []string{"queue.maxWait: must not be negative"}},
		{"control http", func(c *Config) { c.Control.URL = "http://manager:9444" }, []string{"control.url", "absolute https URL"}},
		{"control interval", func(c *Config) { c.Control.ReportInterval = 0 }, []string{"control.reportInterval: must be positive"}},
		{"two problems at once", func(c *Config) { c.Providers[0].Keys = nil; c.Queue.MaxDepth = -1 }, []string{"providers[0].keys", "queue.maxDepth"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig()
			c.mutate(cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("Validate accepted an invalid config")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseRefusesMalformedDocuments(t *testing.T) {
	valid, err := Marshal(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		doc  string
		want string
	}{
		{"empty", "", "decode limiter config: EOF"},
		{"not json", "schemaVersion: v1", "decode limiter config"},
		{"unknown field", strings.Replace(string(valid), `"queue"`, `"qeueu"`, 1), `unknown field "qeueu"`},
		{"trailing data", string(valid) + "{}", "trailing data"},
		{"duration as number", strings.Replace(string(valid), `"maxWait": "30s"`, `"maxWait": 30`, 1), `duration must be a string such as "1s"`},
		{"bad duration", strings.Replace(string(valid), `"maxWait": "30s"`, `"maxWait": "30 seconds"`, 1), `duration "30 seconds"`},
		{"limit as string", strings.Replace(string(valid), `"requestsPerMinute": 10000`, `"requestsPerMinute": "10000"`, 1), "cannot unmarshal string"},
		{"too large", `{"schemaVersion":"` + strings.Repeat("x", MaxDocumentBytes) + `"}`, "more than the 1048576 allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Parse error = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestPoolFor(t *testing.T) {
	p := validConfig().Providers[0]
	cases := []struct {
		model string
		want  Pool
	}{
		// The pool's window wins over the catalogue's (1,050,000).
		{"gpt-5.5", Pool{Name: "gpt-5.5", Limits: p.Limits, ContextWindow: 256_000, MaxOutputTokens: DefaultMaxOutputTokens, Tokenizer: TokenizerO200kBase}},
		// The pool sets no window: the catalogue's for the model requested.
		{"gpt-4.1-mini", Pool{Name: "gpt-4.1-mini", Limits: Limits{RequestsPerMinute: 30_000, TokensPerMinute: 10_000_000}, ContextWindow: 1_047_576, MaxOutputTokens: 32_768}},
		// A name the catalogue does not know has no window, even in a pool with one that does.
		{"gpt-4.1-mini-2025", Pool{Name: "gpt-4.1-mini", Limits: Limits{RequestsPerMinute: 30_000, TokensPerMinute: 10_000_000}, MaxOutputTokens: 32_768}},
		// An unlisted model the catalogue knows: its window, 1M.
		{"claude-opus-4-7", Pool{Name: UnlistedPool, Limits: p.Limits, ContextWindow: 1_000_000, MaxOutputTokens: DefaultMaxOutputTokens}},
		// An unlisted model nobody knows: no window, no guess.
		{"unlisted", Pool{Name: UnlistedPool, Limits: p.Limits, MaxOutputTokens: DefaultMaxOutputTokens}},
	}
	for _, c := range cases {
		if d := cmp.Diff(c.want, p.PoolFor(c.model)); d != "" {
			t.Errorf("PoolFor(%q) (-want +got):\n%s", c.model, d)
		}
	}
}

func TestPolicyNamedFallsBackToDefault(t *testing.T) {
	c := validConfig()
	c.Policies[0].FailureThreshold = 9
	if got := c.PolicyNamed("standard").FailureThreshold; got != 9 {
		t.Errorf("named policy threshold = %d, want 9", got)
	}
	if d := cmp.Diff(DefaultPolicy(), c.PolicyNamed("")); d != "" {
		t.Errorf("unnamed policy should be the default (-want +got):\n%s", d)
	}
}

// FuzzParse: no input panics, and whatever Parse accepts is valid and survives a
// Marshal/Parse round trip unchanged.
func FuzzParse(f *testing.F) {
	valid, err := Marshal(validConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"schemaVersion":"aiquota.dev/limiter-config/v1","providers":[]}`))
	f.Add([]byte(`{"queue":{"maxWait":"-5s"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a document Validate refuses: %v", err)
		}
		b, _ := roundTrip(t, c)
		var anyJSON map[string]any
		if err := json.Unmarshal(b, &anyJSON); err != nil {
			t.Fatalf("Marshal wrote invalid JSON: %v", err)
		}
	})
}

func TestChainWaitBudget(t *testing.T) {
	custom := Chain{WaitInteractive: Duration(time.Second), WaitBatch: Duration(9 * time.Second)}
	for _, tc := range []struct {
		chain    Chain
		priority int
		want     time.Duration
	}{
		{Chain{}, 1, DefaultWaitInteractive.D()},
		{Chain{}, 9, DefaultWaitBatch.D()},
		{custom, 1, time.Second},
		{custom, 5, 5 * time.Second},
		{custom, 9, 9 * time.Second},
		{custom, 0, time.Second}, // out of range: the nearest priority
		{custom, 12, 9 * time.Second},
	} {
		if got := tc.chain.WaitBudget(tc.priority); got != tc.want {
			t.Errorf("%+v priority %d: %v, want %v", tc.chain, tc.priority, got, tc.want)
		}
	}
}
