package quotabench

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/test/harness"
)

const managerNamespace = "aiquota-system"

// Cluster is a real API server with the CRDs and the injection webhook, in which
// the leases mode runs its manager and admits its pods: each pod's limiter is
// started as the webhook injected it, with the control channel to the manager.
type Cluster struct {
	env        *testenv.Env
	cs         kubernetes.Interface
	kubeconfig string
	webhook    *admissionregistrationv1.MutatingWebhookConfiguration
	dir        string
	manager    string // the built cmd/manager
	logs       io.Writer
	scenarios  int
}

// StartCluster starts the API server (KUBEBUILDER_ASSETS) and installs the webhook.
func StartCluster(dir, manager string, logs io.Writer) (*Cluster, error) {
	env, webhook, err := testenv.StartWithInjector()
	if err != nil {
		return nil, err
	}
	c := &Cluster{env: env, webhook: webhook, dir: dir, manager: manager, logs: logs}
	if c.kubeconfig, err = env.WriteKubeconfig(dir); err != nil {
		_ = env.Stop()
		return nil, err
	}
	if c.cs, err = kubernetes.NewForConfig(env.Config); err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("clientset: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("create namespace %s: %w", managerNamespace, err)
	}
	return c, nil
}

// Stop stops the API server.
func (c *Cluster) Stop() error { return c.env.Stop() }

// managers are the manager replicas of one scenario, behind one control address
// (a TCP forwarder, as a Service would be) that follows the current one.
type managers struct {
	c        *Cluster
	args     [][]string
	procs    []*harness.Process
	probes   []int
	controls []int
	front    net.Listener
	mu       sync.Mutex
	current  int
}

func (c *Cluster) startManagers(ctx context.Context, replicas int) (*managers, error) {
	// Each scenario is a fresh install: the previous scenario's managers leave a
	// leader lease and a recent grant horizon behind, which would hold the new
	// leader to learning for a lease TTL (granting nothing new) at the start.
	if err := c.env.Client.DeleteAllOf(ctx, &coordinationv1.Lease{}, client.InNamespace(managerNamespace)); err != nil {
		return nil, fmt.Errorf("clear the previous scenario's Leases: %w", err)
	}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the control channel: %w", err)
	}
	m := &managers{c: c, front: front}
	go m.forward()
	certDir := filepath.Join(c.dir, "serving-certs")
	frontPort := front.Addr().(*net.TCPAddr).Port
	for i := range replicas {
		ports := harness.FreePorts(2)
		m.probes, m.controls = append(m.probes, ports[0]), append(m.controls, ports[1])
		m.args = append(m.args, []string{
			"--kubeconfig", c.kubeconfig,
			"--metrics-bind-address=0",
			"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(ports[0]),
			"--webhook-port=" + strconv.Itoa(c.env.Environment().WebhookInstallOptions.LocalServingPort+i),
			"--cert-namespace=" + managerNamespace,
			"--cert-secret-name=aiquota-serving-cert",
			"--cert-webhook-config=" + c.webhook.Name,
			"--cert-dir=" + certDir + strconv.Itoa(i),
			"--cert-extra-dns-names=localhost",
			"--limiter-image=aiquota/limiter:local",
			"--control-bind-address=127.0.0.1:" + strconv.Itoa(ports[1]),
			"--control-url=https://localhost:" + strconv.Itoa(frontPort) + "/v1/report",
			"--control-ca-file=" + filepath.Join(certDir+strconv.Itoa(i), "ca.crt"),
			"--control-report-interval=1s",
			"--status-write-interval=5s",
			"--leader-elect=" + strconv.FormatBool(replicas > 1),
			"--leader-election-namespace=" + managerNamespace,
		})
		m.procs = append(m.procs, nil)
		if err := m.start(ctx, i); err != nil {
			m.stop()
			return nil, err
		}
	}
	return m, nil
}

func (m *managers) start(ctx context.Context, i int) error {
	// As the chart's Deployment sets it: the namespace is where the manager keeps
	// its grant horizon on record (without it every start learns for a TTL). No
	// POD_NAME: these managers run in no pod to label as the leader; the
	// forwarder below plays the leader Service.
	env := []string{"POD_NAMESPACE=" + managerNamespace}
	p, err := harness.Start("manager-"+strconv.Itoa(i), m.c.manager, m.args[i], env, m.c.logs)
	if err != nil {
		return err
	}
	m.procs[i] = p
	if i > 0 {
		// A standby is not ready until it leads; its start is enough.
		return nil
	}
	return harness.Poll(ctx, 3*time.Minute, "the manager's /readyz", func() error {
		if p.Exited() {
			return fmt.Errorf("the manager exited:\n%s", p.Logs())
		}
		return harness.HTTPOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", m.probes[i]))
	})
}

