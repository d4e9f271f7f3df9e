package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/certs"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
	"github.com/aiquota/aiquota/test/harness"
)

// TestInjectedPodRunsTheLimiter is the injection path end to end, on a real API
// server, with the manager binary installed as config/default installs it (its
// ServiceAccount, RBAC, certificate Secret, webhook configuration and arguments):
//
//  1. the manager generates its certificate, injects the CA into the webhook
//     configuration and reports ready;
//  2. its reconcilers render the chain's ConfigMap;
//  3. an annotated pod created through the API server gets the sidecar;
//  4. a stand-in kubelet materialises the volumes the sidecar mounts (ConfigMap,
//     Secrets, a TokenRequest for the projected token) under a temporary root,
//     rewrites the container paths in the config consistently, and starts the
//     limiter binary with the spec's args and env;
//  5. the readiness probe of the spec turns ready, and the app's OPENAI_BASE_URL,
//     used by the official OpenAI SDK, reaches the provider simulator through it.
func TestInjectedPodRunsTheLimiter(t *testing.T) {
	injectAndRun(t, kustomize(t, testenv.Root()), true)
}

// TestHelmChartInjectedPodRunsTheLimiter: the same, installed by the Helm chart.
func TestHelmChartInjectedPodRunsTheLimiter(t *testing.T) {
	injectAndRun(t, helmTemplate(t, testenv.Root()), true)
}

// TestPlainContainerLimiterHoldsTheApp: on clusters before native sidecars
// (--limiter-native-sidecar=false) the limiter is the first plain container, and its
// postStart hook, run as the kubelet runs it, returns only once the limiter is ready.
func TestPlainContainerLimiterHoldsTheApp(t *testing.T) {
	injectAndRun(t, kustomize(t, testenv.Root()), false)
}

