package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
)

// chainFixture is two quotas, a policy and a chain over them, all Ready.
type chainFixture struct {
	ns     string
	policy *quotav1alpha1.CircuitPolicy
	qa, qb *quotav1alpha1.ProviderQuota
	chain  *quotav1alpha1.FallbackChain
	cmName string
}

func newChainFixture(t *testing.T) *chainFixture {
	t.Helper()
	ns := newNamespace(t)
	f := &chainFixture{
		ns:     ns,
		policy: policy(ns, "std", 5),
		qa:     providerQuota(ns, "qa", "a-key", 100, "std"),
		qb:     providerQuota(ns, "qb", "b-key", 200, ""),
		cmName: naming.ChainConfigMap("chat"),
	}
	create(t, secret(ns, "a-key", "api-key"), secret(ns, "b-key", "api-key"), f.policy, f.qa, f.qb)
	waitReady(t, f.qa)
	waitReady(t, f.qb)
	f.chain = fallbackChain(ns, "chat",
		entrySpec{"qa", "gpt-5.5", ""}, entrySpec{"qb", "gpt-4.1-mini", "std"}, entrySpec{"qa", "gpt-4.1-mini", ""})
	create(t, f.chain)
	waitReady(t, f.chain)
	return f
}

func TestFallbackChainLifecycle(t *testing.T) {
	f := newChainFixture(t)
	chain := f.chain
	wantEntries := []quotav1alpha1.ResolvedEntry{
		{ProviderQuota: "qa", Provider: "openai", Model: "gpt-5.5", CircuitPolicy: "std", Resolved: true},
		{ProviderQuota: "qb", Provider: "openai", Model: "gpt-4.1-mini", CircuitPolicy: "std", Resolved: true},
		{ProviderQuota: "qa", Provider: "openai", Model: "gpt-4.1-mini", CircuitPolicy: "std", Resolved: true},
	}
	if diff := cmp.Diff(wantEntries, chain.Status.ResolvedEntries); diff != "" {
		t.Errorf("resolvedEntries (-want +got):\n%s", diff)
	}
	if chain.Status.ConfigMapName != f.cmName {
		t.Errorf("configMapName %q", chain.Status.ConfigMapName)
	}
	cm, cfg := waitConfig(t, f.ns, f.cmName, anyConfig)
	checkOwnedConfigMap(t, cm, chain, "fallbackchain")
	wantChain := &limiterconfig.Chain{
		Entries: []limiterconfig.ChainEntry{
			{Provider: "qa", Model: "gpt-5.5"}, {Provider: "qb", Model: "gpt-4.1-mini", Policy: "std"}, {Provider: "qa", Model: "gpt-4.1-mini"},
		},
		FallbackOn:      []string{"circuitOpen", "connectionError", "contextLengthExceeded", "rateLimited", "serverError", "timeout", "unavailable"},
		DefaultPriority: 5,
		WaitInteractive: limiterconfig.DefaultWaitInteractive,
		WaitBatch:       limiterconfig.DefaultWaitBatch,
	}
	if diff := cmp.Diff(wantChain, cfg.Chain); diff != "" {
		t.Errorf("rendered chain (-want +got):\n%s", diff)
	}
	if len(cfg.Providers) != 2 || cfg.Providers[0].Name != "qa" || cfg.Providers[0].Policy != "std" || cfg.Providers[1].Name != "qb" {
		t.Errorf("providers: %+v", cfg.Providers)
	}
	if cfg.Source.Generation != 1 {
		t.Errorf("source generation %d", cfg.Source.Generation)
	}
	waitEvent(t, chain, corev1.EventTypeNormal, eventReady, f.cmName)

	// Reordering the chain re-renders it.
	update(t, chain, func(c *quotav1alpha1.FallbackChain) {
		e := c.Spec.Entries
		c.Spec.Entries = []quotav1alpha1.ChainEntry{e[2], e[0], e[1]}
	})
	waitConfig(t, f.ns, f.cmName, func(c *limiterconfig.Config) error {
		if c.Chain.Entries[0].Model != "gpt-4.1-mini" || c.Source.Generation != 2 {
			return fmt.Errorf("entries %+v, generation %d", c.Chain.Entries, c.Source.Generation)
		}
		return nil
	})
	waitReady(t, chain)

	// A quota's limits change: the chain re-renders.
	update(t, f.qa, func(q *quotav1alpha1.ProviderQuota) { q.Spec.Limits.RequestsPerMinute = 111 })
	waitConfig(t, f.ns, f.cmName, func(c *limiterconfig.Config) error {
		if got := c.Providers[0].Limits.RequestsPerMinute; got != 111 {
			return fmt.Errorf("qa requestsPerMinute %d", got)
		}
		return nil
	})

	// The quota is deleted: not Ready, and the config keeps what exists (qa's
	// two entries), so pods keep starting and working on those.
	remove(t, f.qb)
	c := waitCondition(t, chain, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonProviderQuotaNotFound)
	if !strings.Contains(c.Message, `ProviderQuota "qb" not found (spec.entries[2])`) {
		t.Errorf("Ready message %q does not say which quota and entry", c.Message)
	}
	waitCondition(t, chain, quotav1alpha1.ConditionReferencesResolved, metav1.ConditionFalse, quotav1alpha1.ReasonProviderQuotaNotFound)
	c = waitCondition(t, chain, quotav1alpha1.ConditionConfigRendered, metav1.ConditionTrue, quotav1alpha1.ReasonRenderedPartially)
	if !strings.Contains(c.Message, `ProviderQuota "qb" not found (spec.entries[2])`) || !strings.Contains(c.Message, "left out") {
		t.Errorf("ConfigRendered message %q does not say what is left out", c.Message)
	}
	if got := chain.Status.ResolvedEntries[2]; got.Resolved || !strings.Contains(got.Message, `ProviderQuota "qb" not found`) || got.Provider != "" {
		t.Errorf("resolvedEntries[2] = %+v", got)
	}
	if !chain.Status.ResolvedEntries[0].Resolved || chain.Status.ConfigMapName != f.cmName {
		t.Errorf("status: %+v", chain.Status)
	}
	cm, _ = waitConfig(t, f.ns, f.cmName, func(c *limiterconfig.Config) error {
		if len(c.Providers) != 1 || c.Providers[0].Name != "qa" || len(c.Chain.Entries) != 2 || c.Chain.Entries[1].Provider != "qa" {
			return fmt.Errorf("providers %+v, entries %+v; want qa's two entries only", c.Providers, c.Chain.Entries)
		}
		return nil
	})
	waitEvent(t, chain, corev1.EventTypeWarning, quotav1alpha1.ReasonProviderQuotaNotFound, `ProviderQuota "qb" not found`)
	waitEvent(t, chain, corev1.EventTypeWarning, quotav1alpha1.ReasonRenderedPartially, `ProviderQuota "qb" not found`)

	// Recreated with other limits: Ready again, re-rendered.
	create(t, providerQuota(f.ns, "qb", "b-key", 333, ""))
	waitConfig(t, f.ns, f.cmName, func(c *limiterconfig.Config) error {
		if len(c.Providers) != 2 || c.Providers[1].Limits.RequestsPerMinute != 333 {
			return fmt.Errorf("providers %+v", c.Providers)
		}
		return nil
	})
	waitReady(t, chain)
	waitEvent(t, chain, corev1.EventTypeNormal, eventConfigRendered, "was "+shortHash(configHash(cm)))
	if n := recorded.count(chain, eventReady); n != 2 {
		t.Errorf("Ready announced %d times, want twice (created, recovered): %v", n, recorded.reasons(chain))
	}
	if n := recorded.count(chain, quotav1alpha1.ReasonProviderQuotaNotFound); n != 1 {
		t.Errorf("ProviderQuotaNotFound announced %d times, want once: %v", n, recorded.reasons(chain))
	}

	// A quota's Secret goes away: the chain is not ready, its config is still current.
	remove(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "a-key"}})
	c = waitCondition(t, chain, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonProviderQuotaNotReady)
	if !strings.Contains(c.Message, `ProviderQuota "qa": Secret "a-key" not found`) {
		t.Errorf("Ready message %q", c.Message)
	}
	waitCondition(t, chain, quotav1alpha1.ConditionConfigRendered, metav1.ConditionTrue, quotav1alpha1.ReasonRendered)
	create(t, secret(f.ns, "a-key", "api-key"))
	waitReady(t, chain)
}

