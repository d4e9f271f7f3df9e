// Command localenv runs aiquota end to end on an embedded default, with no cluster and
// no API key: a real kube-apiserver and etcd (envtest), the provider simulator, the
// manager (reconcilers, injection webhook, control channel), the sample quotas
// pointed at the simulator, and a demo app pod that the webhook injects and whose
// limiter sidecar runs as a process (this program plays the kubelet's part). The app
// sends chat traffic through its sidecar; after 30 s the simulator's Anthropic
// account starts failing: the CircuitPolicy's breaker opens and the Claude requests
// fall over down the chain (translated for the entries of other dialects) with no
// failure the app sees; a minute later the account recovers and traffic returns.
// `kubectl get` of the resources shows it all: FAILOVERS rising, ACTIVE moving and
// coming back.
//
//	make run-local                        # until Ctrl-C
//	make run-local ARGS=--once            # until failover and return show, then exit
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	sigsyaml "sigs.k8s.io/yaml"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/naming"
	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/test/harness"
)

const (
	namespace        = "demo"
	managerNamespace = "aiquota-system"
	// anthropicAccount is the simulator's Anthropic account (its default config's
	// second account), the one the demo makes fail.
	anthropicAccount = 1
)

// simulatorKeys are the simulator's built-in accounts, stored in the Secrets the
// samples name, so the sidecar authenticates to the simulator as to the real thing.
var simulatorKeys = map[string]string{
	"openai-api-key":    "sk-sim-openai",
	"anthropic-api-key": "sk-sim-anthropic",
	"gemini-api-key":    "sk-sim-gemini",
	"deepseek-api-key":  "sk-sim-deepseek",
}

func main() {
	once := flag.Bool("once", false, "exit once utilisation, an open breaker, failovers and the return to the first entry show in the resources' status")
	timeout := flag.Duration("timeout", 5*time.Minute, "with --once: how long to wait for them")
	rate := flag.Int("rate", 40, "the demo app's requests per second through its sidecar")
	stateDir := flag.String("state-dir", filepath.Join(testenv.Root(), "bin", "local"), "where the kubeconfig, the pod's files and the process logs go (emptied first)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one ends the process at once instead of
	// waiting for a slow teardown.
	context.AfterFunc(ctx, stop)
	if err := run(ctx, *stateDir, *once, *timeout, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "localenv:", err)
		os.Exit(1)
	}
}

// startFunc starts a process whose log goes to the run's process log and which the
// run stops on its way out.
type startFunc func(name, bin string, args, env []string) (*harness.Process, error)

