package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
)

var (
	env       *testenv.Env
	clientset *kubernetes.Clientset
)

// apiServer is started by the first test that needs it (requireEnv): the pure tests
// and the fuzz workers (each a process of its own) never pay for it.
var apiServer = testenv.Lazy[*testenv.Env]{
	Start: func() (*testenv.Env, error) {
		e, err := testenv.Start()
		if err != nil {
			return nil, err
		}
		cs, err := kubernetes.NewForConfig(e.Config)
		if err != nil {
			_ = e.Stop()
			return nil, fmt.Errorf("clientset for the API server: %w", err)
		}
		env, clientset = e, cs
		return e, nil
	},
	Stop: (*testenv.Env).Stop,
}

// requireEnv sets env and clientset, starting the API server on first use.
func requireEnv(t *testing.T) {
	t.Helper()
	apiServer.Get(t)
}

func TestMain(m *testing.M) { apiServer.Main(m) }

// testCerts is a CA and a serving certificate for 127.0.0.1 and localhost.
type testCerts struct {
	dir   string // tls.crt, tls.key
	caPEM []byte
	pool  *x509.CertPool
}

func newTestCerts(t *testing.T) *testCerts {
	t.Helper()
	ca := testkit.MustCA(t, "aiquota test CA")
	c := &testCerts{dir: t.TempDir(), caPEM: ca.PEM, pool: ca.Pool}
	if err := ca.WriteServing(c.dir, "aiquota-control"); err != nil {
		t.Fatal(err)
	}
	return c
}

// logBuffer collects a logr sink's output, to check what the channel logs.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.buf.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 1})
}

// channel is a running manager with the control channel and nothing else.
type channel struct {
	*Channel
	url      string
	client   *http.Client
	registry *prometheus.Registry
	logs     *logBuffer
	stop     func()
	// ack is the last accepted report's answer.
	ack hubapi.Response
}

func startChannel(t *testing.T, certs *testCerts, mutate func(*Options)) *channel {
	t.Helper()
	requireEnv(t)
	logs := &logBuffer{}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Client.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan net.Addr, 1)
	reg := prometheus.NewRegistry()
	o := DefaultOptions()
	o.BindAddress = "127.0.0.1:0"
	o.CertDir = certs.dir
	o.StatusWriteInterval = time.Second
	o.Registerer = reg
	o.Ready = ready
	if mutate != nil {
		mutate(&o)
	}
	ch, err := SetupWithManager(mgr, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("manager stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the control channel did not start listening")
	}
	// It answers reports once this replica leads (at once without leader
	// election, but only after the manager has started its leader's runnables).
	select {
	case <-mgr.Elected():
	case <-time.After(60 * time.Second):
		t.Fatal("the manager did not start leading")
	}
	c := &channel{
		Channel: ch, url: "https://" + addr.String() + hubapi.Path, registry: reg, logs: logs,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.pool}}},
	}
	var once sync.Once
	c.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("manager: %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Error("manager did not stop")
			}
		})
	}
	t.Cleanup(c.stop)
	return c
}

// post sends body with token (none when empty) and returns the status and the
// decoded error body (zero when accepted).
func (c *channel) post(t *testing.T, token string, body []byte, contentType string) (int, hubapi.ErrorBody) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", c.url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb hubapi.ErrorBody
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(b, &eb); err != nil {
			t.Fatalf("status %d with a body that is not an error JSON: %q", resp.StatusCode, b)
		}
		return resp.StatusCode, eb
	}
	var ack hubapi.Response
	if err := json.Unmarshal(b, &ack); err != nil || ack.SchemaVersion != hubapi.SchemaVersion {
		t.Fatalf("accepted with a body that is not a response: %q", b)
	}
	c.ack = ack
	return resp.StatusCode, eb
}

func (c *channel) sendReport(t *testing.T, token string, r *hubapi.Report) (int, hubapi.ErrorBody) {
	t.Helper()
	b, err := hubapi.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return c.post(t, token, b, hubapi.ContentType)
}

