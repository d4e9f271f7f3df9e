package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/render"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/test/harness"
)

// TestStatusFromRunningSidecar is the report half of the control channel end to
// end: the manager binary (its control channel on, with test certificates), the
// provider simulator, and the real limiter binary whose config (rendered by
// internal/render from the objects in the API server) reports to the manager with
// a TokenRequest token bound to its pod. Traffic goes through the limiter, a fault
// opens a breaker, and `kubectl get pq,fc,cbp` shows live utilisation, the active
// model and the open breaker. A manager restart keeps the day's token count.
func TestStatusFromRunningSidecar(t *testing.T) {
	root := testenv.Root()
	ctx := t.Context()
	work := t.TempDir()
	bins, err := harness.Build(ctx, root, work, "./cmd/manager", "./cmd/limiter", "./cmd/providersim")
	if err != nil {
		t.Fatal(err)
	}
	env, kubeconfig := startAPIServerAt(t, work)
	c := env.Client
	cs := kubernetes.NewForConfigOrDie(env.Config)

	// The provider simulator: one OpenAI account whose real limit (60 RPM, in its
	// rate-limit headers) is below what the ProviderQuota declares (100).
	const simKey = "sk-e2e-status-9c1d"
	simCfg := fmt.Sprintf(`{"seed":7,"accounts":[{"key":%q,"provider":"openai","limits":{"requestsPerMinute":60,"tokensPerMinute":200000},"latency":{"outputTokens":20}}]}`, simKey)
	if err := os.WriteFile(filepath.Join(work, "sim.json"), []byte(simCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sim := harness.StartTest(t, "providersim", bins["providersim"], []string{"--addr", "127.0.0.1:0", "--config", filepath.Join(work, "sim.json")}, nil, 10*time.Second)
	m := sim.MustWaitFor(t, regexp.MustCompile(`providersim listening.* addr=(\S+)`), time.Minute)
	simURL := "http://" + m[1]

	// The team's objects.
	ns := "team-status"
	mustCreateStatus(t, c,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "aiquota-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "openai-keys"}, StringData: map[string]string{"api-key": simKey}},
		&quotav1alpha1.ProviderQuota{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "openai-sim"},
			Spec: quotav1alpha1.ProviderQuotaSpec{
				Provider: quotav1alpha1.ProviderOpenAI, Endpoint: simURL, Tier: "tier-1",
				Credentials: []quotav1alpha1.SecretKeyRef{{Name: "openai-keys", Key: "api-key"}},
				Limits:      quotav1alpha1.QuotaLimits{RequestsPerMinute: 100, TokensPerMinute: 20000},
				// Listed, so that its pool, not the shared pool of unlisted models,
				// is what status.models names.
				Models: []quotav1alpha1.ModelPool{{Name: "gpt-4o"}},
			},
		},
		&quotav1alpha1.CircuitPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "strict"},
			Spec: quotav1alpha1.CircuitPolicySpec{
				FailureThreshold: 2,
				RecoveryTimeout:  &metav1.Duration{Duration: 10 * time.Minute},
				Retry:            quotav1alpha1.RetryPolicy{MaxRetries: ptrTo(int32(0))},
			},
		},
		&quotav1alpha1.FallbackChain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "chat"},
			Spec: quotav1alpha1.FallbackChainSpec{
				Entries: []quotav1alpha1.ChainEntry{
					{
						ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: "openai-sim"}, Model: "gpt-4o",
						CircuitPolicyRef: &quotav1alpha1.LocalObjectReference{Name: "strict"},
					},
					{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: "openai-sim"}, Model: "gpt-4o-mini"},
				},
				// Nothing here moves a request down the chain (no prompt is near a
				// context window), so the counts this test reads are exact: the
				// account-wide 500s and the open breaker's 503 come back to the app,
				// and a request that waits for the sidecar's first account lease
				// waits at gpt-4o. The chain walk has its own tests.
				FallbackOn: []quotav1alpha1.FailureKind{quotav1alpha1.FailureContextLengthExceeded},
			},
		},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "chat-app"}},
	)
	// The webhook's record of an injection for the chain: the hub accepts reports
	// only from pods it names the chain for (no webhook runs here).
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "chat-app-0", Annotations: injectedRecord(t, hubapi.KindFallbackChain, "chat")},
		Spec:       corev1.PodSpec{ServiceAccountName: "chat-app", Containers: []corev1.Container{{Name: "app", Image: "example.invalid/chat:1"}}},
	}
	mustCreateStatus(t, c, pod)

	// The manager, with the control channel on a free port and test certificates.
	certDir := statusCerts(t)
	controlPort, metricsPort := harness.FreePorts(1)[0], harness.FreePorts(1)[0]
	controlURL := fmt.Sprintf("https://127.0.0.1:%d%s", controlPort, hubapi.Path)
	managerArgs := append(harness.ControlManagerArgs(kubeconfig, certDir, t.TempDir(), controlPort, metricsPort),
		"--status-write-interval", "2s")
	startManager := func() *harness.Process {
		t.Helper()
		p, err := harness.Start("manager", bins["manager"], managerArgs, []string{"POD_NAMESPACE=aiquota-system"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.WaitFor(regexp.MustCompile(`control channel listening`), 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mgr := startManager()
	t.Cleanup(func() { _ = mgr.Stop(30 * time.Second) })

	// The sidecar's files, as the kubelet would mount them: the config rendered from
	// the objects, the key, the projected token (TokenRequest, audience
	// aiquota.dev/control, bound to the pod) and the CA.
	podDir := t.TempDir()
	var pq quotav1alpha1.ProviderQuota
	var fc quotav1alpha1.FallbackChain
	var cp quotav1alpha1.CircuitPolicy
	getStatus(t, c, ns, "openai-sim", &pq)
	getStatus(t, c, ns, "chat", &fc)
	getStatus(t, c, ns, "strict", &cp)
	cfg, err := render.Chain(&fc, []quotav1alpha1.ProviderQuota{pq}, []quotav1alpha1.CircuitPolicy{cp},
		render.Options{Control: &render.Control{URL: controlURL, ReportInterval: time.Second, WithCA: true}})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(podDir, "api-key")
	writeStatusFile(t, keyFile, []byte(simKey))
	cfg.Providers[0].Keys[0].File = keyFile
	cfg.Control.TokenFile = filepath.Join(podDir, "token")
	cfg.Control.CAFile = filepath.Join(certDir, "ca.crt")
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "chat-app", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{naming.TokenAudience}, ExpirationSeconds: ptrTo(int64(3600)),
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeStatusFile(t, cfg.Control.TokenFile, []byte(tr.Status.Token))
	doc, err := limiterconfig.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	configPath := filepath.Join(podDir, "limiter.json")
	writeStatusFile(t, configPath, doc)

	lim := harness.StartTest(t, "limiter", bins["limiter"], []string{"--config", configPath, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--drain-timeout", "5s"},
		[]string{"POD_NAME=" + pod.Name, "POD_NAMESPACE=" + ns, "POD_UID=" + string(pod.UID)}, 30*time.Second)
	lm := lim.MustWaitFor(t, regexp.MustCompile(`"msg":"listening".*"proxy":"([^"]+)"`), time.Minute)
	proxy := lm[1]

	// Traffic: 20 requests succeed.
	for i := range 20 {
		if code, body := statusChat(proxy, "gpt-4o"); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	// The provider fails: two 500s open the strict breaker; later calls are refused
	// by the open breaker without reaching the provider.
	faults, err := http.NewRequest(http.MethodPut, simURL+"/sim/faults?account=0", strings.NewReader(`{"errorRates":{"500":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(faults)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("set simulator faults: %v %v", err, resp)
	}
	resp.Body.Close()
	var codes []int
	for range 4 {
		code, _ := statusChat(proxy, "gpt-4o")
		codes = append(codes, code)
	}
	if codes[0] != 500 || codes[1] != 500 || codes[3] != 503 {
		t.Fatalf("responses after the fault: %v, want two 500s, then the open breaker's 503", codes)
	}

	// kubectl shows it all, shortly.
	kubectl := testenv.Kubectl()
	var shown string
	took := statusEventually(t, "kubectl get pq,fc,cbp to show utilisation and the open breaker", 2*time.Minute, func() error {
		tables, out := kubectlTable(t, kubectl, kubeconfig, "get", "pq,fc,cbp", "-n", ns, "-o", "wide")
		shown = out
		if len(tables) != 3 || len(tables[0]) != 1 || len(tables[1]) != 1 || len(tables[2]) != 1 {
			return fmt.Errorf("unexpected output:\n%s", out)
		}
		q, f, p := tables[0][0], tables[1][0], tables[2][0]
		// 22 requests reached the provider within the last minute (unless this
		// machine is slow enough for some to age out); its headers say the account
		// allows 60 a minute: 36% at most.
		rpm, _ := strconv.Atoi(q["RPM%"])
		getStatus(t, c, ns, "openai-sim", &pq)
		switch {
		case rpm <= 0 || rpm > 36 || q["SIDECARS"] != "1" || q["TOKENS TODAY"] == "" || q["TOKENS TODAY"] == "0":
			return fmt.Errorf("ProviderQuota row %v\n%s", q, out)
		case pq.Status.RequestsToday != 22:
			return fmt.Errorf("requestsToday %d, want all 22 upstream attempts", pq.Status.RequestsToday)
		case f["ACTIVE"] != "gpt-4o":
			return fmt.Errorf("FallbackChain row %v\n%s", f, out)
		case p["OPEN"] != "1":
			return fmt.Errorf("CircuitPolicy row %v\n%s", p, out)
		}
		return nil
	})
	t.Logf("kubectl showed the live state %s after the breaker opened:\n%s", took, shown)

	// The details behind the columns.
	getStatus(t, c, ns, "openai-sim", &pq)
	if ll := pq.Status.LearnedLimits; ll == nil || ll.RequestsPerMinute != 60 {
		t.Errorf("learnedLimits %+v, want requestsPerMinute 60 from the simulator's headers", ll)
	}
	if len(pq.Status.Models) != 1 || pq.Status.Models[0].Name != "gpt-4o" || pq.Status.Models[0].ServerErrors != 2 ||
		pq.Status.Models[0].RequestsPerMinute == nil || pq.Status.Models[0].RequestsPerMinute.Limit != 60 {
		t.Errorf("models %+v, want gpt-4o with the two 500s, against the learned limit of 60", pq.Status.Models)
	}
	if pq.Status.Day != time.Now().UTC().Format(time.DateOnly) {
		t.Errorf("day %q, want today", pq.Status.Day)
	}
	getStatus(t, c, ns, "strict", &cp)
	if len(cp.Status.Breakers) != 1 || cp.Status.Breakers[0].State != quotav1alpha1.BreakerOpen || cp.Status.Breakers[0].OpensLastHour != 1 ||
		cp.Status.Breakers[0].ProviderQuota != "openai-sim" || cp.Status.Breakers[0].Model != "gpt-4o" {
		t.Errorf("breakers %+v", cp.Status.Breakers)
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	statusEventually(t, "the manager's metrics", time.Minute, func() error {
		v, err := statusScrape(metricsURL, `aiquota_manager_breaker_state{model="gpt-4o",namespace="`+ns+`",quota="openai-sim"}`)
		if err != nil || v != "1" {
			return fmt.Errorf("breaker_state %q: %w", v, err)
		}
		return nil
	})

	// A manager restart keeps the day's token count: the new one continues from
	// the status, and the sidecar's totals are not counted twice.
	tokensBefore := pq.Status.TokensToday
	if err := mgr.Stop(30 * time.Second); err != nil {
		t.Fatalf("manager stop: %v", err)
	}
	restartedAt := metav1.Now()
	mgr = startManager()
	statusEventually(t, "a status write by the restarted manager", 2*time.Minute, func() error {
		getStatus(t, c, ns, "openai-sim", &pq)
		if pq.Status.LastUpdated == nil || pq.Status.LastUpdated.Before(&restartedAt) {
			// Writes happen when something changed; the breaker's requests age
			// out of the last minute, so one comes.
			return fmt.Errorf("lastUpdated %v", pq.Status.LastUpdated)
		}
		return nil
	})
	if pq.Status.TokensToday != tokensBefore {
		t.Errorf("tokensToday after the restart %d, want %d", pq.Status.TokensToday, tokensBefore)
	}
	resp, err = http.DefaultClient.Do(mustRequest(t, http.MethodPut, simURL+"/sim/faults?account=0", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// New traffic, to the chain's second entry (the first's breaker stays open),
	// adds to the same count.
	for i := range 3 {
		if code, body := statusChat(proxy, "gpt-4o-mini"); code != 200 {
			t.Fatalf("request %d after the restart: %d %s", i, code, body)
		}
	}
	statusEventually(t, "tokensToday to grow from where it was", time.Minute, func() error {
		getStatus(t, c, ns, "openai-sim", &pq)
		if pq.Status.TokensToday <= tokensBefore || pq.Status.RequestsToday != 25 {
			return fmt.Errorf("tokensToday %d (before %d), requestsToday %d (want 25)", pq.Status.TokensToday, tokensBefore, pq.Status.RequestsToday)
		}
		return nil
	})

	// The sidecar stops: its final report takes it out of activeSidecars at once.
	if err := lim.Stop(30 * time.Second); err != nil {
		t.Fatalf("limiter stop: %v\n%s", err, lim.Logs())
	}
	statusEventually(t, "activeSidecars 0 after the sidecar's final report", time.Minute, func() error {
		getStatus(t, c, ns, "openai-sim", &pq)
		if pq.Status.ActiveSidecars != 0 {
			return fmt.Errorf("activeSidecars %d", pq.Status.ActiveSidecars)
		}
		return nil
	})
	for _, p := range []*harness.Process{mgr, lim} {
		if strings.Contains(p.Logs(), tr.Status.Token) || strings.Contains(p.Logs(), simKey) {
			t.Errorf("%s logged a secret", p.Name)
		}
	}
	if strings.Contains(lim.Logs(), "control channel report failed") && !strings.Contains(lim.Logs(), "control channel reports resumed") {
		t.Errorf("the limiter's reports failed and never resumed:\n%s", lim.Logs())
	}
}

func mustCreateStatus(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

func getStatus(t testing.TB, c client.Client, ns, name string, obj client.Object) {
	t.Helper()
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatal(err)
	}
}

func writeStatusFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func ptrTo[T any](v T) *T { return &v }

// injectedRecord is the aiquota.dev/injected annotation the webhook writes on a pod
// it injected for the FallbackChain or ProviderQuota kind/name.
func injectedRecord(t testing.TB, kind, name string) map[string]string {
	t.Helper()
	s := injection.Summary{Version: injection.SummaryVersion, Mode: injection.ModeNativeSidecar, Port: naming.DefaultPort, AdminPort: naming.AdminPort, Secrets: []string{}}
	if kind == hubapi.KindFallbackChain {
		s.FallbackChain, s.ConfigMap = name, naming.ChainConfigMap(name)
	} else {
		s.ProviderQuota, s.ConfigMap = name, naming.QuotaConfigMap(name)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{naming.AnnotationInjected: string(b)}
}
