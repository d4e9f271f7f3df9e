package render_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/render"
	"github.com/aiquota/aiquota/internal/testkit"
)

const testNamespace = "team-a"

// samples reads config/samples as the API types, without server-side defaulting: the
// renderer must produce the documented defaults by itself.
type samples struct {
	chains   []quotav1alpha1.FallbackChain
	quotas   []quotav1alpha1.ProviderQuota
	policies []quotav1alpha1.CircuitPolicy
}

func loadSamples(t *testing.T) samples {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "quota_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	var s samples
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var obj interface{ SetNamespace(string) }
		switch meta.Kind {
		case "FallbackChain":
			s.chains = append(s.chains, quotav1alpha1.FallbackChain{})
			obj = &s.chains[len(s.chains)-1]
		case "ProviderQuota":
			s.quotas = append(s.quotas, quotav1alpha1.ProviderQuota{})
			obj = &s.quotas[len(s.quotas)-1]
		case "CircuitPolicy":
			s.policies = append(s.policies, quotav1alpha1.CircuitPolicy{})
			obj = &s.policies[len(s.policies)-1]
		default:
			t.Fatalf("%s: unexpected kind %q", f, meta.Kind)
		}
		if err := yaml.UnmarshalStrict(raw, obj); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		obj.SetNamespace(testNamespace)
	}
	if len(s.chains) == 0 || len(s.quotas) == 0 || len(s.policies) == 0 {
		t.Fatalf("samples lack a kind: %d chains, %d quotas, %d policies", len(s.chains), len(s.quotas), len(s.policies))
	}
	return s
}

func encode(t *testing.T, cfg *limiterconfig.Config, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	data, hash, err := render.Encode(cfg)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	if hash != render.Hash(data) || len(hash) != 64 {
		t.Fatalf("hash %q does not match the bytes", hash)
	}
	// What the manager writes, the sidecar must load.
	if _, err := limiterconfig.Parse(data); err != nil {
		t.Fatalf("rendered document does not parse: %v\n%s", err, data)
	}
	return data
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	testkit.Golden(t, filepath.Join("testdata", name+".golden"), got)
}

func TestSamplesMatchGolden(t *testing.T) {
	s := loadSamples(t)
	for _, c := range s.chains {
		t.Run("FallbackChain/"+c.Name, func(t *testing.T) {
			cfg, err := render.Chain(&c, s.quotas, s.policies, render.Options{})
			golden(t, "fallbackchain-"+c.Name, encode(t, cfg, err))
		})
		t.Run("FallbackChain/"+c.Name+"/control", func(t *testing.T) {
			opts := render.Options{Control: &render.Control{URL: "https://aiquota-control.aiquota-system.svc:8443/v1/report", WithCA: true}}
			cfg, err := render.Chain(&c, s.quotas, s.policies, opts)
			golden(t, "fallbackchain-"+c.Name+"-control", encode(t, cfg, err))
		})
	}
	for _, q := range s.quotas {
		t.Run("ProviderQuota/"+q.Name, func(t *testing.T) {
			cfg, err := render.Quota(&q, s.policies, render.Options{})
			golden(t, "providerquota-"+q.Name, encode(t, cfg, err))
		})
	}
}

// TestDeterministic shuffles everything whose order carries no meaning: the inputs and
// the set-typed fields. The bytes must not change.
func TestDeterministic(t *testing.T) {
	s := loadSamples(t)
	chain := s.chains[0]
	chain.Spec.ModelAliases = []string{"chat-default", "chat", "assistant"}
	quotas := slices.Clone(s.quotas)
	for i := range quotas {
		quotas[i] = *quotas[i].DeepCopy()
		for j := range quotas[i].Spec.Models {
			quotas[i].Spec.Models[j].AdditionalNames = append(quotas[i].Spec.Models[j].AdditionalNames, "x-"+quotas[i].Spec.Models[j].Name, "a-"+quotas[i].Spec.Models[j].Name)
		}
	}
	policies := append(slices.Clone(s.policies), quotav1alpha1.CircuitPolicy{ObjectMeta: metav1.ObjectMeta{Name: "unused"}})
	opts := render.Options{Control: &render.Control{URL: "https://manager.example:8443/report", ReportInterval: 7 * time.Second}}

	cfg, err := render.Chain(&chain, quotas, policies, opts)
	want := encode(t, cfg, err)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		c := *chain.DeepCopy()
		qs := deepCopies(quotas)
		ps := slices.Clone(policies)
		rng.Shuffle(len(qs), func(a, b int) { qs[a], qs[b] = qs[b], qs[a] })
		rng.Shuffle(len(ps), func(a, b int) { ps[a], ps[b] = ps[b], ps[a] })
		shuffle(rng, c.Spec.ModelAliases)
		shuffle(rng, c.Spec.FallbackOn)
		for j := range qs {
			for k := range qs[j].Spec.Models {
				shuffle(rng, qs[j].Spec.Models[k].AdditionalNames)
			}
		}
		for j := range ps {
			ps[j] = *ps[j].DeepCopy()
			shuffle(rng, ps[j].Spec.FailureOn)
		}
		cfg, err := render.Chain(&c, qs, ps, opts)
		got := encode(t, cfg, err)
		if !bytes.Equal(got, want) {
			t.Fatalf("shuffle %d changed the bytes:\n%s", i, cmp.Diff(string(want), string(got)))
		}
	}
}