func TestFallbackChainPolicyReferences(t *testing.T) {
	f := newChainFixture(t)
	waitConfig(t, f.ns, f.cmName, anyConfig)

	// The policy, named by an entry and by quota qa, is deleted: the config is
	// rendered as if it were not named (built-in defaults) until it is back.
	remove(t, f.policy)
	c := waitCondition(t, f.chain, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonCircuitPolicyNotFound)
	for _, want := range []string{
		`CircuitPolicy "std", named by ProviderQuota "qa", not found (spec.entries[0], spec.entries[2])`,
		`CircuitPolicy "std" not found (spec.entries[1])`,
	} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("Ready message %q does not say %q", c.Message, want)
		}
	}
	waitCondition(t, f.qa, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonCircuitPolicyNotFound)
	waitCondition(t, f.chain, quotav1alpha1.ConditionConfigRendered, metav1.ConditionTrue, quotav1alpha1.ReasonRenderedPartially)
	waitConfig(t, f.ns, f.cmName, func(c *limiterconfig.Config) error {
		if len(c.Policies) != 0 || c.Providers[0].Policy != "" || len(c.Chain.Entries) != 3 || c.Chain.Entries[1].Policy != "" {
			return fmt.Errorf("policies %+v, providers %+v, entries %+v; want all three entries on the built-in defaults", c.Policies, c.Providers, c.Chain.Entries)
		}
		return nil
	})

	create(t, policy(f.ns, "std", 9))
	waitReady(t, f.chain)
	waitConfig(t, f.ns, f.cmName, func(c *limiterconfig.Config) error {
		if len(c.Policies) != 1 || c.Policies[0].FailureThreshold != 9 || c.Chain.Entries[1].Policy != "std" {
			return fmt.Errorf("policies %+v", c.Policies)
		}
		return nil
	})
}

