package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/aiquota/aiquota/internal/testenv"
)

// pinnedTool is the tool the Makefile installs as bin/<name> (the environment
// variable env overrides it); t fails, saying what needs it, when it is missing.
func pinnedTool(t *testing.T, root, name, env, neededFor string) string {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		bin = filepath.Join(root, "bin", name)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is needed %s: run `make %s` or set %s (%v)", name, neededFor, name, env, err)
	}
	return bin
}

// helmBin is the pinned helm.
func helmBin(t *testing.T, root string) string {
	t.Helper()
	return pinnedTool(t, root, "helm", "HELM", "for the chart tests")
}

// helmRun runs the real helm and returns its standard output.
func helmRun(t *testing.T, root string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), helmBin(t, root), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, errors.New(strings.TrimSpace(err.Error() + ": " + stderr.String()))
	}
	return out, nil
}

// helmTemplate renders the chart as `helm install aiquota -n aiquota-system` would.
func helmTemplate(t *testing.T, root string, set ...string) installation {
	t.Helper()
	args := []string{"template", "aiquota", filepath.Join(root, "charts", "aiquota"), "--namespace", "aiquota-system", "--kube-version", "1.37.0"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helmRun(t, root, args...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return decodeObjects(t, out)
}

// startAPIServer starts envtest's kube-apiserver and etcd for one test and stops
// them when it ends.
func startAPIServer(tb testing.TB, opts ...func(*envtest.Environment)) *testenv.Env {
	tb.Helper()
	env, err := testenv.Start(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Errorf("stop envtest: %v", err)
		}
	})
	return env
}

// startAPIServerAt starts an API server as startAPIServer does and writes a
// kubeconfig for it into dir, for the real binaries; it returns the kubeconfig's path.
func startAPIServerAt(tb testing.TB, dir string, opts ...func(*envtest.Environment)) (*testenv.Env, string) {
	tb.Helper()
	env := startAPIServer(tb, opts...)
	kubeconfig, err := env.WriteKubeconfig(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return env, kubeconfig
}

// withoutCRDs leaves the CRDs to the chart, which installs them: CRDs installed by
// envtest would not be Helm's.
func withoutCRDs(e *envtest.Environment) { e.CRDDirectoryPaths, e.ErrorIfCRDPathMissing = nil, false }

func decodeObjects(t *testing.T, out []byte) installation {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	var inst installation
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			inst.objects = append(inst.objects, u)
		}
	}
	return inst
}

func TestHelmChartLintsAndRendersEveryVariant(t *testing.T) {
	root := testenv.Root()
	chart := filepath.Join(root, "charts", "aiquota")
	if out, err := helmRun(t, root, "lint", "--strict", chart, "--kube-version", "1.37.0"); err != nil {
		t.Fatalf("helm lint --strict: %v\n%s", err, out)
	}
	kinds := func(in installation) map[string]int {
		m := map[string]int{}
		for _, u := range in.objects {
			m[u.GetKind()]++
		}
		return m
	}
	def := kinds(helmTemplate(t, root))
	for kind, n := range map[string]int{"CustomResourceDefinition": 3, "NetworkPolicy": 1, "Deployment": 1, "MutatingWebhookConfiguration": 1, "Service": 3, "Secret": 1, "ServiceAccount": 1, "PodDisruptionBudget": 1} {
		if def[kind] != n {
			t.Errorf("default render has %d %s, want %d", def[kind], kind, n)
		}
	}
	all := kinds(helmTemplate(t, root, "certificates.mode=cert-manager", "metrics.serviceMonitor.enabled=true",
		"metrics.podMonitor.enabled=true", "metrics.prometheusRule.enabled=true", "controlChannel.enabled=false"))
	// The one Secret is the metrics scraper's token; cert-manager owns the certificate's.
	for kind, n := range map[string]int{"Issuer": 1, "Certificate": 1, "Secret": 1, "ServiceAccount": 2, "ServiceMonitor": 1, "PodMonitor": 1, "PrometheusRule": 1, "Service": 2} {
		if all[kind] != n {
			t.Errorf("cert-manager + monitoring, control off: %d %s, want %d", all[kind], kind, n)
		}
	}
	if _, err := helmRun(t, root, "template", "x", chart, "--kube-version", "1.28.0"); err == nil || !strings.Contains(err.Error(), "kubeVersion") {
		t.Errorf("a cluster older than the chart supports: want a kubeVersion error, got %v", err)
	}
}

