package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/scheme"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/internal/testkit"
)

// The suite runs the real reconcilers in a real controller-runtime manager against a
// real API server (envtest), configured as the manager binary would be with a control
// channel and a CA bundle file.
var (
	env       *testenv.Env
	k8s       client.Client // direct API client, as a user or GitOps tool
	mgrDeps   *deps         // the running manager's reconciler dependencies
	caFile    string
	testCtx   context.Context
	controlTo = "https://aiquota-control.aiquota-system.svc:8443/v1/report"
)

// Generous: CI is a loaded 2-core machine.
const (
	waitTimeout = 60 * time.Second
	pollEvery   = 50 * time.Millisecond
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	env, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop envtest:", err)
		}
	}()
	k8s = env.Client

	dir, err := os.MkdirTemp("", "aiquota-controller-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	caFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, newCAPEM("aiquota-test-ca-1"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(logLevel())))
	cacheOpts, err := CacheOptions(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 scheme.New(),
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "create manager:", err)
		return 1
	}
	mgrDeps, err = setup(mgr, Options{
		ControlURL:           controlTo,
		CABundleFile:         caFile,
		CABundlePollInterval: 100 * time.Millisecond,
		// Secret changes reach status only by recheck: quick here, so that the tests
		// of appearing and vanishing Secrets finish in seconds.
		SecretRecheckInterval: time.Second,
	}, timed.wrap)
	if err != nil {
		fmt.Fprintln(os.Stderr, "set up controllers:", err)
		return 1
	}
	// The API server's Events are asserted too, but the event broadcaster folds
	// repeats into a series it reports only every half hour; counting at the
	// recorder shows whether a transition was announced once or many times.
	recorded = &countingRecorder{next: mgrDeps.recorder}
	mgrDeps.recorder = recorded
	// Every write the reconcilers make goes through this client and is counted.
	writes = &writeCounts{n: map[string]int{}}
	mgrDeps.client = &countingClient{Client: mgrDeps.client, counts: writes}
	ctx, cancel := context.WithCancel(context.Background())
	testCtx = ctx
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// logLevel keeps reconciler logs quiet unless AIQUOTA_TEST_LOG=debug.
func logLevel() zapcore.Level {
	if os.Getenv("AIQUOTA_TEST_LOG") == "debug" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// newCAPEM is a new CA certificate named cn, as a ca.crt holds it.
func newCAPEM(cn string) []byte {
	ca, err := testkit.NewCA(cn)
	if err != nil {
		panic(err)
	}
	return ca.PEM
}

func newNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ctrl-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

func create(t testing.TB, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

// update re-reads obj, applies change and updates, retrying on conflicts.
func update[T client.Object](t testing.TB, obj T, change func(T)) {
	t.Helper()
	testkit.Eventually(t, waitTimeout, "update "+obj.GetName(), func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return k8s.Update(context.Background(), obj)
	})
}

func remove(t testing.TB, obj client.Object) {
	t.Helper()
	if err := k8s.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete %T %s: %v", obj, obj.GetName(), err)
	}
	testkit.Eventually(t, waitTimeout, "deletion of "+obj.GetName(), func() error {
		err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("still there? %w", err)
		}
		return errors.New("still there")
	})
}

func secret(ns, name string, keys ...string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{}}
	for _, k := range keys {
		s.Data[k] = []byte("sk-test-" + k)
	}
	return s
}

func policy(ns, name string, threshold int32) *quotav1alpha1.CircuitPolicy {
	return &quotav1alpha1.CircuitPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       quotav1alpha1.CircuitPolicySpec{FailureThreshold: threshold},
	}
}

func providerQuota(ns, name, secretName string, rpm int64, policyName string) *quotav1alpha1.ProviderQuota {
	q := &quotav1alpha1.ProviderQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: quotav1alpha1.ProviderQuotaSpec{
			Provider:    quotav1alpha1.ProviderOpenAI,
			Credentials: []quotav1alpha1.SecretKeyRef{{Name: secretName}},
			Limits:      quotav1alpha1.QuotaLimits{RequestsPerMinute: rpm, TokensPerMinute: 1000 * rpm},
			Models:      []quotav1alpha1.ModelPool{{Name: "gpt-5.5"}, {Name: "gpt-4.1-mini"}},
		},
	}
	if policyName != "" {
		q.Spec.CircuitPolicyRef = &quotav1alpha1.LocalObjectReference{Name: policyName}
	}
	return q
}

type entrySpec struct{ quota, model, policy string }

func fallbackChain(ns, name string, entries ...entrySpec) *quotav1alpha1.FallbackChain {
	c := &quotav1alpha1.FallbackChain{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, e := range entries {
		ce := quotav1alpha1.ChainEntry{ProviderQuotaRef: quotav1alpha1.LocalObjectReference{Name: e.quota}, Model: e.model}
		if e.policy != "" {
			ce.CircuitPolicyRef = &quotav1alpha1.LocalObjectReference{Name: e.policy}
		}
		c.Spec.Entries = append(c.Spec.Entries, ce)
	}
	return c
}

func conditionsOf(obj client.Object) (int64, []metav1.Condition) {
	switch o := obj.(type) {
	case *quotav1alpha1.ProviderQuota:
		return o.Status.ObservedGeneration, o.Status.Conditions
	case *quotav1alpha1.FallbackChain:
		return o.Status.ObservedGeneration, o.Status.Conditions
	case *quotav1alpha1.CircuitPolicy:
		return o.Status.ObservedGeneration, o.Status.Conditions
	}
	panic(fmt.Sprintf("no conditions on %T", obj))
}

// waitCondition waits until obj's status describes its current generation and its
// condition typ has status and reason; it returns the condition.
func waitCondition(t testing.TB, obj client.Object, typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var found metav1.Condition
	testkit.Eventually(t, waitTimeout, fmt.Sprintf("%T %s %s=%s/%s", obj, obj.GetName(), typ, status, reason), func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		observed, conds := conditionsOf(obj)
		if observed != obj.GetGeneration() {
			return fmt.Errorf("status.observedGeneration %d, generation %d", observed, obj.GetGeneration())
		}
		c := meta.FindStatusCondition(conds, typ)
		if c == nil {
			return fmt.Errorf("no %s condition in %v", typ, conds)
		}
		if c.ObservedGeneration != obj.GetGeneration() {
			return fmt.Errorf("%s.observedGeneration %d, generation %d", typ, c.ObservedGeneration, obj.GetGeneration())
		}
		if c.Status != status || c.Reason != reason {
			return fmt.Errorf("%s is %s/%s: %s", typ, c.Status, c.Reason, c.Message)
		}
		found = *c
		return nil
	})
	return found
}