func run(ctx context.Context, stateDir string, once bool, timeout time.Duration, rate int) error {
	root := testenv.Root()
	if err := cleanStateDir(stateDir); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(stateDir, stateMarker))
	if err != nil {
		return fmt.Errorf("create process log: %w", err)
	}
	defer logFile.Close()
	// envtest and the clients log through controller-runtime's logger; without one,
	// controller-runtime prints a stack trace saying so after 30 s. Their lines go to
	// the process log with the processes'.
	ctrllog.SetLogger(zap.New(zap.WriteTo(logFile)))
	var procs []*harness.Process
	stopProcs := func() {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].Stop(15 * time.Second)
		}
		procs = nil
	}
	defer stopProcs()
	start := func(name, bin string, args, env []string) (*harness.Process, error) {
		p, err := harness.Start(name, bin, args, env, logFile)
		if err == nil {
			procs = append(procs, p)
		}
		return p, err
	}

	step("building the manager, the limiter, the provider simulator and the kubectl plugin")
	bins, err := harness.Build(ctx, root, filepath.Join(root, "bin"), "./cmd/manager", "./cmd/limiter", "./cmd/providersim", "./cmd/kubectl-aiquota")
	if err != nil {
		return err
	}

	step("starting kube-apiserver and etcd, installing the CRDs and the injection webhook")
	env, webhook, err := testenv.StartWithInjector()
	if err != nil {
		return err
	}
	defer func() {
		// The processes first: the manager shuts down cleanly only while the API
		// server still answers.
		step("stopping the processes and the API server")
		stopProcs()
		_ = env.Stop()
	}()
	kubeconfig, err := env.WriteKubeconfig(stateDir)
	if err != nil {
		return err
	}
	fmt.Printf("    kubectl against it, while this runs: export KUBECONFIG=%s\n", kubeconfig)
	c := env.Client
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return fmt.Errorf("clientset: %w", err)
	}

	step("starting the provider simulator")
	sim, err := start("providersim", bins["providersim"], []string{"--addr", "127.0.0.1:0"}, nil)
	if err != nil {
		return err
	}
	m, err := sim.WaitFor(regexp.MustCompile(`providersim listening.* addr=(\S+)`), 30*time.Second)
	if err != nil {
		return err
	}
	simURL := "http://" + m[1]

	step("starting the manager: reconcilers, injection webhook, control channel")
	if err := startManager(ctx, env, webhook.Name, kubeconfig, stateDir, bins["manager"], start); err != nil {
		return err
	}

	step(fmt.Sprintf("applying the samples in namespace %q, pointed at the simulator (%s)", namespace, simURL))
	if err := applySamples(ctx, c, root, simURL); err != nil {
		return err
	}
	if err := kubectl(ctx, kubeconfig, "wait", "-n", namespace, "--for=condition=Ready",
		"providerquotas,fallbackchains,circuitpolicies", "--all", "--timeout=2m"); err != nil {
		return err
	}

	step("creating the demo app's pod; the webhook injects the limiter, this program plays the kubelet")
	limiterProxy, err := runDemoPod(ctx, c, cs, stateDir, bins["limiter"], start)
	if err != nil {
		return err
	}

	step(fmt.Sprintf("the app sends %d chat requests a second through its sidecar (OpenAI and Anthropic dialects)", rate))
	app := &demoApp{proxy: limiterProxy}
	go app.run(ctx, rate)
	w := watcher{c: c, kubeconfig: kubeconfig, simURL: simURL, stateDir: stateDir, logName: logFile.Name(),
		pluginDir: filepath.Dir(bins["kubectl-aiquota"]), once: once, timeout: timeout}
	return w.watch(ctx, app)
}

// startManager starts the manager binary against the API server, with the webhook
// and the control channel on local ports, and waits until it is ready.
func startManager(ctx context.Context, env *testenv.Env, webhookName, kubeconfig, stateDir, bin string, start startFunc) error {
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}); err != nil {
		return fmt.Errorf("create namespace %s: %w", managerNamespace, err)
	}
	ports := harness.FreePorts(2)
	probePort, controlPort := ports[0], ports[1]
	certDir := filepath.Join(stateDir, "serving-certs")
	mgr, err := start("manager", bin, []string{
		"--kubeconfig", kubeconfig,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(probePort),
		"--webhook-port=" + strconv.Itoa(env.Environment().WebhookInstallOptions.LocalServingPort),
		"--cert-namespace=" + managerNamespace,
		"--cert-secret-name=aiquota-serving-cert",
		"--cert-webhook-config=" + webhookName,
		"--cert-dir=" + certDir,
		"--cert-extra-dns-names=localhost",
		"--limiter-image=aiquota/limiter:local",
		"--control-bind-address=127.0.0.1:" + strconv.Itoa(controlPort),
		"--control-url=https://localhost:" + strconv.Itoa(controlPort) + "/v1/report",
		"--control-ca-file=" + filepath.Join(certDir, "ca.crt"),
		"--control-report-interval=5s",
		"--status-write-interval=5s",
	}, []string{"POD_NAMESPACE=" + managerNamespace})
	if err != nil {
		return err
	}
	return harness.Poll(ctx, 3*time.Minute, "the manager's /readyz", func() error {
		if mgr.Exited() {
			return fmt.Errorf("the manager exited:\n%s", mgr.Logs())
		}
		return harness.HTTPOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort))
	})
}

