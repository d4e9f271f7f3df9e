package hub

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/naming"
)

// TestReportsOnlyFromInjectedPods: over the real TLS control channel, a pod the
// webhook never injected (it can still mint an aiquota.dev/control token for
// itself) or injected for another configuration is refused with the reason, and
// nothing it sent reaches the state or the status; the injected pod is accepted.
func TestReportsOnlyFromInjectedPods(t *testing.T) {
	certs := newTestCerts(t)
	ch := startChannel(t, certs, nil)
	ns := newNamespace(t)
	createQuota(t, ns)
	src := hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}

	cases := []struct {
		pod  *corev1.Pod
		want string
	}{
		{newPodWith(t, ns, "never-injected", nil), "has no aiquota.dev/injected annotation: the aiquota webhook never injected it"},
		{newPodWith(t, ns, "chain-pod", injectedFor(t, hubapi.KindFallbackChain, "chat")), "was injected for FallbackChain chat, not ProviderQuota openai"},
		{newPodWith(t, ns, "other-quota", injectedFor(t, hubapi.KindProviderQuota, "anthropic")), "was injected for ProviderQuota anthropic, not ProviderQuota openai"},
		{newPodWith(t, ns, "not-ours", map[string]string{naming.AnnotationInjected: `{"version":1,"fallbackChain":"chat","providerQuota":"openai"}`}), "not the webhook's record"},
	}
	for _, c := range cases {
		t.Run(c.pod.Name, func(t *testing.T) {
			token := podToken(t, c.pod)
			for seq := uint64(1); seq <= 2; seq++ {
				code, eb := ch.sendReport(t, token, podReport(c.pod, src, seq, "boot", time.Now(), 10, 1000))
				if code != http.StatusForbidden || eb.Error.Code != hubapi.CodeNotInjected || !strings.Contains(eb.Error.Message, c.want) {
					t.Fatalf("report %d: %d %+v; want 403 %s mentioning %q", seq, code, eb, hubapi.CodeNotInjected, c.want)
				}
			}
		})
	}
	if n := ch.Aggregator.ActiveSidecars(); n != 0 {
		t.Errorf("%d sidecars known after refused reports", n)
	}
	ch.Writer.Flush(context.Background())
	if st := getQuota(t, ns).Status; st.LastUpdated != nil || st.ActiveSidecars != 0 || st.TokensToday != 0 || st.RequestsToday != 0 {
		t.Errorf("status written from refused reports: %+v", st)
	}

	// A pod injected for the quota cannot write another quota's status through
	// the providers its report names.
	direct := newPod(t, ns, "direct")
	other := podReport(direct, src, 1, "boot", time.Now(), 10, 1000)
	other.Accounts[0].Provider = "anthropic"
	if code, eb := ch.sendReport(t, podToken(t, direct), other); code != http.StatusForbidden || eb.Error.Code != hubapi.CodeNotInjected ||
		!strings.Contains(eb.Error.Message, "is about ProviderQuota openai but names ProviderQuota anthropic") {
		t.Fatalf("a quota's report naming another quota: %d %+v", code, eb)
	}

	injected := newPod(t, ns, "injected")
	if code, eb := ch.sendReport(t, podToken(t, injected), podReport(injected, src, 1, "boot", time.Now(), 10, 1000)); code != http.StatusOK {
		t.Fatalf("the injected pod's report: %d %+v", code, eb)
	}
	eventuallyQuota(t, ns, "the injected pod's report in status", func(st quotav1alpha1.ProviderQuotaStatus) bool {
		return st.ActiveSidecars == 1 && st.TokensToday == 1000
	})
}

// TestInjectionCheckerLooksUpOncePerPod: a pod's record is read once per UID; a pod
// without one is read again only after a minute; the cache is bounded.
func TestInjectionCheckerLooksUpOncePerPod(t *testing.T) {
	ns := newNamespace(t)
	base, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	var gets atomic.Int32
	reader := interceptor.NewClient(base, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			gets.Add(1)
			return c.Get(ctx, key, obj, opts...)
		},
	})
	clk := newFakeClock(time.Now())
	c := NewInjectionChecker(reader, 2, clk.now)
	src := hubapi.Config{Kind: hubapi.KindProviderQuota, Namespace: ns, Name: "openai"}
	id := func(name string) Identity {
		p := newPod(t, ns, name)
		return Identity{Namespace: ns, PodName: p.Name, PodUID: string(p.UID)}
	}
	a, b := id("a"), id("b")
	never := newPodWith(t, ns, "never", nil)
	n := Identity{Namespace: ns, PodName: never.Name, PodUID: string(never.UID)}
	for range 5 {
		if err := c.Check(t.Context(), a, src); err != nil {
			t.Fatal(err)
		}
		if err := c.Check(t.Context(), n, src); !errors.Is(err, errNotInjected) {
			t.Fatalf("never-injected pod: %v", err)
		}
	}
	if g := gets.Load(); g != 2 {
		t.Fatalf("%d pod GETs for two pods checked five times, want 2", g)
	}
	clk.advance(2 * time.Minute)
	_ = c.Check(t.Context(), n, src)
	_ = c.Check(t.Context(), a, src)
	if g := gets.Load(); g != 3 {
		t.Fatalf("%d pod GETs; want 3: a pod without a record is read again after a minute, an injected one is not", g)
	}
	if err := c.Check(t.Context(), b, src); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 2 {
		t.Errorf("%d pods remembered, want the bound 2", c.Len())
	}
	// A pod of the same name but another UID (recreated) is not the token's pod.
	if err := c.Check(t.Context(), Identity{Namespace: ns, PodName: "a", PodUID: "another-uid"}, src); !errors.Is(err, errNotInjected) || !strings.Contains(err.Error(), "is another pod") {
		t.Errorf("another UID: %v", err)
	}
}