func deepCopies(in []quotav1alpha1.ProviderQuota) []quotav1alpha1.ProviderQuota {
	out := make([]quotav1alpha1.ProviderQuota, len(in))
	for i := range in {
		out[i] = *in[i].DeepCopy()
	}
	return out
}

func shuffle[T any](rng *rand.Rand, s []T) {
	rng.Shuffle(len(s), func(a, b int) { s[a], s[b] = s[b], s[a] })
}

func quota(name string, mutate func(*quotav1alpha1.ProviderQuotaSpec)) quotav1alpha1.ProviderQuota {
	q := quotav1alpha1.ProviderQuota{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace},
		Spec: quotav1alpha1.ProviderQuotaSpec{
			Provider:    quotav1alpha1.ProviderOpenAI,
			Credentials: []quotav1alpha1.SecretKeyRef{{Name: name + "-key"}},
		},
	}
	if mutate != nil {
		mutate(&q.Spec)
	}
	return q
}

func chainOf(entries ...quotav1alpha1.ChainEntry) quotav1alpha1.FallbackChain {
	return quotav1alpha1.FallbackChain{
		ObjectMeta: metav1.ObjectMeta{Name: "chain", Namespace: testNamespace, Generation: 3},
		Spec:       quotav1alpha1.FallbackChainSpec{Entries: entries},
	}
}

func entry(quota, model string) quotav1alpha1.ChainEntry {
	return quotav1alpha1.ChainEntry{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: quota}, Model: model}
}

// TestQuotaDefaults renders a quota that skipped server-side defaulting.
func TestQuotaDefaults(t *testing.T) {
	q := quota("bare", nil)
	q.Generation = 4
	cfg, err := render.Quota(&q, nil, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion,
		Source:        limiterconfig.Source{Kind: "ProviderQuota", Namespace: testNamespace, Name: "bare", Generation: 4},
		Providers: []limiterconfig.Provider{{
			Name: "bare", Type: "openai", Endpoint: "https://api.openai.com",
			Keys:                []limiterconfig.Key{{ID: "bare-key/api-key", File: "/var/run/aiquota/keys/bare-key/api-key"}},
			UnlistedModels:      limiterconfig.UnlistedShareAccountLimits,
			SafetyMarginPercent: 2, LearnFromHeaders: true,
		}},
		Queue: ptr.To(limiterconfig.DefaultQueue()),
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("-want +got:\n%s", diff)
	}
}

func TestPolicyDefaults(t *testing.T) {
	second := &metav1.Duration{Duration: time.Second}
	tests := []struct {
		name string
		spec quotav1alpha1.CircuitPolicySpec
		want func(*limiterconfig.Policy)
	}{
		{name: "empty spec is the documented default", want: func(*limiterconfig.Policy) {}},
		{
			name: "set fields win, the rest default",
			spec: quotav1alpha1.CircuitPolicySpec{
				FailureThreshold: 2,
				FailureOn:        []quotav1alpha1.BreakerFailureKind{"timeout", "rateLimited"},
				Retry:            quotav1alpha1.RetryPolicy{MaxRetries: ptr.To[int32](0), RespectRetryAfter: ptr.To(false), MaxTotal: second},
			},
			want: func(p *limiterconfig.Policy) {
				p.FailureThreshold = 2
				p.FailureOn = []string{"rateLimited", "timeout"}
				p.Retry.MaxRetries = 0
				p.Retry.RespectRetryAfter = false
				p.Retry.MaxTotal = limiterconfig.Duration(time.Second)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := &quotav1alpha1.CircuitPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: tt.spec}
			want := limiterconfig.DefaultPolicy()
			want.Name = "p"
			slices.Sort(want.FailureOn) // a set: rendered sorted
			tt.want(&want)
			if diff := cmp.Diff(want, render.Policy(cp)); diff != "" {
				t.Errorf("-want +got:\n%s", diff)
			}
			if err := render.CheckPolicy(cp); err != nil {
				t.Errorf("CheckPolicy: %v", err)
			}
		})
	}
}