// watcher shows the resources' status while the demo app runs, turns the
// simulator's Anthropic account faulty and back on schedule, and with once ends
// the run when the status has shown it all.
type watcher struct {
	c                                                client.Client
	kubeconfig, simURL, stateDir, logName, pluginDir string
	once                                             bool
	timeout                                          time.Duration
}

func (w watcher) watch(ctx context.Context, app *demoApp) error {
	failAt := time.Now().Add(30 * time.Second)
	recoverAt := failAt.Add(time.Minute)
	failing, recovered := false, false
	var seen demoSeen
	deadline := time.Now().Add(w.timeout)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Printf("\nState and logs: %s\n", w.stateDir)
			return nil
		case <-tick.C:
		}
		switch {
		case !failing && time.Now().After(failAt):
			step("the simulator's Anthropic account now answers 500 to every request: watch the breaker open and the Claude requests fall over down the chain")
			if err := simFaults(w.simURL, anthropicAccount, `{"errorRates":{"500":1}}`); err != nil {
				return err
			}
			failing = true
		case failing && !recovered && time.Now().After(recoverAt):
			step("the simulator's Anthropic account recovers: watch the breaker close and the traffic return")
			if err := simFaults(w.simURL, anthropicAccount, `{}`); err != nil {
				return err
			}
			recovered = true
		}
		fmt.Printf("\n%s   app: %s\n", time.Now().Format(time.TimeOnly), app.summary())
		_ = kubectl(ctx, w.kubeconfig, "get", "providerquotas,fallbackchains,circuitpolicies", "-n", namespace)
		if !w.once {
			continue
		}
		done, err := seen.update(ctx, w.c, recovered)
		if err != nil {
			return err
		}
		if done {
			return w.finish(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("within %s the status did not show it all (%+v); logs in %s", w.timeout, seen, w.logName)
		}
	}
}

// finish shows the live view a user gets from the kubectl plugin, found on PATH as
// kubectl finds any plugin, and says where the run's files stay.
func (w watcher) finish(ctx context.Context) error {
	pluginPath := "PATH=" + w.pluginDir + string(os.PathListSeparator) + os.Getenv("PATH")
	if err := kubectlEnv(ctx, w.kubeconfig, []string{pluginPath}, "aiquota", "top", "--once", "-n", namespace); err != nil {
		return err
	}
	fmt.Printf("\nThe demo showed utilisation, an open breaker, failovers with ACTIVE moving down the chain, and the return to the first entry.\n")
	fmt.Printf("The injected pod and the process logs stay in %s.\n", w.stateDir)
	return nil
}

// stateMarker is a file every run writes into its state directory; a non-empty
// directory without it is not ours to empty.
const stateMarker = "processes.log"