// injectAndRun runs the manager as an installation (config/default or the chart)
// deploys it, with its arguments and as its ServiceAccount, injects a pod, starts the
// limiter from the injected spec and sends an official SDK request through it.
func injectAndRun(t *testing.T, install installation, nativeSidecar bool) {
	root := testenv.Root()
	ctx := t.Context()
	bins, err := harness.Build(ctx, root, t.TempDir(), "./cmd/manager", "./cmd/limiter")
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	fromUnstructured(t, install.one(t, "MutatingWebhookConfiguration"), &mwc)
	env := startAPIServer(t, func(e *envtest.Environment) {
		// envtest points the webhook at a local port instead of the Service; the
		// manager's certificate covers localhost as an extra name.
		e.WebhookInstallOptions = envtest.WebhookInstallOptions{
			MutatingWebhooks:             []*admissionregistrationv1.MutatingWebhookConfiguration{&mwc},
			LocalServingHostExternalName: "localhost",
		}
	})
	c := env.Client
	cs := kubernetes.NewForConfigOrDie(env.Config)

	// Install what the installation installs around the manager; a Helm release goes
	// into a namespace that exists already.
	if !slices.ContainsFunc(install.objects, func(u *unstructured.Unstructured) bool { return u.GetKind() == "Namespace" }) {
		ns := install.one(t, "Deployment").GetNamespace()
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatalf("create the release namespace %s: %v", ns, err)
		}
	}
	for _, u := range install.objects {
		switch u.GetKind() {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Secret":
			if err := c.Create(ctx, u); err != nil {
				t.Fatalf("install %s %s: %v", u.GetKind(), u.GetName(), err)
			}
		}
	}
	var dep appsv1.Deployment
	fromUnstructured(t, install.one(t, "Deployment"), &dep)
	managerNS := dep.Namespace
	cert := install.one(t, "Secret")

	// The manager runs as its ServiceAccount, so config/'s RBAC is what it gets.
	kubeconfig := serviceAccountKubeconfig(t, env, cs, managerNS, dep.Spec.Template.Spec.ServiceAccountName)
	ports := harness.FreePorts(3)
	probePort, controlPort, metricsPort, webhookPort := ports[0], ports[1], ports[2], env.Environment().WebhookInstallOptions.LocalServingPort
	certDir := t.TempDir()
	args := append(slices.Clone(dep.Spec.Template.Spec.Containers[0].Args),
		// Later flags win: replace what only makes sense in a cluster.
		"--leader-election-namespace="+managerNS,
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(probePort),
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(metricsPort),
		"--control-bind-address=127.0.0.1:"+strconv.Itoa(controlPort),
		"--webhook-port="+strconv.Itoa(webhookPort),
		"--cert-dir="+certDir,
		"--cert-extra-dns-names=localhost",
		"--limiter-image=registry.example/aiquota/limiter:e2e",
		// config/default points the renderer at the certificate's CA in the cert dir.
		"--control-ca-file="+filepath.Join(certDir, "ca.crt"),
		"--limiter-native-sidecar="+strconv.FormatBool(nativeSidecar),
	)
	mgr, err := harness.Start("manager", bins["manager"], args, []string{"KUBECONFIG=" + kubeconfig, "POD_NAMESPACE=" + managerNS}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mgr.Stop(30 * time.Second); err != nil {
			t.Errorf("manager: %v\n%s", err, mgr.Logs())
		}
	})
	testkit.Eventually(t, 3*time.Minute, "the manager's /readyz", func() error {
		if mgr.Exited() {
			t.Fatalf("the manager exited:\n%s", mgr.Logs())
		}
		return harness.HTTPOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort))
	})
	// Ready means the certificate is in place: the Secret holds it, the webhook
	// configuration trusts its CA, the files are written.
	var secret corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: managerNS, Name: cert.GetName()}, &secret); err != nil {
		t.Fatal(err)
	}
	var wc admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: mwc.Name}, &wc); err != nil {
		t.Fatal(err)
	}
	if len(secret.Data["ca.crt"]) == 0 || !bytes.Equal(wc.Webhooks[0].ClientConfig.CABundle, secret.Data["ca.crt"]) {
		t.Fatal("ready, but the webhook's caBundle is not the certificate Secret's CA")
	}
	if b, err := os.ReadFile(filepath.Join(certDir, "ca.crt")); err != nil || !bytes.Equal(b, secret.Data["ca.crt"]) {
		t.Fatalf("ca.crt in the cert dir: %v", err)
	}
	checkMetricsTLS(t, install, dep, secret.Data["ca.crt"], metricsPort)

	// The provider: the simulator, with the OpenAI and Anthropic accounts whose keys
	// the Secrets below hold.
	sim, err := simulator.New(simulator.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	simServer := newLocalServer(t, sim)

	// A team's namespace: keys, quotas, a chain.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "shop-"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, c,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "chat-api"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "openai-keys"}, StringData: map[string]string{"api-key": "sk-sim-openai", "unrelated": "must-not-be-mounted"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "anthropic-keys"}, StringData: map[string]string{"api-key": "sk-sim-anthropic"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "gemini-keys"}, StringData: map[string]string{"api-key": "sk-sim-gemini"}},
		simQuota(ns.Name, "openai-sim", quotav1alpha1.ProviderOpenAI, simServer, "openai-keys", quotav1alpha1.QuotaLimits{RequestsPerMinute: 1000, TokensPerMinute: 1_000_000}),
		simQuota(ns.Name, "anthropic-sim", quotav1alpha1.ProviderAnthropic, simServer, "anthropic-keys", quotav1alpha1.QuotaLimits{RequestsPerMinute: 1000, InputTokensPerMinute: 1_000_000, OutputTokensPerMinute: 100_000}),
		simQuota(ns.Name, "gemini-sim", quotav1alpha1.ProviderGemini, simServer, "gemini-keys", quotav1alpha1.QuotaLimits{RequestsPerMinute: 1000, TokensPerMinute: 1_000_000}),
		&quotav1alpha1.FallbackChain{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "chat"},
			Spec: quotav1alpha1.FallbackChainSpec{Entries: []quotav1alpha1.ChainEntry{
				{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: "openai-sim"}, Model: "gpt-5.5"},
				{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: "anthropic-sim"}, Model: "claude-sonnet-4"},
				{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: "gemini-sim"}, Model: "gemini-2.5-flash"},
			}},
		},
	)
	cmKey := types.NamespacedName{Namespace: ns.Name, Name: naming.ChainConfigMap("chat")}
	// ca.crt arrives once the renderer re-reads --control-ca-file (it polls).
	testkit.Eventually(t, 3*time.Minute, "the rendered ConfigMap", func() error {
		var cm corev1.ConfigMap
		if err := c.Get(ctx, cmKey, &cm); err != nil {
			return err
		}
		if cm.Data[naming.ConfigKey] == "" || cm.Data[naming.CAKey] == "" {
			return fmt.Errorf("ConfigMap keys: %v", slices.Sorted(maps.Keys(cm.Data)))
		}
		return nil
	})

	// Ready means the manager checked the quotas' Secrets, with only the `get` on
	// Secrets that its role grants.
	testkit.Eventually(t, time.Minute, "the FallbackChain to be Ready", func() error {
		var fc quotav1alpha1.FallbackChain
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: "chat"}, &fc); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(fc.Status.Conditions, quotav1alpha1.ConditionReady) {
			return fmt.Errorf("conditions %+v", fc.Status.Conditions)
		}
		return nil
	})

	ports = harness.FreePorts(2)
	proxyPort, adminPort := ports[0], ports[1]
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "chat-api", Annotations: map[string]string{
			naming.AnnotationInject:           "true",
			naming.AnnotationFallbackChain:    "chat",
			naming.AnnotationPriority:         "3",
			naming.AnnotationLimiterPort:      strconv.Itoa(proxyPort),
			naming.AnnotationLimiterAdminPort: strconv.Itoa(adminPort),
		}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "chat-api",
			Containers:         []corev1.Container{{Name: "app", Image: "registry.example/chat-api:1"}},
		},
	}
	// The API server may still hold the previous caBundle for a moment after the
	// manager reports ready; creation is retried only on a TLS failure to call it.
	testkit.Eventually(t, time.Minute, "the pod to be admitted", func() error {
		err := c.Create(ctx, pod)
		if err != nil && !strings.Contains(err.Error(), "failed calling webhook") {
			t.Fatalf("create the pod: %v", err)
		}
		return err
	})
	var got corev1.Pod
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), &got); err != nil {
		t.Fatal(err)
	}

	k := &harness.Kubelet{Client: c, Clientset: cs, Pod: &got, Root: t.TempDir()}
	var limiter corev1.Container
	if nativeSidecar {
		limiter, err = k.Sidecar()
	} else {
		limiter, err = k.PlainLimiter()
	}
	if err != nil {
		t.Fatal(err)
	}
	limiterArgs, limiterEnv, err := k.Prepare(ctx, limiter)
	if err != nil {
		t.Fatal(err)
	}
	checkProjectedToken(t, cs, k, &got)
	var hookDone func()
	if !nativeSidecar {
		hookDone = startPostStart(t, bins["limiter"], limiter)
	}
	proc, err := harness.Start("limiter", bins["limiter"], limiterArgs, limiterEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := proc.Stop(30 * time.Second); err != nil {
			t.Errorf("limiter: %v\n%s", err, proc.Logs())
		}
	})
	if hookDone != nil {
		hookDone()
	}
	for _, probe := range []*corev1.Probe{limiter.StartupProbe, limiter.ReadinessProbe, limiter.LivenessProbe} {
		url := fmt.Sprintf("http://127.0.0.1:%d%s", probe.HTTPGet.Port.IntValue(), probe.HTTPGet.Path)
		testkit.Eventually(t, time.Minute, "the limiter's probe "+url, func() error {
			if proc.Exited() {
				t.Fatalf("the limiter exited:\n%s", proc.Logs())
			}
			return harness.HTTPOK(url)
		})
	}

	// The app: the official SDK constructed with no arguments, configured only by
	// the env the webhook set (base URL and placeholder key), as with no code change.
	app := got.Spec.Containers[slices.IndexFunc(got.Spec.Containers, func(c corev1.Container) bool { return c.Name != naming.LimiterName })]
	if baseURL := envOf(app, "OPENAI_BASE_URL"); baseURL != fmt.Sprintf("http://127.0.0.1:%d/v1", proxyPort) {
		t.Fatalf("OPENAI_BASE_URL = %q", baseURL)
	}
	appEnv := setAppEnv(t, app)
	sdk := openai.NewClient()
	var raw *http.Response
	resp, err := sdk.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:     "gpt-5.5",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
		MaxTokens: openai.Int(20),
	}, option.WithResponseInto(&raw), option.WithMaxRetries(0))
	if err != nil {
		t.Fatalf("chat completion through the injected sidecar: %v\n%s", err, proc.Logs())
	}
	if len(resp.Choices) == 0 || resp.Choices[0].Message.Content == "" {
		t.Errorf("empty completion: %+v", resp)
	}
	if h := raw.Header.Get("X-Aiquota-Served-By"); h != "openai-sim/gpt-5.5" {
		t.Errorf("served by %q", h)
	}
	var openaiRequests int64
	for _, a := range sim.Stats().Accounts {
		if a.Provider == simulator.ProviderOpenAI {
			openaiRequests = a.Requests
		}
	}
	if openaiRequests != 1 {
		t.Errorf("the simulator's OpenAI account saw %d requests, want 1 (with the mounted key)", openaiRequests)
	}
	checkZeroCodeSDKs(ctx, t, root, appEnv)
	for _, leak := range []string{"sk-sim-openai", "sk-sim-anthropic", "sk-sim-gemini"} {
		if strings.Contains(proc.Logs(), leak) || strings.Contains(mgr.Logs(), leak) {
			t.Errorf("a key appears in the logs")
		}
	}
}

