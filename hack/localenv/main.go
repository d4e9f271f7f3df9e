// Command localenv runs aiquota on an embedded default, with no cluster and no API
// key: a real kube-apiserver and etcd (envtest), the provider simulator, the manager,
// and the sample quotas pointed at the simulator. It prints `kubectl get` of the
// samples and keeps everything running until interrupted (or exits after one round
// with --once).
//
//	make run-local            # or: KUBEBUILDER_ASSETS=... go run ./hack/localenv
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/aiquota/aiquota/internal/testenv"
	"github.com/aiquota/aiquota/test/harness"
)

const namespace = "demo"

// simulatorKeys are the simulator's built-in accounts, stored in the Secrets the
// samples name, so the sidecars authenticate to the simulator as to the real thing.
var simulatorKeys = map[string]string{
	"openai-api-key":    "sk-sim-openai",
	"anthropic-api-key": "sk-sim-anthropic",
	"gemini-api-key":    "sk-sim-gemini",
	"deepseek-api-key":  "sk-sim-deepseek",
}

func main() {
	once := flag.Bool("once", false, "print the status once everything is up, then shut down")
	wait := flag.Duration("wait", 2*time.Minute, "how long to wait for the samples to become Ready")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *once, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "localenv:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, once bool, wait time.Duration) error {
	root := testenv.Root()
	stateDir := filepath.Join(root, "bin", "local")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", stateDir, err)
	}
	logFile, err := os.Create(filepath.Join(stateDir, "processes.log"))
	if err != nil {
		return fmt.Errorf("create process log: %w", err)
	}
	defer logFile.Close()

	step("building manager, limiter and simulator")
	bins, err := harness.Build(ctx, root, filepath.Join(root, "bin"), "./cmd/manager", "./cmd/limiter", "./cmd/providersim")
	if err != nil {
		return err
	}

	step("starting kube-apiserver and etcd, installing the CRDs")
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() {
		step("stopping the API server")
		_ = env.Stop()
	}()
	kubeconfig, err := env.WriteKubeconfig(stateDir)
	if err != nil {
		return err
	}

	step("starting the provider simulator")
	sim, err := harness.Start("providersim", bins["providersim"], []string{"--addr", "127.0.0.1:0"}, nil, logFile)
	if err != nil {
		return err
	}
	defer sim.Stop(10 * time.Second) //nolint:errcheck // best effort on the way out
	m, err := sim.WaitFor(regexp.MustCompile(`providersim listening.* addr=(\S+)`), 30*time.Second)
	if err != nil {
		return err
	}
	simURL := "http://" + m[1]

	step("starting the manager")
	mgr, err := harness.Start("manager", bins["manager"], []string{
		"--kubeconfig", kubeconfig,
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", "127.0.0.1:0",
	}, nil, logFile)
	if err != nil {
		return err
	}
	defer mgr.Stop(10 * time.Second) //nolint:errcheck // best effort on the way out
	if _, err := mgr.WaitFor(regexp.MustCompile(`[Ss]tarting workers|starting manager`), time.Minute); err != nil {
		return err
	}

	step(fmt.Sprintf("applying the samples in namespace %q, pointed at the simulator (%s)", namespace, simURL))
	if err := applySamples(ctx, env.Client, root, simURL); err != nil {
		return err
	}

	step("waiting for the samples to become Ready")
	if err := waitReady(ctx, kubeconfig, wait); err != nil {
		fmt.Fprintln(os.Stderr, "localenv:", err)
	}
	show(kubeconfig)

	fmt.Printf("\nThe local API server keeps running. In another shell:\n  export KUBECONFIG=%s\n  %s get aiquota -n %s\n", kubeconfig, testenv.Kubectl(), namespace)
	fmt.Printf("Process logs: %s\n", logFile.Name())
	if once {
		return nil
	}
	fmt.Println("Press Ctrl-C to stop.")
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			show(kubeconfig)
		}
	}
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
		if err := c.Create(ctx, u); err != nil {
			return fmt.Errorf("create %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

// waitReady waits until every sample reports Ready=True, using the real kubectl.
func waitReady(ctx context.Context, kubeconfig string, timeout time.Duration) error {
	cmd := exec.CommandContext(ctx, testenv.Kubectl(), "--kubeconfig", kubeconfig, "wait", "-n", namespace,
		"--for=condition=Ready", "providerquotas,fallbackchains,circuitpolicies", "--all", "--timeout", timeout.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("samples not Ready within %s: %w\n%s", timeout, err, out)
	}
	return nil
}

func show(kubeconfig string) {
	fmt.Printf("\n$ kubectl get providerquotas,fallbackchains,circuitpolicies -n %s   (%s)\n", namespace, time.Now().Format(time.TimeOnly))
	cmd := exec.Command(testenv.Kubectl(), "--kubeconfig", kubeconfig, "get", "providerquotas,fallbackchains,circuitpolicies", "-n", namespace)
	out, err := cmd.CombinedOutput()
	fmt.Print(string(out))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubectl get:", err)
	}
}

func step(s string) { fmt.Println("==> " + strings.TrimSpace(s)) }