// counterValue reads a counter or gauge with the given labels from the registry.
func (c *channel) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := c.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func newNamespace(t *testing.T) string {
	t.Helper()
	requireEnv(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "control-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// newPod creates a ServiceAccount and a Pod using it (pending: no kubelet runs),
// with the webhook's record of an injection for ProviderQuota "openai".
func newPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	return newPodWith(t, ns, name, injectedFor(t, hubapi.KindProviderQuota, "openai"))
}

// newPodWith creates a ServiceAccount and a Pod using it with annotations.
func newPodWith(t *testing.T, ns, name string, annotations map[string]string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sa-" + name}}
	if err := env.Client.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa.Name,
			Containers:         []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
		},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// injectedFor is the aiquota.dev/injected annotation the webhook writes for a pod
// injected for the chain or quota kind/name (injection.Summary, so the hub reads what
// the webhook really writes).
func injectedFor(t *testing.T, kind, name string) map[string]string {
	t.Helper()
	s := injection.Summary{Version: injection.SummaryVersion, Mode: injection.ModeNativeSidecar, Image: "example.invalid/limiter:1", Port: 8787, AdminPort: 8788, Secrets: []string{"keys"}}
	if kind == hubapi.KindFallbackChain {
		s.FallbackChain, s.ConfigMap = name, naming.ChainConfigMap(name)
	} else {
		s.ProviderQuota, s.ConfigMap = name, naming.QuotaConfigMap(name)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{naming.AnnotationInject: "true", naming.AnnotationInjected: string(b)}
}

// tokenFor requests a token for the pod's ServiceAccount with audience, bound to
// boundTo (nil: not bound to any pod).
func tokenFor(t *testing.T, pod *corev1.Pod, audience string, boundTo *corev1.Pod) string {
	t.Helper()
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{audience}, ExpirationSeconds: ptr(int64(3600)),
	}}
	if boundTo != nil {
		tr.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: boundTo.Name, UID: boundTo.UID}
	}
	out, err := clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(context.Background(), pod.Spec.ServiceAccountName, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	return out.Status.Token
}

func podToken(t *testing.T, pod *corev1.Pod) string {
	return tokenFor(t, pod, naming.TokenAudience, pod)
}

// eventsIn lists the Events in ns as kind/name:reason of the object each regards.
func eventsIn(t *testing.T, ns string) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range list.Items {
		seen = append(seen, e.Regarding.Kind+"/"+e.Regarding.Name+":"+e.Reason)
	}
	return seen
}

func createQuota(t *testing.T, ns string) {
	t.Helper()
	pq := &quotav1alpha1.ProviderQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "openai"},
		Spec: quotav1alpha1.ProviderQuotaSpec{
			Provider:    quotav1alpha1.ProviderOpenAI,
			Credentials: []quotav1alpha1.SecretKeyRef{{Name: "openai", Key: "api-key"}},
			Limits:      quotav1alpha1.QuotaLimits{RequestsPerMinute: 100, TokensPerMinute: 10000},
		},
	}
	if err := env.Client.Create(context.Background(), pq); err != nil {
		t.Fatal(err)
	}
}

func createChain(t *testing.T, ns, name string, entries ...quotav1alpha1.ChainEntry) {
	t.Helper()
	fc := &quotav1alpha1.FallbackChain{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: quotav1alpha1.FallbackChainSpec{Entries: entries}}
	if err := env.Client.Create(context.Background(), fc); err != nil {
		t.Fatal(err)
	}
}

func createPolicy(t *testing.T, ns, name string) {
	t.Helper()
	cp := &quotav1alpha1.CircuitPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := env.Client.Create(context.Background(), cp); err != nil {
		t.Fatal(err)
	}
}

func getQuota(t *testing.T, ns string) quotav1alpha1.ProviderQuota {
	t.Helper()
	var pq quotav1alpha1.ProviderQuota
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "openai"}, &pq); err != nil {
		t.Fatal(err)
	}
	return pq
}

// eventuallyQuota waits until the "openai" quota's status in ns is as want says.
func eventuallyQuota(t *testing.T, ns, what string, want func(quotav1alpha1.ProviderQuotaStatus) bool) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, what, testkit.Stated(func() (bool, string) {
		st := getQuota(t, ns).Status
		return want(st), fmt.Sprintf("%+v", st)
	}))
}

// podReport is a valid report from pod about the resource src, with one pool of
// usage; boot is fresh unless bootAt says otherwise.
func podReport(pod *corev1.Pod, src hubapi.Config, seq uint64, bootID string, bootAt time.Time, requests, tokens int64) *hubapi.Report {
	now := time.Now().UTC()
	return &hubapi.Report{
		SchemaVersion:  hubapi.SchemaVersion,
		Pod:            hubapi.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)},
		Boot:           hubapi.Boot{ID: bootID, StartedAt: bootAt},
		Seq:            seq,
		SentAt:         now,
		ReportInterval: hubapi.Duration(time.Second),
		Config:         src,
		Accounts: []hubapi.Account{{
			Provider: "openai", Pool: "gpt-4o", Key: "openai/api-key", Throttle: 1,
			Counters: hubapi.Counters{Requests: requests, InputTokens: tokens},
			Limits:   hubapi.Limits{RequestsPerMinute: 100, TokensPerMinute: 10000},
		}},
	}
}
