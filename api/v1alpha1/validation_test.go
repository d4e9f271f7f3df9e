package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/presets"
	"github.com/aiquota/aiquota/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// createYAML creates the object a manifest describes in namespace ns.
func createYAML(t *testing.T, ns, manifest string) (*unstructured.Unstructured, error) {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
		t.Fatalf("test manifest does not parse: %v\n%s", err, manifest)
	}
	u.SetNamespace(ns)
	// Strict, as kubectl is: an unknown or duplicated field is an error, not a warning.
	return u, env.Client.Create(context.Background(), u, client.FieldValidation("Strict"))
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetGenerateName("api-")
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.GetName()
}

const validPQ = `
apiVersion: quota.aiquota.dev/v1alpha1
kind: ProviderQuota
metadata: {name: pq}
spec:
  provider: openai
  credentials: [{name: key}]
  limits: {requestsPerMinute: 10}
`

const validFC = `
apiVersion: quota.aiquota.dev/v1alpha1
kind: FallbackChain
metadata: {name: fc}
spec:
  entries:
    - {providerQuotaRef: {name: a}, model: m1}
`

const validCBP = `
apiVersion: quota.aiquota.dev/v1alpha1
kind: CircuitPolicy
metadata: {name: cbp}
spec: {}
`

// TestValidManifestsAccepted guards the invalid cases below: each of them is a valid
// manifest with one thing broken, so the valid base must itself be accepted.
func TestValidManifestsAccepted(t *testing.T) {
	ns := newNamespace(t)
	for _, m := range []string{validPQ, validFC, validCBP} {
		if _, err := createYAML(t, ns, m); err != nil {
			t.Errorf("valid manifest refused: %v\n%s", err, m)
		}
	}
}

