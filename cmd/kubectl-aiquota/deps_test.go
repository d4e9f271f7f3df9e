package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/aiquota/aiquota/internal/testkit"
)

// TestPluginLinksNoServer keeps the manager's servers out of the plugin: it reads the
// injected annotation through internal/injection, not the webhook, so a kubectl
// plugin does not carry an admission server, the hub or the reconcilers.
func TestPluginLinksNoServer(t *testing.T) {
	pkgs := testkit.LinkedPackages(t)
	banned := []string{
		"github.com/aiquota/aiquota/internal/webhook", "github.com/aiquota/aiquota/internal/hub",
		"github.com/aiquota/aiquota/internal/controller", "sigs.k8s.io/controller-runtime/pkg/webhook",
		"sigs.k8s.io/controller-runtime/pkg/manager",
	}
	for _, pkg := range pkgs {
		for _, b := range banned {
			if pkg == b || strings.HasPrefix(pkg, b+"/") {
				t.Errorf("kubectl-aiquota links %s", pkg)
			}
		}
	}
	if !slices.Contains(pkgs, "github.com/aiquota/aiquota/internal/injection") {
		t.Error("kubectl-aiquota does not link internal/injection: is the dependency list what this test thinks?")
	}
}