// TestChainCreationOrders: whatever order a chain and the objects it names are
// created in, the chain's ConfigMap holds what exists as soon as one entry can be
// used (the webhook admits a pod from then on too), and follows as the rest
// appears.
func TestChainCreationOrders(t *testing.T) {
	t.Run("chain first, then its quotas", func(t *testing.T) {
		ns := newNamespace(t)
		create(t, secret(ns, "k", "api-key"))
		chain := fallbackChain(ns, "c", entrySpec{"q1", "gpt-5.5", ""}, entrySpec{"q2", "gpt-4.1-mini", ""})
		create(t, chain)
		cmName := naming.ChainConfigMap("c")
		c := waitCondition(t, chain, quotav1alpha1.ConditionConfigRendered, metav1.ConditionFalse, quotav1alpha1.ReasonReferencesUnresolved)
		if !strings.Contains(c.Message, "no entry can be used") || !strings.Contains(c.Message, "No config has been rendered yet") {
			t.Errorf("ConfigRendered message %q", c.Message)
		}

		create(t, providerQuota(ns, "q2", "k", 10, ""))
		waitCondition(t, chain, quotav1alpha1.ConditionConfigRendered, metav1.ConditionTrue, quotav1alpha1.ReasonRenderedPartially)
		waitCondition(t, chain, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonProviderQuotaNotFound)
		waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
			if len(c.Chain.Entries) != 1 || c.Chain.Entries[0].Provider != "q2" {
				return fmt.Errorf("entries %+v, want q2's only", c.Chain.Entries)
			}
			return nil
		})
		if chain.Status.ConfigMapName != cmName || chain.Status.ResolvedEntries[0].Resolved || !chain.Status.ResolvedEntries[1].Resolved {
			t.Errorf("status %+v", chain.Status)
		}
		waitEvent(t, chain, corev1.EventTypeWarning, quotav1alpha1.ReasonRenderedPartially, `ProviderQuota "q1" not found (spec.entries[0])`)

		create(t, providerQuota(ns, "q1", "k", 10, ""))
		waitReady(t, chain)
		waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
			if len(c.Chain.Entries) != 2 || c.Chain.Entries[0].Provider != "q1" {
				return fmt.Errorf("entries %+v, want both", c.Chain.Entries)
			}
			return nil
		})
		waitCondition(t, chain, quotav1alpha1.ConditionConfigRendered, metav1.ConditionTrue, quotav1alpha1.ReasonRendered)
	})

	t.Run("a quota first, then the chain, then the other quota", func(t *testing.T) {
		ns := newNamespace(t)
		create(t, secret(ns, "k", "api-key"), providerQuota(ns, "q1", "k", 10, ""))
		chain := fallbackChain(ns, "c", entrySpec{"q1", "gpt-5.5", ""}, entrySpec{"q2", "gpt-4.1-mini", ""})
		create(t, chain)
		cmName := naming.ChainConfigMap("c")
		waitCondition(t, chain, quotav1alpha1.ConditionConfigRendered, metav1.ConditionTrue, quotav1alpha1.ReasonRenderedPartially)
		waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
			if len(c.Chain.Entries) != 1 || c.Chain.Entries[0].Provider != "q1" {
				return fmt.Errorf("entries %+v, want q1's only", c.Chain.Entries)
			}
			return nil
		})
		create(t, providerQuota(ns, "q2", "k", 10, ""))
		waitReady(t, chain)
		waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
			if len(c.Chain.Entries) != 2 {
				return fmt.Errorf("entries %+v, want both", c.Chain.Entries)
			}
			return nil
		})
	})

	t.Run("missing CircuitPolicy", func(t *testing.T) {
		ns := newNamespace(t)
		create(t, secret(ns, "k", "api-key"), providerQuota(ns, "q", "k", 10, ""))
		chain := fallbackChain(ns, "c", entrySpec{"q", "gpt-5.5", "later"})
		create(t, chain)
		cmName := naming.ChainConfigMap("c")
		waitCondition(t, chain, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonCircuitPolicyNotFound)
		waitCondition(t, chain, quotav1alpha1.ConditionConfigRendered, metav1.ConditionTrue, quotav1alpha1.ReasonRenderedPartially)
		waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
			if len(c.Chain.Entries) != 1 || c.Chain.Entries[0].Policy != "" || len(c.Policies) != 0 {
				return fmt.Errorf("entries %+v, policies %+v; want the entry without its policy", c.Chain.Entries, c.Policies)
			}
			return nil
		})
		if e := chain.Status.ResolvedEntries[0]; e.Resolved || !strings.Contains(e.Message, `CircuitPolicy "later" not found`) {
			t.Errorf("resolvedEntries[0] = %+v", e)
		}
		create(t, policy(ns, "later", 3))
		waitReady(t, chain)
		waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
			if c.Chain.Entries[0].Policy != "later" || len(c.Policies) != 1 || c.Policies[0].FailureThreshold != 3 {
				return fmt.Errorf("entries %+v, policies %+v", c.Chain.Entries, c.Policies)
			}
			return nil
		})
	})

	t.Run("entry for a model its quota rejects", func(t *testing.T) {
		ns := newNamespace(t)
		q := providerQuota(ns, "q", "k", 10, "")
		q.Spec.UnlistedModels = quotav1alpha1.UnlistedModelsReject
		create(t, secret(ns, "k", "api-key"), q)
		chain := fallbackChain(ns, "c", entrySpec{"q", "gpt-5.5", ""}, entrySpec{"q", "made-up", ""})
		create(t, chain)
		c := waitCondition(t, chain, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonRenderedPartially)
		if !strings.Contains(c.Message, `spec.entries[1]: model "made-up" is not in ProviderQuota "q"'s model pools, and the quota rejects unlisted models`) {
			t.Errorf("Ready message %q", c.Message)
		}
		waitConfig(t, ns, naming.ChainConfigMap("c"), func(c *limiterconfig.Config) error {
			if len(c.Chain.Entries) != 1 || c.Chain.Entries[0].Model != "gpt-5.5" {
				return fmt.Errorf("entries %+v, want gpt-5.5 only", c.Chain.Entries)
			}
			return nil
		})
		if e := chain.Status.ResolvedEntries[1]; !e.Resolved || !strings.Contains(e.Message, "left out") {
			t.Errorf("resolvedEntries[1] = %+v", e)
		}
	})
}