func TestInvalidManifestsRejected(t *testing.T) {
	type tc struct {
		name     string
		manifest string
		// want are substrings the API server's message must contain: the field path
		// and what is wrong with it.
		want []string
	}
	pq := func(spec string) string {
		return "apiVersion: quota.aiquota.dev/v1alpha1\nkind: ProviderQuota\nmetadata: {name: pq}\nspec:\n" + spec
	}
	fc := func(spec string) string {
		return "apiVersion: quota.aiquota.dev/v1alpha1\nkind: FallbackChain\nmetadata: {name: fc}\nspec:\n" + spec
	}
	cbp := func(spec string) string {
		return "apiVersion: quota.aiquota.dev/v1alpha1\nkind: CircuitPolicy\nmetadata: {name: cbp}\nspec:\n" + spec
	}
	const cred = "  credentials: [{name: key}]\n"
	cases := []tc{
		// ProviderQuota
		{"pq unknown provider", pq("  provider: openia\n" + cred), []string{"spec.provider", "Unsupported value", `"openia"`}},
		{"pq missing provider", pq(cred), []string{"spec.provider", "Required value"}},
		{"pq missing credentials", pq("  provider: openai\n"), []string{"spec.credentials", "Required value"}},
		{"pq empty credentials", pq("  provider: openai\n  credentials: []\n"), []string{"spec.credentials", "at least 1"}},
		{"pq duplicate credential", pq("  provider: openai\n  credentials: [{name: k}, {name: k, key: api-key}]\n"), []string{"spec.credentials", "must not name the same Secret key twice"}},
		{"pq bad secret key", pq("  provider: openai\n  credentials: [{name: k, key: 'a b'}]\n"), []string{"spec.credentials[0].key", "should match"}},
		{"pq compatible without endpoint", pq("  provider: openai-compatible\n" + cred), []string{"spec.endpoint", "endpoint is required when provider is openai-compatible"}},
		{"pq endpoint not a URL", pq("  provider: openai\n  endpoint: api.openai.com\n" + cred), []string{"spec.endpoint", "absolute http or https URL"}},
		{"pq endpoint ftp", pq("  provider: openai\n  endpoint: ftp://x.example\n" + cred), []string{"spec.endpoint", "absolute http or https URL"}},
		{"pq endpoint query", pq("  provider: openai\n  endpoint: https://x.example/?a=b\n" + cred), []string{"spec.endpoint", "must not carry a query"}},
		{"pq endpoint http public", pq("  provider: openai\n  endpoint: http://api.openai.com\n" + cred), []string{"spec.endpoint", "endpoint must use https", "cleartext"}},
		{"pq endpoint http lookalike", pq("  provider: openai-compatible\n  endpoint: http://localhost.example.com:8080\n" + cred), []string{"spec.endpoint", "endpoint must use https"}},
		{"pq endpoint http svc suffix", pq("  provider: openai-compatible\n  endpoint: http://llm.svc.example.com\n" + cred), []string{"spec.endpoint", "endpoint must use https"}},
		{"pq endpoint upper-case http", pq("  provider: openai\n  endpoint: HTTP://api.openai.com\n" + cred), []string{"spec.endpoint", "endpoint must use https"}},
		{"pq endpoint http userinfo", pq("  provider: openai-compatible\n  endpoint: http://localhost@evil.example.com\n" + cred), []string{"spec.endpoint", "endpoint must use https"}},
		{"pq endpoint http loopback prefix", pq("  provider: openai-compatible\n  endpoint: http://127.0.0.1.evil.example.com\n" + cred), []string{"spec.endpoint", "endpoint must use https"}},
		{"pq endpoint http private ip", pq("  provider: openai-compatible\n  endpoint: http://10.0.0.7:8000\n" + cred), []string{"spec.endpoint", "endpoint must use https"}},
		{"pq unlisted unknown", pq("  provider: openai\n" + cred + "  unlistedModels: share\n"), []string{"spec.unlistedModels", "Unsupported value", "shareAccountLimits", "reject"}},
		{"pq reject without models", pq("  provider: openai\n" + cred + "  unlistedModels: reject\n"), []string{"spec.unlistedModels", "reject needs spec.models"}},
		{"pq model named unlisted", pq("  provider: openai\n" + cred + "  models: [{name: '(unlisted)'}]\n"), []string{"spec.models[0].name", "(unlisted) is the name of the pool of unlisted models"}},
		{"pq additional name unlisted", pq("  provider: openai\n" + cred + "  models: [{name: m, additionalNames: ['(unlisted)']}]\n"), []string{"spec.models[0].name", "(unlisted) is the name of the pool of unlisted models"}},
		{"pq zero rpm", pq("  provider: openai\n" + cred + "  limits: {requestsPerMinute: 0}\n"), []string{"spec.limits.requestsPerMinute", "greater than or equal to 1"}},
		{"pq negative tpm", pq("  provider: openai\n" + cred + "  limits: {tokensPerMinute: -5}\n"), []string{"spec.limits.tokensPerMinute", "greater than or equal to 1"}},
		{"pq rpm as string", pq("  provider: openai\n" + cred + "  limits: {requestsPerMinute: lots}\n"), []string{"spec.limits.requestsPerMinute", "integer"}},
		{"pq margin over 50", pq("  provider: openai\n" + cred + "  safetyMarginPercent: 80\n"), []string{"spec.safetyMarginPercent", "less than or equal to 50"}},
		{"pq duplicate model", pq("  provider: openai\n" + cred + "  models: [{name: gpt-5.5}, {name: gpt-5.5}]\n"), []string{"spec.models", "model pool names must be unique"}},
		{"pq model in two pools", pq("  provider: anthropic\n" + cred + "  models: [{name: a, additionalNames: [b]}, {name: b}]\n"), []string{"spec.models", "a model name must belong to one pool only"}},
		{"pq additional names overlap", pq("  provider: anthropic\n" + cred + "  models: [{name: a, additionalNames: [c]}, {name: b, additionalNames: [c]}]\n"), []string{"spec.models", "a model name must belong to one pool only"}},
		{"pq additional repeats name", pq("  provider: anthropic\n" + cred + "  models: [{name: a, additionalNames: [a]}]\n"), []string{"spec.models[0].additionalNames", "must not repeat name"}},
		{"pq output over window", pq("  provider: openai\n" + cred + "  models: [{name: m, contextWindow: 1000, maxOutputTokens: 2000}]\n"), []string{"spec.models[0].maxOutputTokens", "must not exceed contextWindow"}},
		{"pq unknown tokenizer", pq("  provider: openai\n" + cred + "  models: [{name: m, tokenizer: p50k}]\n"), []string{"spec.models[0].tokenizer", "Unsupported value"}},
		{"pq queue wait garbage", pq("  provider: openai\n" + cred + "  queue: {maxWait: soon}\n"), []string{"spec.queue.maxWait", "should match"}},
		{"pq queue wait too long", pq("  provider: openai\n" + cred + "  queue: {maxWait: 2h}\n"), []string{"spec.queue.maxWait", "maxWait must be between 0s and 1h"}},
		{"pq unknown field", pq("  provider: openai\n" + cred + "  limits: {rpm: 5}\n"), []string{"spec.limits.rpm", "unknown field"}},
		// FallbackChain
		{"fc no entries", fc("  entries: []\n"), []string{"spec.entries", "at least 1"}},
		{"fc missing entries", fc("  defaultPriority: 3\n"), []string{"spec.entries", "Required value"}},
		{"fc entry without model", fc("  entries: [{providerQuotaRef: {name: a}}]\n"), []string{"spec.entries[0].model", "Required value"}},
		{"fc entry without ref", fc("  entries: [{model: m}]\n"), []string{"spec.entries[0].providerQuotaRef", "Required value"}},
		{"fc empty ref name", fc("  entries: [{providerQuotaRef: {name: ''}, model: m}]\n"), []string{"spec.entries[0].providerQuotaRef.name", "at least 1"}},
		{"fc duplicate entry", fc("  entries: [{providerQuotaRef: {name: a}, model: m}, {providerQuotaRef: {name: a}, model: m}]\n"), []string{"spec.entries", "must not repeat the same providerQuotaRef and model"}},
		{"fc unknown fallbackOn", fc("  entries: [{providerQuotaRef: {name: a}, model: m}]\n  fallbackOn: [sometimes]\n"), []string{"spec.fallbackOn[0]", "Unsupported value"}},
		{"fc duplicate fallbackOn", fc("  entries: [{providerQuotaRef: {name: a}, model: m}]\n  fallbackOn: [timeout, timeout]\n"), []string{"spec.fallbackOn[1]", "Duplicate value"}},
		{"fc priority zero", fc("  entries: [{providerQuotaRef: {name: a}, model: m}]\n  defaultPriority: 0\n"), []string{"spec.defaultPriority", "greater than or equal to 1"}},
		{"fc priority ten", fc("  entries: [{providerQuotaRef: {name: a}, model: m}]\n  defaultPriority: 10\n"), []string{"spec.defaultPriority", "less than or equal to 9"}},
		{"fc duplicate alias", fc("  entries: [{providerQuotaRef: {name: a}, model: m}]\n  modelAliases: [x, x]\n"), []string{"spec.modelAliases[1]", "Duplicate value"}},
		{"fc empty alias", fc("  entries: [{providerQuotaRef: {name: a}, model: m}]\n  modelAliases: ['']\n"), []string{"spec.modelAliases[0]", "at least 1"}},
		{"fc wait budget zero", fc("  entries: [{providerQuotaRef: {name: a}, model: m}]\n  waitBudget: {interactive: 0s}\n"), []string{"spec.waitBudget.interactive", "between 1ms and 10m"}},
		{"fc wait budget batch too long", fc("  entries: [{providerQuotaRef: {name: a}, model: m}]\n  waitBudget: {batch: 2h}\n"), []string{"spec.waitBudget.batch", "between 1ms and 1h"}},
		{"fc wait budget interactive above batch", fc("  entries: [{providerQuotaRef: {name: a}, model: m}]\n  waitBudget: {interactive: 5m, batch: 1m}\n"), []string{"spec.waitBudget", "must not be longer than waitBudget.batch"}},
		{"fc too many entries", fc("  entries: [" + strings.Repeat("{providerQuotaRef: {name: a}, model: m},", 16) + "{providerQuotaRef: {name: a}, model: z}]\n"), []string{"spec.entries", "must have at most 16 items"}},
		// CircuitPolicy
		{"cbp threshold zero", cbp("  failureThreshold: -1\n"), []string{"spec.failureThreshold", "greater than or equal to 1"}},
		{"cbp threshold huge", cbp("  failureThreshold: 5000\n"), []string{"spec.failureThreshold", "less than or equal to 1000"}},
		{"cbp recovery garbage", cbp("  recoveryTimeout: a minute\n"), []string{"spec.recoveryTimeout", "should match"}},
		{"cbp recovery too short", cbp("  recoveryTimeout: 10ms\n"), []string{"spec.recoveryTimeout", "recoveryTimeout must be between 1s and 24h"}},
		{"cbp half-open zero", cbp("  halfOpenMaxCalls: -2\n"), []string{"spec.halfOpenMaxCalls", "greater than or equal to 1"}},
		{"cbp failureOn circuitOpen", cbp("  failureOn: [circuitOpen]\n"), []string{"spec.failureOn[0]", "Unsupported value"}},
		{"cbp failureOn empty", cbp("  failureOn: []\n"), []string{"spec.failureOn", "at least 1"}},
		{"cbp maxDelay below base", cbp("  retry: {baseDelay: 10s, maxDelay: 1s}\n"), []string{"spec.retry.maxDelay", "maxDelay must not be shorter than baseDelay"}},
		{"cbp maxDelay below default base", cbp("  retry: {maxDelay: 500ms}\n"), []string{"spec.retry.maxDelay", "maxDelay must not be shorter than baseDelay"}},
		{"cbp retries negative", cbp("  retry: {maxRetries: -1}\n"), []string{"spec.retry.maxRetries", "greater than or equal to 0"}},
		{"cbp jitter over 100", cbp("  retry: {jitterPercent: 150}\n"), []string{"spec.retry.jitterPercent", "less than or equal to 100"}},
		{"cbp maxTotal below base", cbp("  retry: {baseDelay: 2s, maxTotal: 1s}\n"), []string{"spec.retry.maxTotal", "maxTotal must not be shorter than baseDelay"}},
		{"cbp timeout negative", cbp("  requestTimeout: -5s\n"), []string{"spec.requestTimeout", "should match"}},
		{"cbp retry as list", cbp("  retry: [1, 2]\n"), []string{"spec.retry", "object"}},
	}
	ns := newNamespace(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := createYAML(t, ns, c.manifest)
			if err == nil {
				t.Fatalf("API server accepted an invalid manifest:\n%s", c.manifest)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Fatalf("want an Invalid or BadRequest error, got %T: %v", err, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
	perKind := map[string]int{}
	for _, c := range cases {
		perKind[strings.Fields(c.name)[0]]++
	}
	for _, kind := range []string{"pq", "fc", "cbp"} {
		if perKind[kind] < 10 {
			t.Errorf("%s has %d invalid cases, want at least 10", kind, perKind[kind])
		}
	}
}

// TestEndpointsAccepted: https anywhere, and plain http where the key does not
// leave the node or the cluster.
func TestEndpointsAccepted(t *testing.T) {
	ns := newNamespace(t)
	for i, endpoint := range []string{
		"https://api.openai.com",
		"https://llm.example.com:8443/openai",
		"http://localhost:8080",
		"http://LOCALHOST",
		"http://127.0.0.1:9000",
		"http://127.8.9.10",
		"http://[::1]:8080",
		"http://vllm.inference.svc:8000",
		"http://vllm.inference.svc.cluster.local",
		"http://vllm.inference.svc.cluster.local:8000/v1beta",
		"Http://Vllm.Inference.SVC",
	} {
		manifest := fmt.Sprintf("apiVersion: quota.aiquota.dev/v1alpha1\nkind: ProviderQuota\nmetadata: {name: pq-%d}\nspec:\n  provider: openai-compatible\n  endpoint: %q\n  credentials: [{name: key}]\n", i, endpoint)
		if _, err := createYAML(t, ns, manifest); err != nil {
			t.Errorf("endpoint %s refused: %v", endpoint, err)
		}
	}
}

// TestTierRuleMatchesPresets: the CRD's tier rule accepts exactly the tiers that
// internal/presets ships for each provider type, and an unknown tier is refused
// with the known ones named.
func TestTierRuleMatchesPresets(t *testing.T) {
	ns := newNamespace(t)
	for _, provider := range []quotav1alpha1.ProviderType{quotav1alpha1.ProviderOpenAI, quotav1alpha1.ProviderAnthropic,
		quotav1alpha1.ProviderGemini, quotav1alpha1.ProviderDeepSeek, quotav1alpha1.ProviderOpenAICompatible} {
		manifest := func(name, tier string) string {
			return fmt.Sprintf("apiVersion: quota.aiquota.dev/v1alpha1\nkind: ProviderQuota\nmetadata: {name: %s}\nspec:\n  provider: %s\n  endpoint: https://llm.example.com\n  tier: %s\n  credentials: [{name: key}]\n", name, provider, tier)
		}
		for _, tier := range presets.Tiers(provider) {
			if _, err := createYAML(t, ns, manifest(string(provider)+"-"+tier, tier)); err != nil {
				t.Errorf("%s tier %s refused: %v", provider, tier, err)
			}
		}
		want := "(known: " + strings.Join(presets.Tiers(provider), ", ") + ")"
		if provider == quotav1alpha1.ProviderOpenAICompatible {
			want = "openai-compatible has no tier presets"
		}
		_, err := createYAML(t, ns, manifest(string(provider)+"-unknown", "tier-99"))
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.tier") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s tier-99: got %v, want Invalid naming spec.tier and %q", provider, err, want)
		}
	}
}

// TestUnlistedModelsValues: both values of the enum are accepted.
func TestUnlistedModelsValues(t *testing.T) {
	ns := newNamespace(t)
	for _, v := range []quotav1alpha1.UnlistedModelPolicy{quotav1alpha1.UnlistedModelsShareAccountLimits, quotav1alpha1.UnlistedModelsReject} {
		manifest := fmt.Sprintf("apiVersion: quota.aiquota.dev/v1alpha1\nkind: ProviderQuota\nmetadata: {name: pq-%s}\nspec:\n  provider: openai\n  credentials: [{name: key}]\n  unlistedModels: %s\n  models: [{name: gpt-5.5}]\n", strings.ToLower(string(v)), v)
		if _, err := createYAML(t, ns, manifest); err != nil {
			t.Errorf("unlistedModels %s refused: %v", v, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	for _, m := range []string{validPQ, validFC, validCBP} {
		if _, err := createYAML(t, ns, m); err != nil {
			t.Fatalf("create: %v", err)
		}
	}

	var pq quotav1alpha1.ProviderQuota
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pq"}, &pq); err != nil {
		t.Fatal(err)
	}
	wantPQ := quotav1alpha1.ProviderQuotaSpec{
		Provider:            quotav1alpha1.ProviderOpenAI,
		Credentials:         []quotav1alpha1.SecretKeyRef{{Name: "key", Key: "api-key"}},
		Limits:              quotav1alpha1.QuotaLimits{RequestsPerMinute: 10},
		UnlistedModels:      quotav1alpha1.UnlistedModelsShareAccountLimits,
		SafetyMarginPercent: ptr[int32](2),
		LearnFromHeaders:    ptr(true),
		Queue:               quotav1alpha1.QueueSpec{MaxWait: dur("30s"), MaxDepth: ptr[int32](1000)},
	}
	if d := cmp.Diff(wantPQ, pq.Spec); d != "" {
		t.Errorf("ProviderQuota defaults (-want +got):\n%s", d)
	}

	var fc quotav1alpha1.FallbackChain
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fc"}, &fc); err != nil {
		t.Fatal(err)
	}
	wantFC := quotav1alpha1.FallbackChainSpec{
		Entries: []quotav1alpha1.ChainEntry{{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: "a"}, Model: "m1"}},
		FallbackOn: []quotav1alpha1.FailureKind{
			quotav1alpha1.FailureRateLimited, quotav1alpha1.FailureServerError, quotav1alpha1.FailureUnavailable,
			quotav1alpha1.FailureTimeout, quotav1alpha1.FailureConnectionError, quotav1alpha1.FailureCircuitOpen,
			quotav1alpha1.FailureContextLengthExceeded,
		},
		DefaultPriority: ptr[int32](5),
		WaitBudget:      quotav1alpha1.WaitBudget{Interactive: dur("1s"), Batch: dur("60s")},
	}
	if d := cmp.Diff(wantFC, fc.Spec); d != "" {
		t.Errorf("FallbackChain defaults (-want +got):\n%s", d)
	}

	var cbp quotav1alpha1.CircuitPolicy
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cbp"}, &cbp); err != nil {
		t.Fatal(err)
	}
	wantCBP := quotav1alpha1.CircuitPolicySpec{
		FailureThreshold: 5,
		RecoveryTimeout:  dur("60s"),
		HalfOpenMaxCalls: 3,
		FailureOn:        []quotav1alpha1.BreakerFailureKind{"serverError", "unavailable", "timeout", "connectionError"},
		Retry: quotav1alpha1.RetryPolicy{
			MaxRetries:           ptr[int32](5),
			BaseDelay:            dur("1s"),
			MaxDelay:             dur("60s"),
			JitterPercent:        ptr[int32](25),
			RespectRetryAfter:    ptr(true),
			UnavailableBaseDelay: dur("30s"),
		},
		RequestTimeout: dur("10m"),
	}
	if d := cmp.Diff(wantCBP, cbp.Spec); d != "" {
		t.Errorf("CircuitPolicy defaults (-want +got):\n%s", d)
	}
}

