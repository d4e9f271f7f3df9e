package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPluginLinksNoServer keeps the manager's servers out of the plugin: it reads the
// injected annotation through internal/injection, not the webhook, so a kubectl
// plugin does not carry an admission server, the hub or the reconcilers.
func TestPluginLinksNoServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{
			"github.com/aiquota/aiquota/internal/webhook", "github.com/aiquota/aiquota/internal/hub",
			"github.com/aiquota/aiquota/internal/controller", "sigs.k8s.io/controller-runtime/pkg/webhook",
			"sigs.k8s.io/controller-runtime/pkg/manager",
		} {
			if pkg == banned || strings.HasPrefix(pkg, banned+"/") {
				t.Errorf("kubectl-aiquota links %s", pkg)
			}
		}
	}
	if !strings.Contains(string(out), "github.com/aiquota/aiquota/internal/injection\n") {
		t.Error("kubectl-aiquota does not link internal/injection: is the dependency list what this test thinks?")
	}
}