// TestPolicyChangeReRendersEveryDependent: chains that name the policy in an entry and
// chains that reach it through a quota all re-render; others are left alone.
func TestPolicyChangeReRendersEveryDependent(t *testing.T) {
	ns := newNamespace(t)
	p := policy(ns, "shared", 3)
	create(t, secret(ns, "k", "api-key"), p, policy(ns, "other", 4),
		providerQuota(ns, "via-policy", "k", 10, "shared"), providerQuota(ns, "plain", "k", 10, "other"))
	var dependents, bystanders []*quotav1alpha1.FallbackChain
	for i := range 3 {
		c := fallbackChain(ns, fmt.Sprintf("entry-%d", i), entrySpec{"plain", "m", "shared"})
		dependents = append(dependents, c)
	}
	for i := range 2 {
		dependents = append(dependents, fallbackChain(ns, fmt.Sprintf("quota-%d", i), entrySpec{"via-policy", "m", ""}))
	}
	bystanders = append(bystanders, fallbackChain(ns, "bystander", entrySpec{"plain", "m", ""}))
	for _, c := range append(dependents, bystanders...) {
		create(t, c)
	}
	for _, c := range append(dependents, bystanders...) {
		waitReady(t, c)
		waitConfig(t, ns, naming.ChainConfigMap(c.Name), anyConfig)
	}
	bystanderCM := getConfigMap(t, ns, naming.ChainConfigMap("bystander"))

	update(t, p, func(p *quotav1alpha1.CircuitPolicy) { p.Spec.FailureThreshold = 42 })
	threshold := func(c *limiterconfig.Config) error {
		for _, p := range c.Policies {
			if p.Name == "shared" && p.FailureThreshold == 42 {
				return nil
			}
		}
		return fmt.Errorf("policies %+v", c.Policies)
	}
	for _, c := range dependents {
		waitConfig(t, ns, naming.ChainConfigMap(c.Name), threshold)
	}
	waitConfig(t, ns, naming.QuotaConfigMap("via-policy"), threshold)
	waitReady(t, p)
	if got := getConfigMap(t, ns, naming.ChainConfigMap("bystander")); got.ResourceVersion != bystanderCM.ResourceVersion {
		t.Error("a chain that does not use the policy was re-rendered")
	}
}

