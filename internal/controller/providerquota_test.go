package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/render"
	"github.com/aiquota/aiquota/internal/testkit"
)

func TestProviderQuotaLifecycle(t *testing.T) {
	ns := newNamespace(t)
	create(t, secret(ns, "openai-key", "api-key"), policy(ns, "standard", 5))
	q := providerQuota(ns, "openai", "openai-key", 100, "standard")
	create(t, q)
	waitReady(t, q)
	for _, typ := range []string{quotav1alpha1.ConditionReferencesResolved, quotav1alpha1.ConditionConfigRendered} {
		waitCondition(t, q, typ, metav1.ConditionTrue, map[string]string{
			quotav1alpha1.ConditionReferencesResolved: quotav1alpha1.ReasonResolved,
			quotav1alpha1.ConditionConfigRendered:     quotav1alpha1.ReasonRendered,
		}[typ])
	}
	cmName := naming.QuotaConfigMap("openai")
	if q.Status.Endpoint != "https://api.openai.com" || q.Status.ConfigMapName != cmName {
		t.Errorf("status endpoint %q configMapName %q, want the default endpoint and %s", q.Status.Endpoint, q.Status.ConfigMapName, cmName)
	}

	cm, cfg := waitConfig(t, ns, cmName, anyConfig)
	checkOwnedConfigMap(t, cm, q, "providerquota")
	want := &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion,
		Source:        limiterconfig.Source{Kind: "ProviderQuota", Namespace: ns, Name: "openai", Generation: 1},
		Providers: []limiterconfig.Provider{{
			Name: "openai", Type: "openai", Endpoint: "https://api.openai.com",
			Keys:                []limiterconfig.Key{{ID: "openai-key/api-key", File: "/var/run/aiquota/keys/openai-key/api-key"}},
			Limits:              limiterconfig.Limits{RequestsPerMinute: 100, TokensPerMinute: 100000},
			Models:              []limiterconfig.ModelPool{{Names: []string{"gpt-5.5"}}, {Names: []string{"gpt-4.1-mini"}}},
			UnlistedModels:      limiterconfig.UnlistedShareAccountLimits,
			SafetyMarginPercent: 2, LearnFromHeaders: true, Policy: "standard",
		}},
		Policies: []limiterconfig.Policy{namedDefaultPolicy("standard")},
		Queue:    ptr.To(limiterconfig.DefaultQueue()),
		Control: &limiterconfig.Control{
			URL: controlTo, TokenFile: naming.TokenPath(), CAFile: naming.CAPath(), ReportInterval: limiterconfig.Duration(render.DefaultReportInterval),
		},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("rendered config (-want +got):\n%s", diff)
	}
	waitEvent(t, q, corev1.EventTypeNormal, eventReady, cmName)
	waitEvent(t, q, corev1.EventTypeNormal, eventConfigRendered, cmName)

	// A change of limits re-renders, under the new generation.
	firstHash := configHash(cm)
	update(t, q, func(q *quotav1alpha1.ProviderQuota) { q.Spec.Limits.RequestsPerMinute = 250 })
	cm, _ = waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
		if got := c.Providers[0].Limits.RequestsPerMinute; got != 250 {
			return fmt.Errorf("requestsPerMinute %d", got)
		}
		return nil
	})
	waitReady(t, q)
	if configHash(cm) == firstHash {
		t.Error("config hash did not change with the config")
	}
	waitEvent(t, q, corev1.EventTypeNormal, eventConfigRendered, "was "+shortHash(firstHash))
	if n := recorded.count(q, eventReady); n != 1 {
		t.Errorf("Ready announced %d times, want once (events: %v)", n, recorded.reasons(q))
	}

	// An endpoint change shows in status.
	update(t, q, func(q *quotav1alpha1.ProviderQuota) { q.Spec.Endpoint = "https://openai.internal.example" })
	testkit.Eventually(t, waitTimeout, "status.endpoint follows spec.endpoint", func() error {
		waitReady(t, q)
		if q.Status.Endpoint != "https://openai.internal.example" {
			return fmt.Errorf("status.endpoint %q", q.Status.Endpoint)
		}
		return nil
	})
}

