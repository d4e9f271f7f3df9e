package adversarial

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/render"
	"github.com/aiquota/aiquota/internal/simulator"
)

// A sidecar restarted mid-day does not get the day's cap afresh: the restarted
// limiter learns from the manager what the account used today and lets through
// only the remainder. Real processes: the manager against an API server, the
// limiter as the webhook would configure it for a pod (rendered config, a
// projected token bound to the pod, the control channel's CA), the simulator as
// the provider, which counts what reached it.
func TestDailyCapSurvivesALimiterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server, the manager, the limiter and the simulator")
	}
	// It fails today (8 requests reach the provider under a cap of 5): the account
	// of the unlisted-models pool is created at the first request, after the
	// restarted limiter's first report (no accounts) marked the day known, so the
	// manager's count for it is never restored. A quota with a listed pool instead
	// fails closed for good. Issue 8's report says more; unskip with the fix.
	t.Skip("known failure: a restarted limiter's daily cap on the unlisted pool starts from zero")
	const limit, before, after = 5, 3, 5
	m := startManager(t)
	acct := simulator.Account{Key: simKey, Provider: "openai", Limits: simulator.Limits{RequestsPerMinute: 100000}}
	acct.Latency.OutputTokens = 5
	simURL := startSim(t, acct)

	const ns = "team-restart"
	summary, err := json.Marshal(injection.Summary{Version: injection.SummaryVersion, Mode: injection.ModeNativeSidecar,
		ProviderQuota: "openai-sim", ConfigMap: naming.QuotaConfigMap("openai-sim"), Port: naming.DefaultPort, AdminPort: naming.AdminPort, Secrets: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	pq := &quotav1alpha1.ProviderQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "openai-sim"},
		Spec: quotav1alpha1.ProviderQuotaSpec{
			Provider: quotav1alpha1.ProviderOpenAI, Endpoint: simURL, Tier: "tier-1",
			Credentials: []quotav1alpha1.SecretKeyRef{{Name: "openai-keys", Key: "api-key"}},
			Limits:      quotav1alpha1.QuotaLimits{RequestsPerMinute: 1000, RequestsPerDay: limit},
		},
	}
	// The webhook's record of an injection: the manager takes reports only from
	// pods it names the quota for (no webhook runs here).
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-0", Annotations: map[string]string{naming.AnnotationInjected: string(summary)}},
		Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "openai-keys"}, StringData: map[string]string{"api-key": simKey}},
		pq, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}, pod,
	} {
		if err := m.c.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}

	// The pod's files, as the kubelet would mount them.
	cfg, err := render.Quota(pq, nil, render.Options{Control: &render.Control{URL: m.controlURL, ReportInterval: time.Second, WithCA: true}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg.Providers[0].Keys[0].File = filepath.Join(dir, "api-key")
	cfg.Control.TokenFile = filepath.Join(dir, "token")
	cfg.Control.CAFile = m.caFile
	// A request past the cap waits the queue's maxWait before its 429; the first
	// requests after a start wait up to a second for the manager's answer.
	cfg.Queue = &limiterconfig.Queue{MaxWait: limiterconfig.Duration(3 * time.Second), MaxDepth: 100}
	tr, err := m.cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), "app", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:      []string{naming.TokenAudience},
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for path, content := range map[string]string{cfg.Providers[0].Keys[0].File: simKey, cfg.Control.TokenFile: tr.Status.Token} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := writeConfig(t, cfg)
	podEnv := []string{"POD_NAME=" + pod.Name, "POD_NAMESPACE=" + ns, "POD_UID=" + string(pod.UID)}

	first := startLimiter(t, cfgPath, podEnv, nil)
	first.sim = simURL
	for i := range before {
		if st := first.chat("gpt-4o"); st != 200 {
			t.Fatalf("request %d before the restart: status %d\n%s", i, st, first.limiter.Logs())
		}
	}
	// Mid-day: the manager has counted them.
	eventually(t, "the manager to count the requests", func() bool {
		return scrape(t, m.metricsURL, "aiquota_manager_quota_requests_today", `quota="openai-sim"`) == before
	})
	if err := first.limiter.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop the limiter: %v", err)
	}
	second := startLimiter(t, cfgPath, podEnv, nil)
	second.sim = simURL
	byStatus := map[int]int{}
	for range after {
		byStatus[second.chat("gpt-4o")]++
	}
	up := second.upstreamRequests()
	t.Logf("%d requests, a restart, %d more: statuses after it %v; the provider received %d (cap %d)", before, after, byStatus, up, limit)
	if up > limit {
		t.Errorf("the provider received %d requests today, above the daily cap of %d", up, limit)
	}
	if byStatus[200] > limit-before {
		t.Errorf("the restarted limiter let %d requests through, more than the %d left today", byStatus[200], limit-before)
	}
}