func waitReady(t testing.TB, obj client.Object) {
	t.Helper()
	waitCondition(t, obj, quotav1alpha1.ConditionReady, metav1.ConditionTrue, quotav1alpha1.ReasonReady)
}

func getConfigMap(t testing.TB, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
		t.Fatalf("get ConfigMap %s/%s: %v", ns, name, err)
	}
	return cm
}

// waitConfig waits until the ConfigMap's config satisfies check, and returns it.
func waitConfig(t testing.TB, ns, name string, check func(*limiterconfig.Config) error) (*corev1.ConfigMap, *limiterconfig.Config) {
	t.Helper()
	var cm *corev1.ConfigMap
	var cfg *limiterconfig.Config
	testkit.Eventually(t, waitTimeout, "config in ConfigMap "+name, func() error {
		cm = &corev1.ConfigMap{}
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
			return err
		}
		var err error
		if cfg, err = limiterconfig.Parse([]byte(cm.Data[naming.ConfigKey])); err != nil {
			return err
		}
		return check(cfg)
	})
	return cm, cfg
}

func anyConfig(*limiterconfig.Config) error { return nil }

// waitEvent waits for an Event about obj with reason whose note contains text.
func waitEvent(t testing.TB, obj client.Object, eventType, reason, text string) {
	t.Helper()
	testkit.Eventually(t, waitTimeout, fmt.Sprintf("event %s about %s", reason, obj.GetName()), func() error {
		evs, err := eventsAbout(obj)
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range evs {
			if e.Reason == reason && e.Type == eventType && strings.Contains(e.Note, text) {
				return nil
			}
			seen = append(seen, e.Type+"/"+e.Reason+": "+e.Note)
		}
		return fmt.Errorf("events so far: %q", seen)
	})
}

func eventsAbout(obj client.Object) ([]eventsv1.Event, error) {
	list := &eventsv1.EventList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == obj.GetName() && e.Regarding.UID == obj.GetUID() {
			out = append(out, e)
		}
	}
	return out, nil
}

var recorded *countingRecorder

// countingRecorder counts what the reconcilers record, then records it for real.
type countingRecorder struct {
	next eventRecorder
	mu   sync.Mutex
	seen []recordedEvent
}

type recordedEvent struct {
	uid          types.UID
	kind, reason string
	note         string
}

func (c *countingRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if o, ok := regarding.(client.Object); ok {
		c.mu.Lock()
		c.seen = append(c.seen, recordedEvent{uid: o.GetUID(), kind: eventtype, reason: reason, note: fmt.Sprintf(note, args...)})
		c.mu.Unlock()
	}
	c.next.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

// count is how many events with reason were recorded about obj.
func (c *countingRecorder) count(obj client.Object, reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.seen {
		if e.uid == obj.GetUID() && e.reason == reason {
			n++
		}
	}
	return n
}

// reasons lists the reasons recorded about obj, in order.
func (c *countingRecorder) reasons(obj client.Object) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.seen {
		if e.uid == obj.GetUID() {
			out = append(out, e.reason)
		}
	}
	return out
}

var writes *writeCounts

// writeCounts counts API writes by verb, kind and object.
type writeCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func writeKeyOf(verb string, obj client.Object) string {
	return fmt.Sprintf("%s %T %s/%s", verb, obj, obj.GetNamespace(), obj.GetName())
}

func (w *writeCounts) add(verb string, obj client.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n[writeKeyOf(verb, obj)]++
}

// of counts the writes of any verb to obj's kind and name.
func (w *writeCounts) of(obj client.Object) map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	suffix := fmt.Sprintf(" %T %s/%s", obj, obj.GetNamespace(), obj.GetName())
	out := map[string]int{}
	for k, v := range w.n {
		if strings.HasSuffix(k, suffix) {
			out[strings.TrimSuffix(k, suffix)] = v
		}
	}
	return out
}

func (w *writeCounts) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, v := range w.n {
		n += v
	}
	return n
}

// countingClient counts writes and passes every call through.
type countingClient struct {
	client.Client
	counts *writeCounts
}

func (c *countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.counts.add("create", obj)
	return c.Client.Create(ctx, obj, opts...)
}

func (c *countingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.counts.add("update", obj)
	return c.Client.Update(ctx, obj, opts...)
}

func (c *countingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	c.counts.add("patch", obj)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

func (c *countingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.counts.add("delete", obj)
	return c.Client.Delete(ctx, obj, opts...)
}

func (c *countingClient) Status() client.SubResourceWriter {
	return &countingStatus{SubResourceWriter: c.Client.Status(), counts: c.counts}
}

type countingStatus struct {
	client.SubResourceWriter
	counts *writeCounts
}

func (s *countingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.counts.add("status-update", obj)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s *countingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	s.counts.add("status-patch", obj)
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}