// kill stops replica i; the forwarder moves to the next one.
func (m *managers) kill(i int) error {
	err := m.procs[i].Stop(15 * time.Second)
	m.mu.Lock()
	m.current = (i + 1) % len(m.procs)
	m.mu.Unlock()
	return err
}

func (m *managers) forward() {
	for {
		in, err := m.front.Accept()
		if err != nil {
			return
		}
		m.mu.Lock()
		port := m.controls[m.current]
		m.mu.Unlock()
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				return
			}
			defer out.Close()
			go func() { _, _ = io.Copy(out, in) }()
			_, _ = io.Copy(in, out)
		}()
	}
}

func (m *managers) stop() {
	_ = m.front.Close()
	for _, p := range m.procs {
		if p != nil {
			_ = p.Stop(15 * time.Second)
		}
	}
}

// leasePods creates the scenario's namespace and quota, and admits pods whose
// limiters run with the control channel.
type leasePods struct {
	c    *Cluster
	ns   string
	lim  string
	logs io.Writer
	ctx  context.Context
}

func (c *Cluster) newScenario(ctx context.Context, sc Scenario, simURL, limiterBin string) (*leasePods, error) {
	c.scenarios++
	ns := "quotabench-" + strconv.Itoa(c.scenarios)
	k := c.env.Client
	l := sc.Limits
	provider := quotav1alpha1.ProviderOpenAI
	if sc.Provider == simulator.ProviderAnthropic {
		provider = quotav1alpha1.ProviderAnthropic
	}
	zero := int32(0)
	objs := []func() error{
		func() error { return k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) },
		func() error {
			return k.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}})
		},
		func() error {
			return k.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "key"}, StringData: map[string]string{"api-key": simKey}})
		},
		func() error {
			return k.Create(ctx, &quotav1alpha1.ProviderQuota{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "account"},
				Spec: quotav1alpha1.ProviderQuotaSpec{
					Provider: provider, Endpoint: simURL,
					Credentials:         []quotav1alpha1.SecretKeyRef{{Name: "key", Key: "api-key"}},
					SafetyMarginPercent: &zero,
					Limits: quotav1alpha1.QuotaLimits{RequestsPerMinute: l.RequestsPerMinute, TokensPerMinute: l.TokensPerMinute,
						InputTokensPerMinute: l.InputTokensPerMinute, OutputTokensPerMinute: l.OutputTokensPerMinute,
						MaxConcurrency: l.MaxConcurrency, RequestsPerDay: l.RequestsPerDay, TokensPerDay: l.TokensPerDay},
				},
			})
		},
	}
	for _, create := range objs {
		if err := create(); err != nil {
			return nil, fmt.Errorf("create the scenario's objects: %w", err)
		}
	}
	return &leasePods{c: c, ns: ns, lim: limiterBin, logs: c.logs, ctx: ctx}, nil
}

// start admits pod i through the webhook and starts its limiter as injected; it
// returns the process and the proxy URL (which serves /state).
func (lp *leasePods) start(i int) (*harness.Process, string, error) {
	ctx := lp.ctx
	ports := harness.FreePorts(2)
	name := "app-" + strconv.Itoa(i) + "-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: lp.ns, Name: name, Annotations: map[string]string{
			naming.AnnotationInject:           "true",
			naming.AnnotationProviderQuota:    "account",
			naming.AnnotationLimiterPort:      strconv.Itoa(ports[0]),
			naming.AnnotationLimiterAdminPort: strconv.Itoa(ports[1]),
		}},
		Spec: corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
	k := lp.c.env.Client
	if err := harness.CreatePod(ctx, k, pod); err != nil {
		return nil, "", fmt.Errorf("admit pod %s: %w", name, err)
	}
	kl := &harness.Kubelet{Client: k, Clientset: lp.c.cs, Pod: pod, Root: filepath.Join(lp.c.dir, lp.ns, name)}
	sidecar, err := kl.Sidecar()
	if err != nil {
		return nil, "", err
	}
	var args, env []string
	// The rendered ConfigMap follows the quota's reconcile.
	if err := harness.Poll(ctx, time.Minute, "the pod's rendered config", func() error {
		args, env, err = kl.Prepare(ctx, sidecar)
		return err
	}); err != nil {
		return nil, "", fmt.Errorf("prepare pod %s: %w", name, err)
	}
	kl.KeepTokensFresh(ctx)
	p, err := harness.Start("limiter-"+strconv.Itoa(i), lp.lim, args, env, lp.logs)
	if err != nil {
		return nil, "", err
	}
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	if err := harness.Poll(ctx, time.Minute, "the limiter's /readyz", func() error {
		if p.Exited() {
			return harness.StopPolling(fmt.Errorf("the limiter exited:\n%s", p.Logs()))
		}
		return harness.HTTPOK(admin + "/readyz")
	}); err != nil {
		return nil, "", err
	}
	return p, fmt.Sprintf("http://127.0.0.1:%d", ports[0]), nil
}
