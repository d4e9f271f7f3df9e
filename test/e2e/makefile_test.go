package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aiquota/aiquota/internal/testenv"
)

// TestControlPlaneAssetsFromTheEnvironment: a KUBEBUILDER_ASSETS the developer set
// is used as it is by `make envtest` (and so by every target that needs the API
// server) and by hack/build-control-plane.sh, instead of building from source; one
// without kube-apiserver or etcd is refused with a message naming what is missing.
func TestControlPlaneAssetsFromTheEnvironment(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root := testenv.Root()
	assets := t.TempDir()
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if err := os.WriteFile(filepath.Join(assets, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(env string, name string, args ...string) (string, string, error) {
		cmd := exec.CommandContext(t.Context(), name, args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "KUBEBUILDER_ASSETS="+env)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return strings.TrimSpace(stdout.String()), stderr.String(), err
	}
	for _, c := range [][]string{{"make", "-s", "envtest"}, {filepath.Join(root, "hack", "build-control-plane.sh")}} {
		out, stderr, err := run(assets, c[0], c[1:]...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", c, err, stderr)
		}
		if out != assets {
			t.Errorf("%v with KUBEBUILDER_ASSETS=%s printed %q, want the directory as set", c, assets, out)
		}
		if strings.Contains(stderr, "building") {
			t.Errorf("%v built the control plane although KUBEBUILDER_ASSETS was set:\n%s", c, stderr)
		}
	}

	if err := os.Remove(filepath.Join(assets, "etcd")); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := run(assets, filepath.Join(root, "hack", "build-control-plane.sh"))
	if err == nil || !strings.Contains(stderr, "has no executable etcd") {
		t.Errorf("assets without etcd: want a refusal naming etcd, got err=%v stderr=%q", err, stderr)
	}
}