func TestCheckPolicyRejects(t *testing.T) {
	tests := []struct {
		name string
		spec quotav1alpha1.CircuitPolicySpec
		want string
	}{
		{
			name: "baseDelay above the defaulted maxDelay",
			spec: quotav1alpha1.CircuitPolicySpec{Retry: quotav1alpha1.RetryPolicy{BaseDelay: &metav1.Duration{Duration: 2 * time.Minute}}},
			want: "spec.retry.maxDelay",
		},
		{name: "negative threshold", spec: quotav1alpha1.CircuitPolicySpec{FailureThreshold: -1}, want: "spec.failureThreshold"},
		{
			name: "unknown failure kind",
			spec: quotav1alpha1.CircuitPolicySpec{FailureOn: []quotav1alpha1.BreakerFailureKind{"sometimes"}},
			want: "spec.failureOn[0]",
		},
		{
			name: "zero recovery timeout",
			spec: quotav1alpha1.CircuitPolicySpec{RecoveryTimeout: &metav1.Duration{}},
			want: "spec.recoveryTimeout",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := render.CheckPolicy(&quotav1alpha1.CircuitPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: tt.spec})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckPolicy = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestChainQueueIsTheTightest(t *testing.T) {
	wait := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	tests := []struct {
		name   string
		queues []quotav1alpha1.QueueSpec
		want   limiterconfig.Queue
	}{
		{name: "all defaults", queues: []quotav1alpha1.QueueSpec{{}, {}}, want: limiterconfig.DefaultQueue()},
		{
			name:   "smallest wait and smallest depth, from different quotas",
			queues: []quotav1alpha1.QueueSpec{{MaxWait: wait(5 * time.Second)}, {MaxDepth: ptr.To[int32](10)}},
			want:   limiterconfig.Queue{MaxWait: limiterconfig.Duration(5 * time.Second), MaxDepth: 10},
		},
		{
			name:   "one quota that never queues makes the chain never queue",
			queues: []quotav1alpha1.QueueSpec{{MaxWait: wait(0), MaxDepth: ptr.To[int32](0)}, {}},
			want:   limiterconfig.Queue{MaxWait: 0, MaxDepth: 0},
		},
		{
			name:   "depth zero alone stays as written",
			queues: []quotav1alpha1.QueueSpec{{MaxDepth: ptr.To[int32](0)}},
			want:   limiterconfig.Queue{MaxWait: limiterconfig.Duration(30 * time.Second), MaxDepth: 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var quotas []quotav1alpha1.ProviderQuota
			var entries []quotav1alpha1.ChainEntry
			for i, q := range tt.queues {
				name := fmt.Sprintf("q%d", i)
				quotas = append(quotas, quota(name, func(s *quotav1alpha1.ProviderQuotaSpec) { s.Queue = q }))
				entries = append(entries, entry(name, "m"))
			}
			c := chainOf(entries...)
			cfg, err := render.Chain(&c, quotas, nil, render.Options{})
			encode(t, cfg, err)
			if cfg.Queue == nil {
				t.Fatal("a chain's rendered config should always carry its queue")
			}
			if diff := cmp.Diff(tt.want, *cfg.Queue); diff != "" {
				t.Errorf("-want +got:\n%s", diff)
			}
		})
	}
}

func TestChainFields(t *testing.T) {
	quotas := []quotav1alpha1.ProviderQuota{
		quota("b", func(s *quotav1alpha1.ProviderQuotaSpec) {
			s.CircuitPolicyRef = &quotav1alpha1.LocalObjectReference{Name: "quota-policy"}
		}),
		quota("a", nil),
	}
	policies := []quotav1alpha1.CircuitPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "quota-policy"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "entry-policy"}, Spec: quotav1alpha1.CircuitPolicySpec{FailureThreshold: 9}},
	}
	withPolicy := entry("a", "m2")
	withPolicy.CircuitPolicyRef = &quotav1alpha1.LocalObjectReference{Name: "entry-policy"}

	t.Run("defaults and order", func(t *testing.T) {
		c := chainOf(entry("b", "m1"), withPolicy, entry("b", "m3"))
		cfg, err := render.Chain(&c, quotas, policies, render.Options{})
		encode(t, cfg, err)
		want := &limiterconfig.Chain{
			Entries: []limiterconfig.ChainEntry{
				{Provider: "b", Model: "m1"}, {Provider: "a", Model: "m2", Policy: "entry-policy"}, {Provider: "b", Model: "m3"},
			},
			FallbackOn:      []string{"circuitOpen", "connectionError", "contextLengthExceeded", "rateLimited", "serverError", "timeout", "unavailable"},
			DefaultPriority: 5,
			WaitInteractive: limiterconfig.DefaultWaitInteractive,
			WaitBatch:       limiterconfig.DefaultWaitBatch,
		}
		if diff := cmp.Diff(want, cfg.Chain); diff != "" {
			t.Errorf("chain -want +got:\n%s", diff)
		}
		var names, policyNames []string
		for _, p := range cfg.Providers {
			names = append(names, p.Name)
		}
		for _, p := range cfg.Policies {
			policyNames = append(policyNames, p.Name)
		}
		if diff := cmp.Diff([]string{"a", "b"}, names); diff != "" {
			t.Errorf("providers are listed once each, by name (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"entry-policy", "quota-policy"}, policyNames); diff != "" {
			t.Errorf("policies named by entries and by their quotas (-want +got):\n%s", diff)
		}
	})
	t.Run("explicit empty fallbackOn means never fall back", func(t *testing.T) {
		c := chainOf(entry("a", "m"))
		c.Spec.FallbackOn = []quotav1alpha1.FailureKind{}
		c.Spec.DefaultPriority = ptr.To[int32](1)
		c.Spec.WaitBudget = quotav1alpha1.WaitBudget{Interactive: &metav1.Duration{Duration: 200 * time.Millisecond}, Batch: &metav1.Duration{Duration: 5 * time.Minute}}
		cfg, err := render.Chain(&c, quotas, policies, render.Options{})
		encode(t, cfg, err)
		if cfg.Chain.FallbackOn != nil || cfg.Chain.DefaultPriority != 1 || cfg.Chain.WaitInteractive.D() != 200*time.Millisecond || cfg.Chain.WaitBatch.D() != 5*time.Minute {
			t.Errorf("fallbackOn %v priority %d wait %v..%v, want none, 1 and 200ms..5m", cfg.Chain.FallbackOn, cfg.Chain.DefaultPriority, cfg.Chain.WaitInteractive.D(), cfg.Chain.WaitBatch.D())
		}
	})
	t.Run("a model the quota does not list draws on the pool of unlisted models", func(t *testing.T) {
		listed := quota("listed", func(s *quotav1alpha1.ProviderQuotaSpec) {
			s.Limits = quotav1alpha1.QuotaLimits{RequestsPerMinute: 100}
			s.Models = []quotav1alpha1.ModelPool{{Name: "known", ContextWindow: 1000}}
		})
		c := chainOf(entry("listed", "unknown-model"))
		cfg, err := render.Chain(&c, []quotav1alpha1.ProviderQuota{listed}, nil, render.Options{})
		encode(t, cfg, err)
		pool := cfg.Providers[0].PoolFor("unknown-model")
		want := limiterconfig.Pool{
			Name: limiterconfig.UnlistedPool, Limits: limiterconfig.Limits{RequestsPerMinute: 100},
			MaxOutputTokens: limiterconfig.DefaultMaxOutputTokens,
		}
		if diff := cmp.Diff(want, pool); diff != "" {
			t.Errorf("-want +got:\n%s", diff)
		}
	})
	t.Run("unlistedModels is rendered as written", func(t *testing.T) {
		q := quota("strict", func(s *quotav1alpha1.ProviderQuotaSpec) {
			s.UnlistedModels = quotav1alpha1.UnlistedModelsReject
			s.Models = []quotav1alpha1.ModelPool{{Name: "known"}}
		})
		c := chainOf(entry("strict", "known"))
		cfg, err := render.Chain(&c, []quotav1alpha1.ProviderQuota{q}, nil, render.Options{})
		encode(t, cfg, err)
		if got := cfg.Providers[0].UnlistedModels; got != limiterconfig.UnlistedReject {
			t.Errorf("unlistedModels = %q, want reject", got)
		}
	})
}

