package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
	"github.com/aiquota/aiquota/test/harness"
)

// TestManagerWatchesOnlyItsNamespaces runs the manager binary as the chart's
// watchNamespaces installs it: a quota in a watched namespace gets its rendered
// ConfigMap and status; one in another namespace, created first, gets neither.
func TestManagerWatchesOnlyItsNamespaces(t *testing.T) {
	root := testenv.Root()
	work := t.TempDir()
	bins, err := harness.Build(t.Context(), root, work, "./cmd/manager")
	if err != nil {
		t.Fatal(err)
	}
	env := startAPIServer(t)
	kubeconfig, err := env.WriteKubeconfig(work)
	if err != nil {
		t.Fatal(err)
	}
	c := env.Client
	quota := func(ns string) []client.Object {
		return []client.Object{
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keys"}, StringData: map[string]string{"api-key": "sk-test"}},
			&quotav1alpha1.ProviderQuota{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "openai"},
				Spec: quotav1alpha1.ProviderQuotaSpec{
					Provider: quotav1alpha1.ProviderOpenAI, Endpoint: "http://127.0.0.1:1",
					Credentials: []quotav1alpha1.SecretKeyRef{{Name: "keys", Key: "api-key"}},
					Limits:      quotav1alpha1.QuotaLimits{RequestsPerMinute: 60},
				},
			},
		}
	}
	mustCreateStatus(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "aiquota-system"}})
	mustCreateStatus(t, c, quota("team-ignored")...)
	mustCreateStatus(t, c, quota("team-a")...)

	mgr := harness.StartTest(t, "manager", bins["manager"], []string{
		"--kubeconfig", kubeconfig, "--watch-namespaces", "team-a,team-b",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "127.0.0.1:0",
		"--webhook-port", strconv.Itoa(harness.FreePorts(1)[0]),
		"--cert-dir", t.TempDir(), "--cert-webhook-config", "",
		"--control-bind-address", "0",
	}, []string{"POD_NAMESPACE=aiquota-system"}, 30*time.Second)
	mgr.MustWaitFor(t, regexp.MustCompile(`starting manager`), 2*time.Minute)

	rendered := func(ns string) error {
		var cm corev1.ConfigMap
		return c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: naming.QuotaConfigMap("openai")}, &cm)
	}
	testkit.Eventually(t, 2*time.Minute, "the watched quota's ConfigMap", func() error { return rendered("team-a") })
	// A quota created in a watched namespace after the manager started is seen too.
	mustCreateStatus(t, c, quota("team-b")...)
	testkit.Eventually(t, 2*time.Minute, "the quota created later in a watched namespace", func() error { return rendered("team-b") })

	// By now a manager watching everything would have rendered the first quota
	// created; this one must have been left alone.
	if err := rendered("team-ignored"); !apierrors.IsNotFound(err) {
		t.Errorf("the quota in an unwatched namespace: ConfigMap lookup %v, want not found", err)
	}
	var pq quotav1alpha1.ProviderQuota
	getStatus(t, c, "team-ignored", "openai", &pq)
	if pq.Status.ObservedGeneration != 0 || len(pq.Status.Conditions) != 0 {
		t.Errorf("the quota in an unwatched namespace has status %+v, want none", pq.Status)
	}
	if logs := mgr.Logs(); strings.Contains(logs, "team-ignored") {
		t.Errorf("the manager logged about the unwatched namespace:\n%s", logs)
	}
}