// cleanStateDir empties the state directory of a previous run and creates it.
func cleanStateDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read the state directory %s: %w", dir, err)
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, stateMarker)); err != nil {
			return fmt.Errorf("the state directory %s is not empty and holds no %s from an earlier run; refusing to empty it", dir, stateMarker)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("clean %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

func applySamples(ctx context.Context, c client.Client, root, simURL string) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	for name, key := range simulatorKeys {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			StringData: map[string]string{"api-key": key},
		}
		if err := c.Create(ctx, s); err != nil {
			return fmt.Errorf("create secret %s: %w", name, err)
		}
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "quota_*.yaml"))
	if err != nil {
		return fmt.Errorf("list samples: %w", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read sample: %w", err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return fmt.Errorf("parse sample %s: %w", f, err)
		}
		u.SetNamespace(namespace)
		if u.GetKind() == "ProviderQuota" {
			if err := unstructured.SetNestedField(u.Object, simURL, "spec", "endpoint"); err != nil {
				return fmt.Errorf("point %s at the simulator: %w", u.GetName(), err)
			}
		}
		if u.GetKind() == "CircuitPolicy" {
			// Open after 3 failures and probe again after 20 s, so the demo shows a
			// breaker's whole cycle in a minute.
			_ = unstructured.SetNestedField(u.Object, int64(3), "spec", "failureThreshold")
			_ = unstructured.SetNestedField(u.Object, "20s", "spec", "recoveryTimeout")
			_ = unstructured.SetNestedField(u.Object, int64(1), "spec", "retry", "maxRetries")
			_ = unstructured.SetNestedField(u.Object, "200ms", "spec", "retry", "baseDelay")
			_ = unstructured.SetNestedField(u.Object, "1s", "spec", "retry", "maxDelay")
		}
		if err := c.Create(ctx, u); err != nil {
			return fmt.Errorf("create %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

// runDemoPod creates an annotated pod, lets the webhook inject it, materialises its
// sidecar's volumes and starts the limiter as the pod's spec says. It returns the
// sidecar's proxy URL.
func runDemoPod(ctx context.Context, c client.Client, cs kubernetes.Interface, stateDir, limiterBin string, start startFunc) (string, error) {
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "chat-app"}}); err != nil {
		return "", fmt.Errorf("create the app's service account: %w", err)
	}
	ports := harness.FreePorts(2)
	proxyPort, adminPort := ports[0], ports[1]
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "chat-app", Annotations: map[string]string{
			naming.AnnotationInject:           "true",
			naming.AnnotationFallbackChain:    "chat-default",
			naming.AnnotationPriority:         "3",
			naming.AnnotationLimiterPort:      strconv.Itoa(proxyPort),
			naming.AnnotationLimiterAdminPort: strconv.Itoa(adminPort),
		}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "chat-app",
			Containers:         []corev1.Container{{Name: "app", Image: "registry.example/chat-app:1"}},
		},
	}
	if err := harness.CreatePod(ctx, c, pod); err != nil {
		return "", err
	}
	var got corev1.Pod
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), &got); err != nil {
		return "", fmt.Errorf("get the injected pod: %w", err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "chat-app.pod.yaml"), mustYAML(&got), 0o644); err != nil {
		return "", fmt.Errorf("save the injected pod: %w", err)
	}
	fmt.Printf("    injected: %s (the whole pod is in %s)\n", got.Annotations[naming.AnnotationInjected], filepath.Join(stateDir, "chat-app.pod.yaml"))

	k := &harness.Kubelet{Client: c, Clientset: cs, Pod: &got, Root: filepath.Join(stateDir, "pod-root")}
	sidecar, err := k.Sidecar()
	if err != nil {
		return "", err
	}
	args, env, err := k.Prepare(ctx, sidecar)
	if err != nil {
		return "", err
	}
	k.KeepTokensFresh(ctx)
	lim, err := start("limiter", limiterBin, args, env)
	if err != nil {
		return "", err
	}
	if err := harness.Poll(ctx, time.Minute, "the limiter's /readyz", func() error {
		if lim.Exited() {
			return harness.StopPolling(fmt.Errorf("the limiter exited:\n%s", lim.Logs()))
		}
		return harness.HTTPOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
	}); err != nil {
		return "", err
	}
	return fmt.Sprintf("http://127.0.0.1:%d", proxyPort), nil
}

// demoApp is the application in the pod: it calls the providers' APIs through its
// sidecar exactly as it would call them directly, with no key of its own.
type demoApp struct {
	proxy               string
	ok, limited, failed atomic.Int64
}

func (a *demoApp) run(ctx context.Context, rate int) {
	client := &http.Client{Timeout: 30 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(max(1, rate)))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		go a.call(ctx, client, i)
	}
}