// checkProjectedToken reviews the pod's projected token as the control channel will:
// for the control audience, naming this pod.
func checkProjectedToken(t *testing.T, cs *kubernetes.Clientset, k *harness.Kubelet, pod *corev1.Pod) {
	t.Helper()
	path, err := k.HostPath(naming.TokenPath())
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.AuthenticationV1().TokenReviews().Create(t.Context(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: string(token), Audiences: []string{naming.TokenAudience}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Status.Authenticated || !slices.Contains(tr.Status.User.Extra["authentication.kubernetes.io/pod-name"], pod.Name) {
		t.Errorf("the projected token does not authenticate as the pod for %s: %+v", naming.TokenAudience, tr.Status)
	}
}

// installation is the output of `kustomize build config/default`.
type installation struct{ objects []*unstructured.Unstructured }

func kustomize(t *testing.T, root string) installation {
	t.Helper()
	return kustomizeDir(t, root, filepath.Join(root, "config", "default"))
}

// kustomizeDir builds the kustomization in dir with the project's kustomize.
func kustomizeDir(t *testing.T, root, dir string) installation {
	t.Helper()
	bin := pinnedTool(t, root, "kustomize", "KUSTOMIZE", "to build config/default")
	out, err := exec.CommandContext(t.Context(), bin, "build", dir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kustomize build %s: %v\n%s", dir, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return decodeObjects(t, out)
}

func (in installation) one(t *testing.T, kind string) *unstructured.Unstructured {
	t.Helper()
	return in.oneNamed(t, kind, "")
}

// oneNamed is the only object of kind (whose name contains part).
func (in installation) oneNamed(t *testing.T, kind, part string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, u := range in.objects {
		if u.GetKind() == kind && strings.Contains(u.GetName(), part) {
			found = append(found, u)
		}
	}
	if len(found) != 1 {
		t.Fatalf("config/default has %d %s objects, want 1", len(found), kind)
	}
	return found[0].DeepCopy()
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatal(err)
	}
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as the
// ServiceAccount with a token from the TokenRequest API.
func serviceAccountKubeconfig(t *testing.T, env *testenv.Env, cs *kubernetes.Clientset, ns, sa string) string {
	t.Helper()
	hour := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: sa, Namespace: ns}
	cfg.CurrentContext = "envtest"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// simQuota is a ProviderQuota of the provider type at the simulator's endpoint, its
// key the Secret's api-key.
func simQuota(ns, name string, provider quotav1alpha1.ProviderType, endpoint, secret string, limits quotav1alpha1.QuotaLimits) *quotav1alpha1.ProviderQuota {
	return &quotav1alpha1.ProviderQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: quotav1alpha1.ProviderQuotaSpec{
			Provider: provider, Endpoint: endpoint,
			Credentials: []quotav1alpha1.SecretKeyRef{{Name: secret, Key: "api-key"}},
			Limits:      limits,
		},
	}
}

func mustCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(t.Context(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

// newLocalServer serves h on a loopback port until the test ends and returns its URL.
func newLocalServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// checkMetricsTLS: Prometheus can verify the manager's metrics endpoint with the
// CA of the certificate Secret (what the chart's ServiceMonitor names) under the
// metrics Service's name, and the endpoint refuses a scrape without a token.
func checkMetricsTLS(t *testing.T, install installation, dep appsv1.Deployment, ca []byte, port int) {
	t.Helper()
	svc := certs.DefaultOptions().MetricsServiceName
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--cert-metrics-service="); ok {
			svc = v
		}
	}
	if !slices.ContainsFunc(install.objects, func(u *unstructured.Unstructured) bool {
		return u.GetKind() == "Service" && u.GetName() == svc
	}) {
		t.Fatalf("the certificate covers metrics Service %s, which the installation does not have", svc)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("ca.crt of the certificate Secret holds no certificate")
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: svc + "." + dep.Namespace + ".svc", MinVersion: tls.VersionTLS12,
	}}}
	resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("scrape the manager's metrics verifying with the Secret's CA: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		t.Errorf("a scrape without a token got %d; want it refused", resp.StatusCode)
	}
}