func TestExtremeNumbers(t *testing.T) {
	huge := quotav1alpha1.QuotaLimits{
		RequestsPerMinute: math.MaxInt64, TokensPerMinute: math.MaxInt64, InputTokensPerMinute: math.MaxInt64,
		OutputTokensPerMinute: math.MaxInt64, MaxConcurrency: math.MaxInt64, RequestsPerDay: math.MaxInt64, TokensPerDay: math.MaxInt64,
	}
	q := quota("huge", func(s *quotav1alpha1.ProviderQuotaSpec) {
		s.Limits = huge
		s.Models = []quotav1alpha1.ModelPool{{Name: "m", Limits: &huge, ContextWindow: math.MaxInt64, MaxOutputTokens: math.MaxInt64}}
		s.SafetyMarginPercent = ptr.To[int32](50)
		s.Queue = quotav1alpha1.QueueSpec{MaxWait: &metav1.Duration{Duration: math.MaxInt64}, MaxDepth: ptr.To[int32](math.MaxInt32)}
	})
	cfg, err := render.Quota(&q, nil, render.Options{})
	data := encode(t, cfg, err)
	back, err := limiterconfig.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cfg, back); diff != "" {
		t.Errorf("round trip changed the document (-rendered +parsed):\n%s", diff)
	}
}

