package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/certs"
	"github.com/aiquota/aiquota/internal/injection"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/scheme"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
)

// managerNamespace is the manager's namespace as config/webhook excludes it.
const managerNamespace = "aiquota-system"

// apiSuite is a real API server with the webhook configuration of
// config/webhook/pod_injector.yaml installed (its matchConditions and namespace
// selector included), pointing at a manager in this process that serves the
// injector with a certificate from internal/certs (self-signed, caBundle injected
// by the rotator: envtest's own CA is replaced).
type apiSuite struct {
	env    *testenv.Env
	c      client.Client
	cancel context.CancelFunc
	done   chan error
}

// sharedSuite is started by the first test that needs it (apiServer). Tests that
// need none (the golden files, fuzzing) run without KUBEBUILDER_ASSETS.
var sharedSuite = testenv.Lazy[*apiSuite]{Start: startSuite, Stop: (*apiSuite).stop}

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	sharedSuite.Main(m)
}

func apiServer(t *testing.T) *apiSuite {
	t.Helper()
	return sharedSuite.Get(t)
}

// stop stops the manager, then the API server.
func (s *apiSuite) stop() error {
	s.cancel()
	if err := <-s.done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
	}
	return s.env.Stop()
}

func startSuite() (*apiSuite, error) {
	env, err := testenv.Start(func(e *envtest.Environment) {
		e.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join(testenv.Root(), "config", "webhook", "pod_injector.yaml")},
			// The API server calls https://localhost:<port>; the manager's
			// certificate covers localhost as an extra name.
			LocalServingHostExternalName: "localhost",
		}
	})
	if err != nil {
		return nil, err
	}
	s := &apiSuite{env: env, c: env.Client, done: make(chan error, 1)}
	fail := func(err error) (*apiSuite, error) {
		_ = env.Stop()
		return nil, err
	}
	ctx := context.Background()
	if err := s.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}); err != nil {
		return fail(err)
	}
	wio := env.Environment().WebhookInstallOptions
	co := certs.DefaultOptions()
	co.Namespace = managerNamespace
	co.ExtraDNSNames = []string{"localhost"}
	co.WebhookConfigName = "pod-injector" // config/webhook's name before config/default's prefix
	dir, err := os.MkdirTemp("", "webhook-certs-")
	if err != nil {
		return fail(err)
	}
	co.CertDir = dir
	certMgr, err := certs.New(co)
	if err != nil {
		return fail(err)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:        scheme.New(),
		Metrics:       metricsserver.Options{BindAddress: "0"},
		WebhookServer: crwebhook.NewServer(crwebhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort, TLSOpts: []func(*tls.Config){certMgr.TLSOpt()}}),
	})
	if err != nil {
		return fail(err)
	}
	if err := certMgr.SetupWithManager(ctx, mgr); err != nil {
		return fail(err)
	}
	o := testOptions()
	o.ExcludedNamespaces = append(o.ExcludedNamespaces, managerNamespace)
	inj, err := SetupWithManager(mgr, o)
	if err != nil {
		return fail(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	go func() { s.done <- mgr.Start(mctx) }()

	// Ready as the manager's /readyz would say, then until the API server itself
	// reaches the webhook over TLS with the injected caBundle: a dry run that the
	// webhook answers (it refuses a chain that does not exist).
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		last = errors.Join(certMgr.ReadyCheck()(nil), inj.ReadyCheck()(nil), mgr.GetWebhookServer().StartedChecker()(nil))
		if last == nil {
			probe := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default", Annotations: map[string]string{naming.AnnotationInject: "true", naming.AnnotationFallbackChain: "readiness-probe"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "c"}}},
			}
			last = s.c.Create(ctx, probe, client.DryRunAll)
			if last != nil && strings.Contains(last.Error(), `"readiness-probe"`) {
				return s, nil
			}
			if last == nil {
				last = errors.New("the probe pod was admitted")
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	err = fmt.Errorf("the webhook never became reachable from the API server: %w", last)
	if merr := <-s.done; merr != nil {
		// A manager that stopped on its own (its webhook server could not listen, say)
		// explains an unreachable webhook better than the last dry run does.
		err = errors.Join(err, fmt.Errorf("manager: %w", merr))
	}
	return fail(err)
}

// webhookCalls is the webhook server's own count of requests on the injector's path.
func webhookCalls(t *testing.T) float64 {
	t.Helper()
	n, err := testkit.CounterSum(ctrlmetrics.Registry, "controller_runtime_webhook_requests_total", "webhook", Path)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// namespace creates a namespace with a default ServiceAccount (no controller
// manager runs here to create it) and the chain and quotas of testdata/objects.yaml.
func (s *apiSuite) namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "inject-", Labels: labels}}
	if err := s.c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	s.serviceAccount(t, ns.Name)
	for _, obj := range loadObjects(t) {
		obj.SetNamespace(ns.Name)
		if err := s.c.Create(ctx, obj); err != nil {
			t.Fatalf("create %s %s: %v", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
	}
	return ns.Name
}

func (s *apiSuite) serviceAccount(t *testing.T, ns string) {
	t.Helper()
	err := s.c.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
}

func newPod(ns, name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
}

// TestAPIServerInjects: an annotated pod created through the API server comes back
// with the limiter; the API server's own validation accepted the mutated spec.
func TestAPIServerInjects(t *testing.T) {
	s := apiServer(t)
	ns := s.namespace(t, nil)
	before := webhookCalls(t)
	p := newPod(ns, "chat", map[string]string{naming.AnnotationInject: "true", naming.AnnotationFallbackChain: "chat-default", naming.AnnotationPriority: "2"})
	if err := s.c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	if after := webhookCalls(t); after != before+1 {
		t.Errorf("webhook calls %v -> %v, want one more", before, after)
	}
	var got corev1.Pod
	if err := s.c.Get(t.Context(), client.ObjectKeyFromObject(p), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != naming.LimiterName {
		t.Fatalf("init containers: %+v", got.Spec.InitContainers)
	}
	l := got.Spec.InitContainers[0]
	if l.RestartPolicy == nil || *l.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("not a native sidecar")
	}
	mustContainAll(t, "args", strings.Join(l.Args, " "), "--default-priority 2", "--listen 127.0.0.1:8787")
	env := map[string]string{}
	for _, e := range got.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["OPENAI_BASE_URL"] != "http://127.0.0.1:8787/v1" || env["ANTHROPIC_BASE_URL"] != "http://127.0.0.1:8787" {
		t.Errorf("app env = %v", env)
	}
	sum, err := injection.ReadSummary(&got)
	if err != nil || sum == nil {
		t.Fatalf("injected annotation: %v, %v", sum, err)
	}
	if got.Labels[naming.LabelLimiter] != naming.LimiterInjected {
		t.Errorf("injected pod labels = %v, want %s=%s for monitoring to select it", got.Labels, naming.LabelLimiter, naming.LimiterInjected)
	}
	if sum.ConfigMap != naming.ChainConfigMap("chat-default") || sum.Mode != injection.ModeNativeSidecar {
		t.Errorf("summary = %+v", sum)
	}
}

// TestOthersNeverReachTheWebhook: pods without the annotation, with inject
// "false", or in excluded namespaces are created untouched, and the webhook server
// never sees them (matchConditions and namespaceSelector work on the server side)
// — even pods whose annotations the webhook would refuse.
func TestOthersNeverReachTheWebhook(t *testing.T) {
	s := apiServer(t)
	ns := s.namespace(t, nil)
	disabled := s.namespace(t, map[string]string{naming.LabelInjection: naming.InjectionDisabled})
	for _, sys := range []string{"kube-system", managerNamespace} {
		s.serviceAccount(t, sys)
	}
	bad := map[string]string{naming.AnnotationInject: "yes", naming.AnnotationPriority: "0", naming.AnnotationFallbackChain: "chat-default"}
	pods := []*corev1.Pod{
		newPod(ns, "plain", nil),
		newPod(ns, "other-annotations", map[string]string{"team": "search"}),
		newPod(ns, "inject-false", map[string]string{naming.AnnotationInject: "false", naming.AnnotationPriority: "abc"}),
		newPod(ns, "chain-without-inject", map[string]string{naming.AnnotationFallbackChain: "chat-default"}),
		newPod("kube-system", "system-"+ns, bad),
		newPod(managerNamespace, "manager-"+ns, bad),
		newPod(disabled, "opted-out", bad),
	}
	before := webhookCalls(t)
	for _, p := range pods {
		if err := s.c.Create(t.Context(), p); err != nil {
			t.Errorf("create %s/%s: %v", p.Namespace, p.Name, err)
			continue
		}
		var got corev1.Pod
		if err := s.c.Get(t.Context(), client.ObjectKeyFromObject(p), &got); err != nil {
			t.Fatal(err)
		}
		if hasLimiterContainer(&got) || got.Annotations[naming.AnnotationInjected] != "" {
			t.Errorf("%s/%s was injected", p.Namespace, p.Name)
		}
	}
	if after := webhookCalls(t); after != before {
		t.Errorf("the webhook was called %v times for pods that should never reach it", after-before)
	}
	// The counter does count: an opted-in pod right after is seen.
	if err := s.c.Create(t.Context(), newPod(ns, "opted-in", map[string]string{naming.AnnotationInject: "true", naming.AnnotationProviderQuota: "openai-tier3"})); err != nil {
		t.Fatal(err)
	}
	if after := webhookCalls(t); after != before+1 {
		t.Errorf("an opted-in pod: calls %v -> %v, want one more", before, after)
	}
}

// TestAPIServerDenies: bad annotations and missing references come back to the
// creator as the API server's error, naming the annotation or the object.
func TestAPIServerDenies(t *testing.T) {
	s := apiServer(t)
	ns := s.namespace(t, nil)
	tests := []struct {
		name        string
		annotations map[string]string
		want        []string
	}{
		{"inject yes", map[string]string{naming.AnnotationInject: "yes", naming.AnnotationFallbackChain: "chat-default"}, []string{naming.AnnotationInject, `"yes"`}},
		{"priority 0", chainPod(map[string]string{naming.AnnotationPriority: "0"}), []string{naming.AnnotationPriority, `"0"`}},
		{"priority abc", chainPod(map[string]string{naming.AnnotationPriority: "abc"}), []string{naming.AnnotationPriority, `"abc"`}},
		{"priority 10", chainPod(map[string]string{naming.AnnotationPriority: "10"}), []string{naming.AnnotationPriority, `"10"`}},
		{"port 70000", chainPod(map[string]string{naming.AnnotationLimiterPort: "70000"}), []string{naming.AnnotationLimiterPort, `"70000"`}},
		{"port http", chainPod(map[string]string{naming.AnnotationLimiterPort: "http"}), []string{naming.AnnotationLimiterPort, `"http"`}},
		{"chain and quota", chainPod(map[string]string{naming.AnnotationProviderQuota: "openai-tier3"}), []string{naming.AnnotationFallbackChain, naming.AnnotationProviderQuota}},
		{"missing chain", map[string]string{naming.AnnotationInject: "true", naming.AnnotationFallbackChain: "no-such-chain"}, []string{`FallbackChain "no-such-chain"`, naming.AnnotationFallbackChain}},
		{"missing quota", map[string]string{naming.AnnotationInject: "true", naming.AnnotationProviderQuota: "no-such-quota"}, []string{`ProviderQuota "no-such-quota"`, naming.AnnotationProviderQuota}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := webhookCalls(t)
			err := s.c.Create(t.Context(), newPod(ns, fmt.Sprintf("bad-%d", i), tc.annotations))
			if err == nil {
				t.Fatal("created; want denied")
			}
			mustContainAll(t, "error", err.Error(), append(tc.want, `admission webhook "inject.aiquota.dev" denied the request`)...)
			if after := webhookCalls(t); after != before+1 {
				t.Errorf("calls %v -> %v", before, after)
			}
		})
	}
}

// TestEventsOnTheDeployment: injections and refusals of a Deployment's pods are
// explained by events on the Deployment, found through the pod's ReplicaSet.
func TestEventsOnTheDeployment(t *testing.T) {
	s := apiServer(t)
	ns := s.namespace(t, nil)
	ctx := t.Context()
	labels := map[string]string{"app": "chat"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "chat"},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl},
	}
	if err := s.c.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	yes := true
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "chat-5d8f7", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: &yes},
		}},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl},
	}
	if err := s.c.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	owned := func(name string, annotations map[string]string) *corev1.Pod {
		p := newPod(ns, name, annotations)
		p.Labels = labels
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}
		return p
	}
	if err := s.c.Create(ctx, owned("chat-5d8f7-a", chainPod(nil))); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Create(ctx, owned("chat-5d8f7-b", chainPod(map[string]string{naming.AnnotationPriority: "0"}))); err == nil {
		t.Fatal("a bad pod was created")
	}
	for _, want := range []struct{ reason, eventType, note string }{
		{ReasonInjected, corev1.EventTypeNormal, `FallbackChain "chat-default"`},
		{ReasonInjectionDenied, corev1.EventTypeWarning, naming.AnnotationPriority},
	} {
		testkit.Eventually(t, time.Minute, "a "+want.reason+" event on the Deployment", func() error {
			var list eventsv1.EventList
			if err := s.c.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return err
			}
			for _, e := range list.Items {
				if e.Reason != want.reason {
					continue
				}
				if e.Regarding.Kind != "Deployment" || e.Regarding.Name != dep.Name || e.Regarding.UID != dep.UID {
					return fmt.Errorf("event regards %s %s (%s)", e.Regarding.Kind, e.Regarding.Name, e.Regarding.UID)
				}
				if e.Type != want.eventType || !strings.Contains(e.Note, want.note) || e.ReportingController != RecorderName {
					return fmt.Errorf("event %s %q by %s", e.Type, e.Note, e.ReportingController)
				}
				return nil
			}
			return errors.New("no such event yet")
		})
	}
}