func envOf(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// TestWebhookConfigIsConsistent: the names config/default gives the webhook's
// objects are the ones the manager's flags name, and the manager's namespace is
// the one the webhook configuration excludes.
func TestWebhookConfigIsConsistent(t *testing.T) {
	install := kustomize(t, testenv.Root())
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	fromUnstructured(t, install.one(t, "MutatingWebhookConfiguration"), &mwc)
	var dep appsv1.Deployment
	fromUnstructured(t, install.one(t, "Deployment"), &dep)
	var svc corev1.Service
	fromUnstructured(t, install.oneNamed(t, "Service", "webhook"), &svc)
	secret := install.oneNamed(t, "Secret", "webhook-server-cert")

	c := dep.Spec.Template.Spec.Containers[0]
	flags := map[string]string{}
	for _, a := range c.Args {
		if k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok {
			flags[k] = v // the last one wins, as with the flag package
		}
	}
	want := map[string]string{
		"cert-webhook-config":  mwc.Name,
		"cert-webhook-service": svc.Name,
		"cert-secret-name":     secret.GetName(),
		"cert-mode":            "self-signed",
		"control-ca-file":      path.Join(flags["cert-dir"], "ca.crt"),
	}
	for k, v := range want {
		if flags[k] != v {
			t.Errorf("--%s is %q, want %q", k, flags[k], v)
		}
	}
	wh := mwc.Webhooks[0]
	if s := wh.ClientConfig.Service; s == nil || s.Name != svc.Name || s.Namespace != dep.Namespace || s.Path == nil || *s.Path != "/mutate-v1-pod" {
		t.Errorf("webhook clientConfig = %+v", wh.ClientConfig)
	}
	excluded := false
	for _, e := range wh.NamespaceSelector.MatchExpressions {
		if e.Key == "kubernetes.io/metadata.name" && e.Operator == metav1.LabelSelectorOpNotIn && slices.Contains(e.Values, dep.Namespace) && slices.Contains(e.Values, "kube-system") {
			excluded = true
		}
	}
	if !excluded {
		t.Errorf("the webhook does not exclude kube-system and the manager's namespace %s: %+v", dep.Namespace, wh.NamespaceSelector)
	}
	port := 0
	for _, p := range c.Ports {
		if p.Name == svc.Spec.Ports[0].TargetPort.StrVal {
			port = int(p.ContainerPort)
		}
	}
	if strconv.Itoa(port) != flags["webhook-port"] {
		t.Errorf("the Service targets container port %d, the webhook listens on %s", port, flags["webhook-port"])
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.MountPath == flags["cert-dir"]
	}
	if !mounted {
		t.Errorf("--cert-dir %s is not a mounted (writable) volume on a read-only root filesystem", flags["cert-dir"])
	}
	if *wh.FailurePolicy != admissionregistrationv1.Fail || *wh.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun || *wh.TimeoutSeconds > 10 {
		t.Errorf("failurePolicy %s, sideEffects %s, timeout %d", *wh.FailurePolicy, *wh.SideEffects, *wh.TimeoutSeconds)
	}
}

// TestCertManagerComponent: config/default with config/certmanager added, as its
// README says, issues the certificate the manager's flags name, for the names the
// manager serves, and lets cert-manager own the Secret and the caBundle.
func TestCertManagerComponent(t *testing.T) {
	root := testenv.Root()
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "config"), os.DirFS(filepath.Join(root, "config"))); err != nil {
		t.Fatal(err)
	}
	kfile := filepath.Join(dir, "config", "default", "kustomization.yaml")
	k, err := os.ReadFile(kfile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(k, []byte("  - ../webhook\n")) {
		t.Fatal("config/default does not list the ../webhook component")
	}
	if err := os.WriteFile(kfile, bytes.Replace(k, []byte("  - ../webhook\n"), []byte("  - ../webhook\n  - ../certmanager\n"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	install := kustomizeDir(t, root, filepath.Join(dir, "config", "default"))

	var dep appsv1.Deployment
	fromUnstructured(t, install.one(t, "Deployment"), &dep)
	flags := map[string]string{}
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		if k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok {
			flags[k] = v
		}
	}
	if flags["cert-mode"] != "cert-manager" {
		t.Errorf("--cert-mode is %q", flags["cert-mode"])
	}
	for _, u := range install.objects {
		if u.GetKind() == "Secret" && u.GetName() == flags["cert-secret-name"] {
			t.Error("the placeholder Secret is still installed; cert-manager owns it")
		}
	}
	serving := install.oneNamed(t, "Certificate", "serving-cert")
	secretName, _, _ := unstructured.NestedString(serving.Object, "spec", "secretName")
	if secretName != flags["cert-secret-name"] {
		t.Errorf("the Certificate writes Secret %q, the manager reads %q", secretName, flags["cert-secret-name"])
	}
	dnsNames, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
	o := certs.DefaultOptions()
	o.Namespace = dep.Namespace
	o.WebhookServiceName = flags["cert-webhook-service"]
	o.MetricsServiceName = flags["cert-metrics-service"]
	if diff := cmp.Diff(o.DNSNames(), dnsNames); diff != "" {
		t.Errorf("Certificate dnsNames differ from the names the manager checks (-manager +certificate):\n%s", diff)
	}
	issuer, _, _ := unstructured.NestedString(serving.Object, "spec", "issuerRef", "name")
	install.oneNamed(t, "Issuer", issuer)
	mwc := install.one(t, "MutatingWebhookConfiguration")
	if got, want := mwc.GetAnnotations()["cert-manager.io/inject-ca-from"], serving.GetNamespace()+"/"+serving.GetName(); got != want {
		t.Errorf("inject-ca-from = %q, want %q", got, want)
	}
	if mwc.GetName() != flags["cert-webhook-config"] {
		t.Errorf("--cert-webhook-config %q, webhook configuration %q", flags["cert-webhook-config"], mwc.GetName())
	}
}

// startPostStart starts a plain-container limiter's postStart hook with the image's
// binary mapped to the built one, before the limiter runs, and checks that it waits
// for it. The returned func waits for the hook: it must exit 0, and only once the
// limiter answers its readiness probe.
func startPostStart(t *testing.T, limiterBin string, c corev1.Container) (done func()) {
	t.Helper()
	if c.Lifecycle == nil || c.Lifecycle.PostStart == nil || c.Lifecycle.PostStart.Exec == nil {
		t.Fatalf("the plain limiter container has no postStart exec hook: %+v", c.Lifecycle)
	}
	cmd := c.Lifecycle.PostStart.Exec.Command
	if len(cmd) < 2 || cmd[0] != naming.LimiterBinary || cmd[1] != "wait-ready" {
		t.Fatalf("postStart runs %q, want %s wait-ready ...", cmd, naming.LimiterBinary)
	}
	hook := exec.CommandContext(t.Context(), limiterBin, cmd[1:]...)
	var out bytes.Buffer
	hook.Stdout, hook.Stderr = &out, &out
	if err := hook.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- hook.Wait() }()
	// The limiter is not running yet: the hook can only be waiting.
	select {
	case err := <-exited:
		t.Fatalf("the postStart hook returned before the limiter started: %v\n%s", err, out.String())
	case <-time.After(time.Second):
	}
	return func() {
		if err := <-exited; err != nil {
			t.Fatalf("postStart hook %q: %v\n%s", cmd, err, out.String())
		}
		probe := c.ReadinessProbe.HTTPGet
		if err := harness.HTTPOK(fmt.Sprintf("http://127.0.0.1:%d%s", probe.Port.IntValue(), probe.Path)); err != nil {
			t.Fatalf("the postStart hook returned before the limiter was ready: %v", err)
		}
	}
}