func TestRenderErrors(t *testing.T) {
	missingPolicy := quota("q", func(s *quotav1alpha1.ProviderQuotaSpec) {
		s.CircuitPolicyRef = &quotav1alpha1.LocalObjectReference{Name: "gone"}
	})
	tests := []struct {
		name        string
		render      func() (*limiterconfig.Config, error)
		wantMissing *render.MissingError
		wantText    string
	}{
		{
			name: "chain names a quota that was not provided",
			render: func() (*limiterconfig.Config, error) {
				c := chainOf(entry("absent", "m"))
				return render.Chain(&c, nil, nil, render.Options{})
			},
			wantMissing: &render.MissingError{Kind: "ProviderQuota", Name: "absent"},
		},
		{
			name: "quota names a policy that was not provided",
			render: func() (*limiterconfig.Config, error) {
				return render.Quota(&missingPolicy, nil, render.Options{})
			},
			wantMissing: &render.MissingError{Kind: "CircuitPolicy", Name: "gone"},
		},
		{
			name: "chain reaches a missing policy through its quota",
			render: func() (*limiterconfig.Config, error) {
				c := chainOf(entry("q", "m"))
				return render.Chain(&c, []quotav1alpha1.ProviderQuota{missingPolicy}, nil, render.Options{})
			},
			wantMissing: &render.MissingError{Kind: "CircuitPolicy", Name: "gone"},
		},
		{
			name: "duplicate inputs would make the output order-dependent",
			render: func() (*limiterconfig.Config, error) {
				c := chainOf(entry("q", "m"))
				return render.Chain(&c, []quotav1alpha1.ProviderQuota{quota("q", nil), quota("q", nil)}, nil, render.Options{})
			},
			wantText: "provided twice",
		},
		{
			name: "openai-compatible without endpoint",
			render: func() (*limiterconfig.Config, error) {
				q := quota("q", func(s *quotav1alpha1.ProviderQuotaSpec) { s.Provider = quotav1alpha1.ProviderOpenAICompatible })
				return render.Quota(&q, nil, render.Options{})
			},
			wantText: "spec.endpoint is required",
		},
		{
			name: "a tier the presets do not know (an object that skipped admission)",
			render: func() (*limiterconfig.Config, error) {
				q := quota("q", func(s *quotav1alpha1.ProviderQuotaSpec) { s.Tier = "gold" })
				return render.Quota(&q, nil, render.Options{})
			},
			wantText: `spec.tier: tier "gold" is not a known openai tier (known: tier-1,`,
		},
		{
			name: "chain without entries",
			render: func() (*limiterconfig.Config, error) {
				c := chainOf()
				return render.Chain(&c, nil, nil, render.Options{})
			},
			wantText: "at least one entry",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.render()
			if err == nil {
				t.Fatal("rendered, want an error")
			}
			if tt.wantMissing != nil {
				var missing *render.MissingError
				if !errors.As(err, &missing) {
					t.Fatalf("error %v is not a MissingError", err)
				}
				if diff := cmp.Diff(tt.wantMissing, missing); diff != "" {
					t.Errorf("-want +got:\n%s", diff)
				}
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not say %q", err, tt.wantText)
			}
		})
	}
}

