package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLimiterLinksNoReferenceTokenizer keeps the reference tokenizer and its
// regular expression engine out of the limiter: they are the tokenizer's
// generator input and test oracle, and linked they cost megabytes of memory
// per pod (docs/ARCHITECTURE.md, "Token counting").
func TestLimiterLinksNoReferenceTokenizer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/tiktoken-go/", "github.com/dlclark/regexp2"} {
			if strings.HasPrefix(pkg, banned) {
				t.Errorf("the limiter links %s", pkg)
			}
		}
	}
	if !strings.Contains(string(out), "github.com/aiquota/aiquota/internal/tokenizer\n") {
		t.Error("the limiter does not link internal/tokenizer: is the dependency list what this test thinks?")
	}
}
