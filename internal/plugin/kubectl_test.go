package plugin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aiquota/aiquota/internal/testenv"
)

// TestKubectlFindsThePlugin builds kubectl-aiquota, puts it on PATH and runs it the
// way users do, through the real kubectl: `kubectl aiquota top --once`. The
// namespace holds objects without timestamps, so the output matches the in-process
// golden file whatever the clock says.
func TestKubectlFindsThePlugin(t *testing.T) {
	cl := apiServer(t)
	kubectl := testenv.Kubectl()
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("kubectl from the control plane build: %v", err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "kubectl-aiquota"), "github.com/aiquota/aiquota/cmd/kubectl-aiquota")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+cl.kubeconfig)

	list := exec.Command(kubectl, "plugin", "list", "--name-only")
	list.Env = env
	out, err := list.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kubectl-aiquota") {
		t.Errorf("kubectl plugin list: %v\n%s", err, out)
	}

	top := exec.Command(kubectl, "aiquota", "top", "--once", "-n", "lab")
	top.Env = env
	var stderr strings.Builder
	top.Stderr = &stderr
	got, err := top.Output()
	if err != nil {
		t.Fatalf("kubectl aiquota top --once: %v\n%s", err, stderr.String())
	}
	checkGolden(t, "top-unreported", string(got))
}