// A CircuitPolicy with no spec at all gets every default too.
func TestCircuitPolicyWithoutSpecIsDefaulted(t *testing.T) {
	ns := newNamespace(t)
	u, err := createYAML(t, ns, "apiVersion: quota.aiquota.dev/v1alpha1\nkind: CircuitPolicy\nmetadata: {name: bare}\n")
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := unstructured.NestedInt64(u.Object, "spec", "failureThreshold")
	base, _, _ := unstructured.NestedString(u.Object, "spec", "retry", "baseDelay")
	if got != 5 || base != "1s" {
		t.Errorf("bare CircuitPolicy: failureThreshold=%d retry.baseDelay=%q, want 5 and 1s", got, base)
	}
}

func TestSamplesApply(t *testing.T) {
	ns := newNamespace(t)
	files, err := filepath.Glob(filepath.Join(testenv.Root(), "config", "samples", "quota_*.yaml"))
	if err != nil || len(files) < 6 {
		t.Fatalf("samples: found %d files (err %v), want at least 6", len(files), err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := createYAML(t, ns, string(data)); err != nil {
			t.Errorf("sample %s refused: %v", filepath.Base(f), err)
		}
	}
}

func TestStatusSubresource(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	if _, err := createYAML(t, ns, validCBP); err != nil {
		t.Fatal(err)
	}
	var cbp quotav1alpha1.CircuitPolicy
	key := client.ObjectKey{Namespace: ns, Name: "cbp"}
	if err := env.Client.Get(ctx, key, &cbp); err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	// A status write through the main resource is ignored...
	cbp.Status.OpenBreakers = 7
	cbp.Spec.FailureThreshold = 9
	if err := env.Client.Update(ctx, &cbp); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, key, &cbp); err != nil {
		t.Fatal(err)
	}
	if cbp.Status.OpenBreakers != 0 || cbp.Spec.FailureThreshold != 9 {
		t.Fatalf("update of the main resource: openBreakers=%d failureThreshold=%d, want 0 and 9", cbp.Status.OpenBreakers, cbp.Spec.FailureThreshold)
	}
	// ...and a spec write through the status subresource is ignored.
	cbp.Status = quotav1alpha1.CircuitPolicyStatus{
		OpenBreakers: 1,
		Breakers: []quotav1alpha1.BreakerStatus{{
			ProviderQuota: "openai-tier3", Model: "gpt-5.5", State: quotav1alpha1.BreakerOpen, Since: &now,
		}},
	}
	cbp.Spec.FailureThreshold = 11
	if err := env.Client.Status().Update(ctx, &cbp); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, key, &cbp); err != nil {
		t.Fatal(err)
	}
	if cbp.Status.OpenBreakers != 1 || len(cbp.Status.Breakers) != 1 || cbp.Spec.FailureThreshold != 9 {
		t.Fatalf("status update: openBreakers=%d breakers=%d failureThreshold=%d, want 1, 1 and 9", cbp.Status.OpenBreakers, len(cbp.Status.Breakers), cbp.Spec.FailureThreshold)
	}
	// The status schema validates too.
	cbp.Status.Breakers[0].State = "Ajar"
	if err := env.Client.Status().Update(ctx, &cbp); err == nil || !strings.Contains(err.Error(), "status.breakers[0].state") {
		t.Errorf("invalid breaker state: want an error naming status.breakers[0].state, got %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func dur(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &metav1.Duration{Duration: d}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