// TestChainAppliedWithItsPods: a chain created a moment before its pods is found
// even if the informer has not caught up (the webhook asks the API server on a
// cache miss).
func TestChainAppliedWithItsPods(t *testing.T) {
	s := apiServer(t)
	ns := s.namespace(t, nil)
	fc := &quotav1alpha1.FallbackChain{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fresh"},
		Spec:       quotav1alpha1.FallbackChainSpec{Entries: []quotav1alpha1.ChainEntry{{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: "openai-tier3"}, Model: "gpt-5.5"}}},
	}
	if err := s.c.Create(t.Context(), fc); err != nil {
		t.Fatal(err)
	}
	p := newPod(ns, "fresh", map[string]string{naming.AnnotationInject: "true", naming.AnnotationFallbackChain: "fresh"})
	if err := s.c.Create(t.Context(), p); err != nil {
		t.Fatalf("pod created right after its chain was refused: %v", err)
	}
	var got corev1.Pod
	if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "fresh"}, &got); err != nil {
		t.Fatal(err)
	}
	if !hasLimiterContainer(&got) {
		t.Error("not injected")
	}
}

// TestGoldensAreValidPods: every golden output, container mode included, passes
// the API server's own pod validation, and the webhook leaves it as it is.
func TestGoldensAreValidPods(t *testing.T) {
	s := apiServer(t)
	ns := s.namespace(t, nil)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			var p corev1.Pod
			if err := json.Unmarshal(yamlFile(t, filepath.Join("testdata", tc.name+".golden")), &p); err != nil {
				t.Fatal(err)
			}
			p.Namespace, p.Name, p.GenerateName = ns, tc.name, ""
			s.serviceAccount(t, ns)
			if p.Spec.ServiceAccountName != "default" {
				if err := s.c.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p.Spec.ServiceAccountName}}); err != nil && !strings.Contains(err.Error(), "already exists") {
					t.Fatal(err)
				}
			}
			want := p.DeepCopy()
			if err := s.c.Create(t.Context(), &p); err != nil {
				t.Fatalf("the API server refuses the injected pod: %v", err)
			}
			if len(p.Spec.InitContainers) != len(want.Spec.InitContainers) || len(p.Spec.Containers) != len(want.Spec.Containers) ||
				len(p.Spec.Volumes) != len(want.Spec.Volumes) || p.Annotations[naming.AnnotationInjected] != want.Annotations[naming.AnnotationInjected] {
				t.Error("the webhook changed an injected pod")
			}
		})
	}
}