// TestEncodeRejectsInvalid covers values the schema forbids but a renderer could still
// be handed: Encode must refuse them with the field path, never write them out.
func TestEncodeRejectsInvalid(t *testing.T) {
	q := quota("q", func(s *quotav1alpha1.ProviderQuotaSpec) {
		s.Limits.TokensPerMinute = -5
		s.SafetyMarginPercent = ptr.To[int32](90)
		s.Models = []quotav1alpha1.ModelPool{{Name: "m", Tokenizer: "words"}}
	})
	cfg, err := render.Quota(&q, nil, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = render.Encode(cfg)
	for _, want := range []string{"providers[0].limits.tokensPerMinute", "providers[0].safetyMarginPercent", "providers[0].models[0].tokenizer"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Encode error %v does not name %s", err, want)
		}
	}
}

func TestEndpoint(t *testing.T) {
	for typ, want := range quotav1alpha1.DefaultEndpoints {
		got, err := render.Endpoint(&quotav1alpha1.ProviderQuotaSpec{Provider: typ})
		if err != nil || got != want {
			t.Errorf("%s: Endpoint = %q, %v; want %q", typ, got, err, want)
		}
	}
	got, err := render.Endpoint(&quotav1alpha1.ProviderQuotaSpec{Provider: quotav1alpha1.ProviderOpenAI, Endpoint: "http://proxy:8080"})
	if err != nil || got != "http://proxy:8080" {
		t.Errorf("spec.endpoint wins: got %q, %v", got, err)
	}
	if _, err := render.Endpoint(&quotav1alpha1.ProviderQuotaSpec{Provider: "mystery"}); err == nil {
		t.Error("unknown provider type: no error")
	}
}

// FuzzQuota feeds arbitrary values through the renderer: it must never panic, and what
// Encode accepts must load in the sidecar unchanged.
func FuzzQuota(f *testing.F) {
	f.Add("openai", "", int64(10), int64(-1), int32(2), "gpt-5.5", "alias", "o200k_base", int64(0), int32(5), "key")
	f.Add("openai-compatible", "http://x", int64(math.MaxInt64), int64(math.MinInt64), int32(-3), "", "", "words", int64(-1), int32(0), "")
	f.Add("gemini", "::bad::", int64(0), int64(0), int32(51), "m", "m", "", int64(math.MaxInt64), int32(math.MaxInt32), "k/with/slash")
	f.Fuzz(func(t *testing.T, typ, endpoint string, rpm, tpm int64, margin int32, model, alias, tokenizer string, wait int64, depth int32, key string) {
		// Objects come from the API server as JSON, so their strings are valid UTF-8;
		// JSON encoding would replace anything else and the round trip could not hold.
		for _, s := range []string{typ, endpoint, model, alias, tokenizer, key} {
			if !utf8.ValidString(s) {
				return
			}
		}
		q := quota("q", func(s *quotav1alpha1.ProviderQuotaSpec) {
			s.Provider = quotav1alpha1.ProviderType(typ)
			s.Endpoint = endpoint
			s.Limits = quotav1alpha1.QuotaLimits{RequestsPerMinute: rpm, TokensPerMinute: tpm}
			s.SafetyMarginPercent = &margin
			s.Models = []quotav1alpha1.ModelPool{{Name: model, AdditionalNames: []string{alias, model}, Tokenizer: tokenizer}}
			s.Queue = quotav1alpha1.QueueSpec{MaxWait: &metav1.Duration{Duration: time.Duration(wait)}, MaxDepth: &depth}
			s.Credentials = []quotav1alpha1.SecretKeyRef{{Name: "s", Key: key}}
		})
		cfg, err := render.Quota(&q, nil, render.Options{})
		if err != nil {
			return
		}
		data, _, err := render.Encode(cfg)
		if err != nil {
			return
		}
		back, err := limiterconfig.Parse(data)
		if err != nil {
			t.Fatalf("Encode accepted a document Parse refuses: %v\n%s", err, data)
		}
		if diff := cmp.Diff(cfg, back); diff != "" {
			t.Fatalf("round trip changed the document:\n%s", diff)
		}
	})
}
