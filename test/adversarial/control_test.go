package adversarial

import (
	"crypto/tls"
	"encoding/base64"
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
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
	"github.com/aiquota/aiquota/test/harness"
)

// unsignedJWT is a token shaped like a service account's, with claims but no valid
// signature.
func unsignedJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"x"}`)) + "." + enc([]byte(claims)) + "." + enc([]byte("not-a-signature"))
}

// Tokens that cannot be a sidecar's (garbage, JWT-shaped but expired, a real
// token for another audience) are refused at the manager's control channel with a
// 401 before any TokenReview: a hostile pod cannot turn the manager into a
// TokenReview amplifier against the API server. A real process: the manager
// binary against an API server, its control channel over TLS; the manager's own
// token_reviews_total says what reached the API server, and a real token for the
// channel's audience shows that it counts.
func TestBadTokensAtTheControlChannelNeverReachTokenReview(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server and the manager")
	}
	m := startManager(t)
	cs := m.cs
	const ns = "default"
	sa, err := cs.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "hostile"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := func(audience string) string {
		t.Helper()
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), sa.Name, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	now := time.Now()
	bad := []string{
		"not-a-token", "a.b.c", "..", strings.Repeat("x", 64<<10),
		unsignedJWT(fmt.Sprintf(`{"aud":[%q],"exp":%d}`, naming.TokenAudience, now.Add(-time.Minute).Unix())), // expired
		unsignedJWT(fmt.Sprintf(`{"aud":["https://kubernetes.default.svc"],"exp":%d}`, now.Add(time.Hour).Unix())),
		token("https://kubernetes.default.svc"), // real, for another audience
	}
	for i := range 30 {
		bad = append(bad, fmt.Sprintf("garbage-%d", i))
	}

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: m.ca.Pool}}}
	report := func(bearer string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, m.controlURL, strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, tok := range bad {
		if st := report(tok); st != http.StatusUnauthorized {
			t.Errorf("bad token %d: status %d, want 401", i, st)
		}
	}
	metricsURL := m.metricsURL
	const reviews = "aiquota_manager_control_token_reviews_total"
	reviewed := func() float64 {
		return scrape(t, metricsURL, reviews, `result="authenticated"`) + scrape(t, metricsURL, reviews, `result="refused"`) +
			scrape(t, metricsURL, reviews, `result="error"`)
	}
	prefiltered := scrape(t, metricsURL, reviews, `result="prefiltered"`)
	t.Logf("%d bad tokens: %v prefiltered, %v TokenReviews", len(bad), prefiltered, reviewed())
	if n := reviewed(); n != 0 {
		t.Errorf("%v TokenReviews for %d bad tokens, want none", n, len(bad))
	}
	if prefiltered != float64(len(bad)) {
		t.Errorf("%v tokens prefiltered, want all %d", prefiltered, len(bad))
	}
	// A real token for the channel's audience is reviewed (and counted): the zero
	// above is not a counter that never moves. The report itself is refused, as the
	// service account runs no injected pod.
	st := report(token(naming.TokenAudience))
	if n := reviewed(); n != 1 {
		t.Errorf("%v TokenReviews after a real token (status %d), want 1", n, st)
	}
}

// manager is a running manager binary with its control channel, against an API
// server of its own.
type manager struct {
	c          client.Client
	cs         kubernetes.Interface
	ca         *testkit.CA
	caFile     string // the CA that verifies the control channel, as a file
	controlURL string // the report endpoint
	metricsURL string
}

// startManager starts an API server and the manager with its control channel on
// loopback (test certificates) and plain-HTTP metrics.
func startManager(t *testing.T) *manager {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("needs an API server: KUBEBUILDER_ASSETS (make test-adversarial sets it)")
	}
	b := binaries(t)
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	dir := t.TempDir()
	kubeconfig, err := env.WriteKubeconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca := testkit.MustCA(t, "aiquota adversarial CA")
	certDir := t.TempDir()
	if err := ca.WriteServing(certDir, "aiquota-control"); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	// The manager keeps its webhook certificate in its own namespace.
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "aiquota-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	controlPort, metricsPort := harness.FreePorts(1)[0], harness.FreePorts(1)[0]
	mgr := harness.StartTest(t, "manager", b["manager"], harness.ControlManagerArgs(kubeconfig, certDir, t.TempDir(), controlPort, metricsPort),
		[]string{"POD_NAMESPACE=aiquota-system"}, 30*time.Second)
	mgr.MustWaitFor(t, regexp.MustCompile(`control channel listening`), 2*time.Minute)
	return &manager{c: env.Client, cs: cs, ca: ca, caFile: filepath.Join(certDir, "ca.crt"),
		controlURL: fmt.Sprintf("https://127.0.0.1:%d%s", controlPort, hubapi.Path),
		metricsURL: "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"}
}

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
	testkit.Eventually(t, time.Minute, "the manager to count the requests", testkit.True(func() bool {
		return scrape(t, m.metricsURL, "aiquota_manager_quota_requests_today", `quota="openai-sim"`) == before
	}))
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