// TestAPIServerRefusesAPlantedConfigMap: a ConfigMap of the rendered name that the
// chain does not control (created by anyone who may create ConfigMaps, before or
// after the chain) is never mounted into an opted-in pod; once the chain controls
// it, pods are injected.
func TestAPIServerRefusesAPlantedConfigMap(t *testing.T) {
	s := apiServer(t)
	ns := s.namespace(t, nil)
	ctx := t.Context()
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: naming.ChainConfigMap("chat-default")},
		Data:       map[string]string{naming.ConfigKey: `{"providers":[{"endpoint":"https://collector.example"}]}`},
	}
	if err := s.c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	err := s.c.Create(ctx, newPod(ns, "planted", chainPod(nil)))
	if err == nil {
		t.Fatal("a pod was created with a ConfigMap its chain does not own")
	}
	mustContainAll(t, "error", err.Error(), `admission webhook "inject.aiquota.dev" denied the request`,
		`ConfigMap "aiquota-fc-chat-default"`, `not owned by FallbackChain "chat-default"`, "it has no controller")

	var fc quotav1alpha1.FallbackChain
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "chat-default"}, &fc); err != nil {
		t.Fatal(err)
	}
	yes := true
	cm.OwnerReferences = []metav1.OwnerReference{{APIVersion: quotav1alpha1.GroupVersion.String(), Kind: "FallbackChain", Name: fc.Name, UID: fc.UID, Controller: &yes}}
	if err := s.c.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Create(ctx, newPod(ns, "owned", chainPod(nil))); err != nil {
		t.Fatalf("a pod whose chain controls its ConfigMap was refused: %v", err)
	}
}

// TestAPIServerRefusesLimiterLookalikes: a pod whose own container is named like
// the limiter, or that would share its processes or credential volumes with the
// limiter, is refused by the API server with the webhook's reason.
func TestAPIServerRefusesLimiterLookalikes(t *testing.T) {
	s := apiServer(t)
	ns := s.namespace(t, nil)
	yes := true
	tests := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   string
	}{
		{"container named aiquota-limiter", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: naming.LimiterName, Image: "registry.example/proxy:1"})
		}, `container named "aiquota-limiter"`},
		{"shareProcessNamespace", func(p *corev1.Pod) { p.Spec.ShareProcessNamespace = &yes }, "shareProcessNamespace: true"},
		{"app mounts the key volume", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: naming.KeyVolume("openai-keys"), MountPath: "/stolen"}}
		}, "only the limiter may mount them"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPod(ns, fmt.Sprintf("lookalike-%d", i), chainPod(nil))
			tc.mutate(p)
			err := s.c.Create(t.Context(), p)
			if err == nil {
				t.Fatal("created; want denied")
			}
			mustContainAll(t, "error", err.Error(), `admission webhook "inject.aiquota.dev" denied the request`, tc.want)
		})
	}
}
