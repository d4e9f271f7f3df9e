package adversarial

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
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

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
	"github.com/aiquota/aiquota/test/harness"
)

// freePort is a loopback port free at the time of asking.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

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
	controlPort, metricsPort := freePort(t), freePort(t)
	mgr, err := harness.Start("manager", b["manager"], []string{
		"--kubeconfig", kubeconfig,
		"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(metricsPort), "--metrics-secure=false",
		"--health-probe-bind-address", "127.0.0.1:0",
		"--webhook-port", strconv.Itoa(freePort(t)),
		"--cert-dir", t.TempDir(), "--cert-webhook-config", "",
		"--control-bind-address", "127.0.0.1:" + strconv.Itoa(controlPort),
		"--control-cert-dir", certDir,
	}, []string{"POD_NAMESPACE=aiquota-system"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgr.Stop(30 * time.Second) })
	if _, err := mgr.WaitFor(regexp.MustCompile(`control channel listening`), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	return &manager{c: env.Client, cs: cs, ca: ca, caFile: filepath.Join(certDir, "ca.crt"),
		controlURL: fmt.Sprintf("https://127.0.0.1:%d%s", controlPort, hubapi.Path),
		metricsURL: "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"}
}