// TestHelmInstallOnARealAPIServer installs and uninstalls the chart with the real
// helm against the real API server, so every rendered object passes the server's
// validation and the release lifecycle works.
func TestHelmInstallOnARealAPIServer(t *testing.T) {
	root := testenv.Root()
	_, kc := startAPIServerAt(t, t.TempDir(), withoutCRDs)
	chart := filepath.Join(root, "charts", "aiquota")
	out, err := helmRun(t, root, "install", "aiquota", chart, "--kubeconfig", kc, "--namespace", "aiquota-system",
		"--create-namespace", "--set", "metrics.prometheusRule.enabled=false")
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "STATUS: deployed") || !strings.Contains(string(out), "aiquota.dev/inject") {
		t.Errorf("helm install output lacks the deployed status or the notes:\n%s", out)
	}
	got, err := exec.CommandContext(t.Context(), testenv.Kubectl(), "--kubeconfig", kc, "get",
		"deployment,service,mutatingwebhookconfiguration,secret,poddisruptionbudget", "-n", "aiquota-system", "-o", "name").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get: %v\n%s", err, got)
	}
	for _, want := range []string{"deployment.apps/aiquota-manager", "service/aiquota-webhook", "service/aiquota-control",
		"mutatingwebhookconfiguration.admissionregistration.k8s.io/aiquota-pod-injector", "secret/aiquota-serving-cert",
		"poddisruptionbudget.policy/aiquota-manager"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("after helm install, %s is missing:\n%s", want, got)
		}
	}
	if out, err := helmRun(t, root, "upgrade", "aiquota", chart, "--kubeconfig", kc, "--namespace", "aiquota-system", "--set", "replicaCount=3"); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	if out, err := helmRun(t, root, "uninstall", "aiquota", "--kubeconfig", kc, "--namespace", "aiquota-system"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	got, _ = exec.CommandContext(t.Context(), testenv.Kubectl(), "--kubeconfig", kc, "get", "deployment,mutatingwebhookconfiguration", "-A", "-o", "name").CombinedOutput()
	if strings.Contains(string(got), "aiquota") {
		t.Errorf("helm uninstall left objects behind:\n%s", got)
	}
	// The CRDs stay (crds.keep), and with them every quota, chain and policy.
	got, err = exec.CommandContext(t.Context(), testenv.Kubectl(), "--kubeconfig", kc, "get", "crd", "-o", "name").CombinedOutput()
	if err != nil || strings.Count(string(got), "quota.aiquota.dev") != 3 {
		t.Errorf("after helm uninstall the CRDs should be kept: %v\n%s", err, got)
	}
}

// TestManagerMayOnlyGetSecrets: in both installations, no ClusterRole or Role lets
// the manager list or watch Secrets, which would let it enumerate (and read) every
// key in its reach; the credential check needs `get` by name only. (The certificate
// rotator's Role keeps its own Secret's watch; it is named by resourceNames or the
// manager's namespace, so only cluster-wide rules are checked here.)
func TestManagerMayOnlyGetSecrets(t *testing.T) {
	root := testenv.Root()
	for name, inst := range map[string]installation{"config/default": kustomize(t, root), "helm": helmTemplate(t, root)} {
		found := false
		for _, u := range inst.objects {
			if u.GetKind() != "ClusterRole" {
				continue
			}
			rules, _, _ := unstructured.NestedSlice(u.Object, "rules")
			for _, r := range rules {
				rule, _ := r.(map[string]any)
				resources, _, _ := unstructured.NestedStringSlice(rule, "resources")
				if !slices.Contains(resources, "secrets") {
					continue
				}
				found = true
				verbs, _, _ := unstructured.NestedStringSlice(rule, "verbs")
				if !slices.Equal(verbs, []string{"get"}) {
					t.Errorf("%s: ClusterRole %s grants %v on Secrets; want get only", name, u.GetName(), verbs)
				}
			}
		}
		if !found {
			t.Errorf("%s: no ClusterRole grants get on Secrets, which the credential check needs", name)
		}
	}
}