func (a *demoApp) call(ctx context.Context, c *http.Client, i int) {
	var req *http.Request
	var err error
	// Three in four go to Claude, in Anthropic's own dialect: the chain serves them
	// from its Claude entry on, so when Claude fails they move down the chain.
	anthropicCall := i%4 != 3
	want := `"object":"chat.completion"`
	if anthropicCall {
		want = `"type":"message"`
		body := fmt.Sprintf(`{"model":"claude-sonnet-4","max_tokens":64,"messages":[{"role":"user","content":"Summarise order %d in one line."}]}`, i)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, a.proxy+"/v1/messages", strings.NewReader(body))
	} else {
		// The chain's alias: the sidecar starts at the chain's first entry.
		body := fmt.Sprintf(`{"model":"chat-default","max_tokens":64,"messages":[{"role":"system","content":"You are a helpful shop assistant."},{"role":"user","content":"Where is order %d?"}]}`, i)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, a.proxy+"/v1/chat/completions", strings.NewReader(body))
	}
	if err != nil {
		a.failed.Add(1)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	// An interactive app: a request moves on after a short wait for an entry's
	// quota instead of queueing for it.
	req.Header.Set("X-Aiquota-Priority", "1")
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			a.failed.Add(1)
		}
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		// Whoever served it, the answer is in the dialect the app asked in.
		if !strings.Contains(string(b), want) {
			a.failed.Add(1)
			return
		}
		a.ok.Add(1)
	case http.StatusTooManyRequests:
		a.limited.Add(1)
	default:
		a.failed.Add(1)
	}
}

func (a *demoApp) summary() string {
	return fmt.Sprintf("%d ok, %d rate-limited, %d failed", a.ok.Load(), a.limited.Load(), a.failed.Load())
}

// demoSeen is what the resources' status has shown so far: a quota with an active
// sidecar and utilisation, an open breaker and failovers with the chain's active
// entry moved off Claude while the account failed, and Claude active again after
// it recovered.
type demoSeen struct {
	Used, Open, MovedOn, Returned bool
}

// update reads the status and reports whether it has shown everything.
func (d *demoSeen) update(ctx context.Context, c client.Client, recovered bool) (bool, error) {
	var pq quotav1alpha1.ProviderQuota
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "openai-tier3"}, &pq); err != nil {
		return false, fmt.Errorf("get openai-tier3: %w", err)
	}
	var cbp quotav1alpha1.CircuitPolicy
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "standard"}, &cbp); err != nil {
		return false, fmt.Errorf("get standard: %w", err)
	}
	var fc quotav1alpha1.FallbackChain
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "chat-default"}, &fc); err != nil {
		return false, fmt.Errorf("get chat-default: %w", err)
	}
	d.Used = d.Used || (pq.Status.Utilization != nil && pq.Status.Utilization.RequestsPercent > 0 && pq.Status.ActiveSidecars > 0 && pq.Status.TokensToday > 0)
	d.Open = d.Open || cbp.Status.OpenBreakers > 0
	active := fc.Status.ActiveModel
	d.MovedOn = d.MovedOn || (fc.Status.Failovers.Total > 0 && active != "" && active != "claude-sonnet-4")
	d.Returned = d.Returned || (recovered && d.MovedOn && active == "claude-sonnet-4")
	return d.Used && d.Open && d.MovedOn && d.Returned, nil
}

func simFaults(simURL string, account int, faults string) error {
	req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/sim/faults?account=%d", simURL, account), strings.NewReader(faults))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("set simulator faults: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("set simulator faults: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

func kubectl(ctx context.Context, kubeconfig string, args ...string) error {
	return kubectlEnv(ctx, kubeconfig, nil, args...)
}

// kubectlEnv runs kubectl with env added to this process's environment. The
// kubeconfig goes in KUBECONFIG, as a user exports it: kubectl refuses flags before
// a plugin's name.
func kubectlEnv(ctx context.Context, kubeconfig string, env []string, args ...string) error {
	fmt.Printf("$ kubectl %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, testenv.Kubectl(), args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+kubeconfig), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %s: %w", args[0], err)
	}
	return nil
}

func mustYAML(v any) []byte {
	b, err := sigsyaml.Marshal(v)
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

func step(s string) { fmt.Println("==> " + strings.TrimSpace(s)) }