func TestCircuitPolicyStatus(t *testing.T) {
	ns := newNamespace(t)
	p := policy(ns, "p", 0) // every field defaulted by the API server
	create(t, p)
	waitReady(t, p)
	update(t, p, func(p *quotav1alpha1.CircuitPolicy) { p.Spec.HalfOpenMaxCalls = 1 })
	testkit.Eventually(t, waitTimeout, "observedGeneration 2", func() error {
		waitReady(t, p)
		if p.Generation != 2 {
			return fmt.Errorf("generation %d", p.Generation)
		}
		return nil
	})
	waitEvent(t, p, corev1.EventTypeNormal, eventReady, "valid")
	if n := recorded.count(p, eventReady); n != 1 {
		t.Errorf("Ready announced %d times: %v", n, recorded.reasons(p))
	}
}

// TestSamplesRenderAsGolden applies config/samples as kubectl would and checks that
// the API server's defaults and the renderer's agree: every rendered ConfigMap equals
// the renderer's golden file for the same sample (rendered there without server-side
// defaulting), up to namespace, generation and the control section.
func TestSamplesRenderAsGolden(t *testing.T) {
	ns := newNamespace(t)
	files, err := filepath.Glob(filepath.Join(testenv.Root(), "config", "samples", "quota_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("samples: %v", err)
	}
	var chains, quotas []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(raw, &u.Object); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		u.SetNamespace(ns)
		if err := k8s.Create(context.Background(), u, client.FieldValidation("Strict")); err != nil {
			t.Fatalf("apply %s: %v", f, err)
		}
		switch u.GetKind() {
		case "FallbackChain":
			chains = append(chains, u.GetName())
		case "ProviderQuota":
			quotas = append(quotas, u.GetName())
			creds, _, _ := unstructured.NestedSlice(u.Object, "spec", "credentials")
			for _, c := range creds {
				name := c.(map[string]any)["name"].(string)
				create(t, secret(ns, name, "api-key"))
			}
		}
	}
	check := func(kind, name, cmName string) {
		obj := map[string]client.Object{
			"fallbackchain": &quotav1alpha1.FallbackChain{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
			"providerquota": &quotav1alpha1.ProviderQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		}[kind]
		waitReady(t, obj)
		_, cfg := waitConfig(t, ns, cmName, anyConfig)
		cfg.Source.Namespace, cfg.Source.Generation, cfg.Control = "team-a", 0, nil
		got, err := limiterconfig.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(testenv.Root(), "internal", "render", "testdata", kind+"-"+name+".golden"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s %s: ConfigMap differs from the renderer's golden file (-golden +cluster):\n%s", kind, name, diff)
		}
	}
	for _, c := range chains {
		check("fallbackchain", c, naming.ChainConfigMap(c))
	}
	for _, q := range quotas {
		check("providerquota", q, naming.QuotaConfigMap(q))
	}
}

// TestEdgeCases: inputs the schema accepts but that are unusual.
func TestEdgeCases(t *testing.T) {
	ns := newNamespace(t)
	create(t, secret(ns, "k", "api-key"))

	t.Run("model the quota does not list", func(t *testing.T) {
		q := providerQuota(ns, "listed", "k", 10, "")
		c := fallbackChain(ns, "unlisted", entrySpec{"listed", "some-new-model", ""})
		create(t, q, c)
		waitReady(t, c)
		if e := c.Status.ResolvedEntries[0]; !e.Resolved || !strings.Contains(e.Message, "shares the pool of unlisted models") {
			t.Errorf("resolvedEntries[0] = %+v", e)
		}
	})
	t.Run("limits at the schema maxima", func(t *testing.T) {
		q := providerQuota(ns, "huge", "k", 100_000_000, "")
		q.Spec.Limits = quotav1alpha1.QuotaLimits{
			RequestsPerMinute: 100_000_000, TokensPerMinute: 1_000_000_000_000, InputTokensPerMinute: 1_000_000_000_000,
			OutputTokensPerMinute: 1_000_000_000_000, MaxConcurrency: 1_000_000, RequestsPerDay: 100_000_000_000, TokensPerDay: 1_000_000_000_000_000,
		}
		q.Spec.Models = []quotav1alpha1.ModelPool{{Name: "m", ContextWindow: 100_000_000, MaxOutputTokens: 100_000_000}}
		q.Spec.SafetyMarginPercent = ptr.To[int32](50)
		create(t, q)
		waitReady(t, q)
		waitConfig(t, ns, naming.QuotaConfigMap("huge"), func(c *limiterconfig.Config) error {
			if c.Providers[0].Limits.TokensPerDay != 1_000_000_000_000_000 || c.Providers[0].Models[0].ContextWindow != 100_000_000 {
				return fmt.Errorf("limits %+v", c.Providers[0])
			}
			return nil
		})
	})
	t.Run("sixteen entries on one quota", func(t *testing.T) {
		create(t, providerQuota(ns, "one", "k", 10, ""))
		var entries []entrySpec
		for i := range 16 {
			entries = append(entries, entrySpec{"one", fmt.Sprintf("model-%02d", i), ""})
		}
		c := fallbackChain(ns, "long", entries...)
		create(t, c)
		waitReady(t, c)
		waitConfig(t, ns, naming.ChainConfigMap("long"), func(c *limiterconfig.Config) error {
			if len(c.Chain.Entries) != 16 || len(c.Providers) != 1 {
				return fmt.Errorf("%d entries, %d providers", len(c.Chain.Entries), len(c.Providers))
			}
			return nil
		})
	})
	t.Run("everything missing", func(t *testing.T) {
		c := fallbackChain(ns, "dangling", entrySpec{"nope", "m", "nopolicy"}, entrySpec{"nope", "m2", ""})
		create(t, c)
		cond := waitCondition(t, c, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonProviderQuotaNotFound)
		for _, want := range []string{`ProviderQuota "nope" not found (spec.entries[0], spec.entries[1])`, `CircuitPolicy "nopolicy" not found (spec.entries[0])`} {
			if !strings.Contains(cond.Message, want) {
				t.Errorf("message %q lacks %q", cond.Message, want)
			}
		}
		waitCondition(t, c, quotav1alpha1.ConditionConfigRendered, metav1.ConditionFalse, quotav1alpha1.ReasonReferencesUnresolved)
		if c.Status.ConfigMapName != "" {
			t.Errorf("configMapName %q with nothing rendered", c.Status.ConfigMapName)
		}
	})
	t.Run("a queue that never waits", func(t *testing.T) {
		q := providerQuota(ns, "nowait", "k", 10, "")
		q.Spec.Queue = quotav1alpha1.QueueSpec{MaxWait: &metav1.Duration{}, MaxDepth: ptr.To[int32](0)}
		c := fallbackChain(ns, "nowait", entrySpec{"nowait", "m", ""}, entrySpec{"waits", "m", ""})
		create(t, q, providerQuota(ns, "waits", "k", 10, ""), c)
		waitReady(t, c)
		waitConfig(t, ns, naming.ChainConfigMap("nowait"), func(c *limiterconfig.Config) error {
			if c.Queue == nil || *c.Queue != (limiterconfig.Queue{}) {
				return fmt.Errorf("queue %+v: want an explicit never-wait queue {0s, 0}", c.Queue)
			}
			return nil
		})
	})
}