func namedDefaultPolicy(name string) limiterconfig.Policy {
	p := limiterconfig.DefaultPolicy()
	p.Name = name
	p.FailureOn = []string{"connectionError", "serverError", "timeout", "unavailable"}
	return p
}

func checkOwnedConfigMap(t *testing.T, cm *corev1.ConfigMap, owner metav1.Object, forKind string) {
	t.Helper()
	if !metav1.IsControlledBy(cm, owner) {
		t.Errorf("ConfigMap %s is not controlled by %s: %v", cm.Name, owner.GetName(), cm.OwnerReferences)
	}
	if got := cm.Labels[naming.LabelConfigFor]; got != forKind {
		t.Errorf("label %s=%q, want %q", naming.LabelConfigFor, got, forKind)
	}
	if got := cm.Labels[naming.LabelManagedBy]; got != naming.ManagedBy {
		t.Errorf("label %s=%q, want %q", naming.LabelManagedBy, got, naming.ManagedBy)
	}
	if got, want := cm.Annotations[naming.AnnotationConfigHash], render.Hash([]byte(cm.Data[naming.ConfigKey])); got != want {
		t.Errorf("hash annotation %q, want the SHA-256 of limiter.json %q", got, want)
	}
	ca, err := readCABundle(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data[naming.CAKey] != string(ca) {
		t.Errorf("ca.crt is not the configured CA bundle")
	}
}

func TestProviderQuotaSecrets(t *testing.T) {
	ns := newNamespace(t)
	q := providerQuota(ns, "q", "key", 10, "")
	create(t, q)

	// Missing Secret: not Ready, but the config renders (pods wait for the Secret).
	c := waitCondition(t, q, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonSecretNotFound)
	if !strings.Contains(c.Message, `Secret "key" not found`) {
		t.Errorf("Ready message %q does not name the Secret", c.Message)
	}
	waitCondition(t, q, quotav1alpha1.ConditionReferencesResolved, metav1.ConditionFalse, quotav1alpha1.ReasonSecretNotFound)
	waitCondition(t, q, quotav1alpha1.ConditionConfigRendered, metav1.ConditionTrue, quotav1alpha1.ReasonRendered)
	waitConfig(t, ns, naming.QuotaConfigMap("q"), anyConfig)
	waitEvent(t, q, corev1.EventTypeWarning, quotav1alpha1.ReasonSecretNotFound, `Secret "key" not found`)

	// The Secret appears with another key: the key is missing.
	s := secret(ns, "key", "token")
	create(t, s)
	c = waitCondition(t, q, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonSecretKeyNotFound)
	if !strings.Contains(c.Message, `no key "api-key"`) || !strings.Contains(c.Message, "token") {
		t.Errorf("Ready message %q does not say which key is missing and which exist", c.Message)
	}

	// The key is added: Ready.
	update(t, s, func(s *corev1.Secret) { s.Data["api-key"] = []byte("sk-x") })
	waitReady(t, q)

	// The key is removed again, then the Secret is deleted.
	update(t, s, func(s *corev1.Secret) { delete(s.Data, "api-key") })
	waitCondition(t, q, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonSecretKeyNotFound)
	remove(t, s)
	waitCondition(t, q, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonSecretNotFound)
}

// TestSecretAppliedWithStringData: server-side apply of stringData leaves managed
// fields that cannot be trusted about data keys, so the key is presumed present.
func TestSecretAppliedWithStringData(t *testing.T) {
	ns := newNamespace(t)
	s := corev1ac.Secret("applied", ns).WithStringData(map[string]string{"other": "sk-x"})
	if err := k8s.Apply(context.Background(), s, client.FieldOwner("gitops")); err != nil {
		t.Fatal(err)
	}
	q := providerQuota(ns, "q", "applied", 10, "")
	create(t, q)
	waitReady(t, q)
}

// TestSecretMetadataHoldsNoKeyMaterial: the Secret lookup behind every credential
// check keeps no annotations, where kubectl apply keeps the whole manifest with its
// data, and still has the managed fields that the key check needs.
func TestSecretMetadataHoldsNoKeyMaterial(t *testing.T) {
	ns := newNamespace(t)
	s := secret(ns, "applied-by-kubectl", "api-key")
	s.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"api-key":"c2stc2VjcmV0"}}`}
	create(t, s)
	m, err := mgrDeps.secretMetadata(context.Background(), client.ObjectKeyFromObject(s))
	if err != nil {
		t.Fatal(err)
	}
	if m == nil {
		t.Fatal("the Secret was not found")
	}
	if len(m.Annotations) != 0 {
		t.Errorf("Secret metadata keeps annotations: %v", m.Annotations)
	}
	if len(m.ManagedFields) == 0 {
		t.Error("Secret metadata lost its managed fields, which the key check needs")
	}
	if missing, err := mgrDeps.secretMetadata(context.Background(), client.ObjectKey{Namespace: ns, Name: "absent"}); err != nil || missing != nil {
		t.Errorf("a missing Secret: %v, %v; want nil, nil", missing, err)
	}
}

func TestProviderQuotaPolicyReference(t *testing.T) {
	ns := newNamespace(t)
	create(t, secret(ns, "key", "api-key"))
	q := providerQuota(ns, "q", "key", 10, "strict")
	create(t, q)
	cmName := naming.QuotaConfigMap("q")

	// Policy missing: rendered with the built-in defaults, so that pods start.
	waitCondition(t, q, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonCircuitPolicyNotFound)
	c := waitCondition(t, q, quotav1alpha1.ConditionConfigRendered, metav1.ConditionTrue, quotav1alpha1.ReasonRenderedPartially)
	if !strings.Contains(c.Message, `CircuitPolicy "strict" not found`) || !strings.Contains(c.Message, "built-in circuit-breaker and retry defaults") {
		t.Errorf("ConfigRendered message %q", c.Message)
	}
	if q.Status.ConfigMapName != cmName {
		t.Errorf("configMapName %q, want %s", q.Status.ConfigMapName, cmName)
	}
	waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
		if len(c.Policies) != 0 || c.Providers[0].Policy != "" {
			return fmt.Errorf("policies %+v, provider policy %q; want the built-in defaults", c.Policies, c.Providers[0].Policy)
		}
		return nil
	})
	waitEvent(t, q, corev1.EventTypeWarning, quotav1alpha1.ReasonRenderedPartially, `CircuitPolicy "strict" not found`)

	// The policy appears: rendered with it.
	p := policy(ns, "strict", 2)
	create(t, p)
	waitReady(t, q)
	waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
		if len(c.Policies) != 1 || c.Policies[0].FailureThreshold != 2 {
			return fmt.Errorf("policies %+v", c.Policies)
		}
		return nil
	})

	// A threshold change re-renders.
	update(t, p, func(p *quotav1alpha1.CircuitPolicy) { p.Spec.FailureThreshold = 7 })
	waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
		if c.Policies[0].FailureThreshold != 7 {
			return fmt.Errorf("threshold %d", c.Policies[0].FailureThreshold)
		}
		return nil
	})

	// Deleted: not Ready, and back to the built-in defaults until it returns.
	remove(t, p)
	waitCondition(t, q, quotav1alpha1.ConditionReady, metav1.ConditionFalse, quotav1alpha1.ReasonCircuitPolicyNotFound)
	waitCondition(t, q, quotav1alpha1.ConditionConfigRendered, metav1.ConditionTrue, quotav1alpha1.ReasonRenderedPartially)
	waitConfig(t, ns, cmName, func(c *limiterconfig.Config) error {
		if len(c.Policies) != 0 {
			return fmt.Errorf("policies %+v after the policy was deleted", c.Policies)
		}
		return nil
	})
	if q.Status.ConfigMapName != cmName {
		t.Errorf("configMapName %q, want %s", q.Status.ConfigMapName, cmName)
	}
	waitEvent(t, q, corev1.EventTypeWarning, quotav1alpha1.ReasonCircuitPolicyNotFound, `CircuitPolicy "strict" not found`)
}

func TestProviderQuotaConfigMapNameTaken(t *testing.T) {
	ns := newNamespace(t)
	create(t, secret(ns, "key", "api-key"))
	foreign := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: naming.QuotaConfigMap("q")},
		Data:       map[string]string{"app.conf": "mine"},
	}
	create(t, foreign)
	q := providerQuota(ns, "q", "key", 10, "")
	create(t, q)
	c := waitCondition(t, q, quotav1alpha1.ConditionConfigRendered, metav1.ConditionFalse, quotav1alpha1.ReasonRenderFailed)
	if !strings.Contains(c.Message, "not controlled by this ProviderQuota") {
		t.Errorf("message %q", c.Message)
	}
	if got := getConfigMap(t, ns, foreign.Name); got.Data["app.conf"] != "mine" || got.Data[naming.ConfigKey] != "" {
		t.Errorf("a ConfigMap we do not own was changed: %v", got.Data)
	}
}

// TestDeletingTheOwnedConfigMapRestoresIt: the ConfigMap is ours; deleting or editing
// it by hand is undone.
func TestDeletingTheOwnedConfigMapRestoresIt(t *testing.T) {
	ns := newNamespace(t)
	create(t, secret(ns, "key", "api-key"))
	q := providerQuota(ns, "q", "key", 10, "")
	create(t, q)
	waitReady(t, q)
	cmName := naming.QuotaConfigMap("q")
	cm, _ := waitConfig(t, ns, cmName, anyConfig)
	want := cm.Data[naming.ConfigKey]

	update(t, cm, func(cm *corev1.ConfigMap) { cm.Data[naming.ConfigKey] = "{}" })
	testkit.Eventually(t, waitTimeout, "hand edit undone", func() error {
		if got := getConfigMap(t, ns, cmName).Data[naming.ConfigKey]; got != want {
			return fmt.Errorf("limiter.json is %q", got)
		}
		return nil
	})
	old := getConfigMap(t, ns, cmName)
	remove(t, old)
	recreated, _ := waitConfig(t, ns, cmName, anyConfig)
	if recreated.UID == old.UID || recreated.Data[naming.ConfigKey] != want {
		t.Errorf("ConfigMap not recreated with the config")
	}
}

func TestRecheckSecrets(t *testing.T) {
	d := &deps{opts: Options{SecretRecheckInterval: time.Minute}}
	for _, tc := range []struct {
		name           string
		hasCredentials bool
		requeue        time.Duration
		lo, hi         time.Duration // want lo <= got < hi, or got == lo when hi is 0
	}{
		{"no credentials, nothing to retry", false, 0, 0, 0},
		{"no credentials keep their retry", false, 10 * time.Second, 10 * time.Second, 0},
		{"a sooner retry wins", true, 10 * time.Second, 10 * time.Second, 0},
		{"a recheck, spread", true, 0, 45 * time.Second, 75 * time.Second},
		{"a later retry waits for the recheck", true, 5 * time.Minute, 45 * time.Second, 75 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 50 {
				got := d.recheckSecrets(tc.hasCredentials, tc.requeue)
				seen[got] = true
				if tc.hi == 0 && got != tc.lo || tc.hi != 0 && (got < tc.lo || got >= tc.hi) {
					t.Fatalf("recheckSecrets(%v, %s) = %s", tc.hasCredentials, tc.requeue, got)
				}
			}
			if tc.hi != 0 && len(seen) < 2 {
				t.Errorf("50 rechecks all at %v: not spread", seen)
			}
		})
	}
}
