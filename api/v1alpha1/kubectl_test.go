package v1alpha1_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aiquota/aiquota/internal/testenv"
)

// kubectl runs the real kubectl against the envtest API server.
func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	kc, err := env.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Kubectl(), append([]string{"--kubeconfig", kc}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestKubectlServerDryRunSamples(t *testing.T) {
	ns := newNamespace(t)
	out, err := kubectl(t, "apply", "--dry-run=server", "-n", ns, "-f", filepath.Join(testenv.Root(), "config", "samples"))
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server of the samples: %v\n%s", err, out)
	}
	for _, want := range []string{
		"providerquota.quota.aiquota.dev/openai-tier3 created (server dry run)",
		"providerquota.quota.aiquota.dev/anthropic-sonnet created (server dry run)",
		"providerquota.quota.aiquota.dev/gemini-paygo created (server dry run)",
		"providerquota.quota.aiquota.dev/deepseek-basic created (server dry run)",
		"fallbackchain.quota.aiquota.dev/chat-default created (server dry run)",
		"circuitpolicy.quota.aiquota.dev/standard created (server dry run)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl output lacks %q:\n%s", want, out)
		}
	}
}

func TestKubectlRejectsBadManifestNamingTheField(t *testing.T) {
	ns := newNamespace(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, `apiVersion: quota.aiquota.dev/v1alpha1
kind: CircuitPolicy
metadata: {name: bad}
spec:
  retry: {baseDelay: 10s, maxDelay: 2s}
`)
	out, err := kubectl(t, "apply", "-n", ns, "-f", bad)
	if err == nil {
		t.Fatalf("kubectl applied an invalid CircuitPolicy:\n%s", out)
	}
	if !strings.Contains(out, "spec.retry.maxDelay") || !strings.Contains(out, "maxDelay must not be shorter than baseDelay") {
		t.Errorf("kubectl's error does not name the field and the rule:\n%s", out)
	}
}

func TestKubectlExplainDocumentsLimits(t *testing.T) {
	out, err := kubectl(t, "explain", "providerquota.spec.limits")
	if err != nil {
		t.Fatalf("kubectl explain: %v\n%s", err, out)
	}
	for _, want := range []string{
		"requestsPerMinute\t<integer>", "requestsPerMinute (RPM), a token bucket refilled continuously",
		"tokensPerMinute\t<integer>", "inputTokensPerMinute\t<integer>", "outputTokensPerMinute\t<integer>",
		"maxConcurrency\t<integer>", "requestsPerDay\t<integer>", "tokensPerDay\t<integer>",
		"An omitted limit is not enforced",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain lacks %q:\n%s", want, out)
		}
	}
}

func TestKubectlGetShowsPrinterColumns(t *testing.T) {
	ns := newNamespace(t)
	out, err := kubectl(t, "apply", "-n", ns, "-f", filepath.Join(testenv.Root(), "config", "samples"))
	if err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	for kind, header := range map[string][]string{
		"providerquotas":  {"PROVIDER", "TIER", "RPM%", "TPM%", "SIDECARS", "READY"},
		"fallbackchains":  {"FIRST MODEL", "ACTIVE", "FAILOVERS", "READY"},
		"circuitpolicies": {"THRESHOLD", "RECOVERY", "OPEN", "READY"},
	} {
		out, err := kubectl(t, "get", kind, "-n", ns)
		if err != nil {
			t.Fatalf("kubectl get %s: %v\n%s", kind, err, out)
		}
		first := strings.SplitN(out, "\n", 2)[0]
		for _, h := range header {
			if !strings.Contains(first, h) {
				t.Errorf("kubectl get %s header %q lacks %q", kind, first, h)
			}
		}
	}
	out, err = kubectl(t, "get", "aiquota", "-n", ns, "-o", "name")
	if err != nil {
		t.Fatalf("kubectl get aiquota: %v\n%s", err, out)
	}
	if n := len(strings.Fields(out)); n != 6 {
		t.Errorf("the aiquota category lists %d objects, want the 6 samples:\n%s", n, out)
	}
	out, err = kubectl(t, "get", "fc", "chat-default", "-n", ns)
	if err != nil || !strings.Contains(out, "gpt-5.5") {
		t.Errorf("kubectl get fc (short name) should show the first model gpt-5.5: %v\n%s", err, out)
	}
}
