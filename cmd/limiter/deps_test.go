package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/aiquota/aiquota/internal/testkit"
)

// TestLimiterLinksNoReferenceTokenizer keeps the reference tokenizer and its
// regular expression engine out of the limiter: they are the tokenizer's
// generator input and test oracle, and linked they cost megabytes of memory
// per pod (docs/ARCHITECTURE.md, "Token counting").
func TestLimiterLinksNoReferenceTokenizer(t *testing.T) {
	pkgs := testkit.LinkedPackages(t)
	for _, pkg := range pkgs {
		for _, banned := range []string{"github.com/tiktoken-go/", "github.com/dlclark/regexp2"} {
			if strings.HasPrefix(pkg, banned) {
				t.Errorf("the limiter links %s", pkg)
			}
		}
	}
	if !slices.Contains(pkgs, "github.com/aiquota/aiquota/internal/tokenizer") {
		t.Error("the limiter does not link internal/tokenizer: is the dependency list what this test thinks?")
	}
}
