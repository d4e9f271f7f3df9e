package limiterconfig

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/aiquota/aiquota/internal/testkit"
)

func TestCatalogueIsWellFormed(t *testing.T) {
	c := ModelCatalogue()
	if c.Version == "" || c.Source == "" {
		t.Errorf("models.json has version %q, source %q; both are required", c.Version, c.Source)
	}
	seen := map[string]bool{}
	for _, m := range c.Models {
		if seen[m.Name] {
			t.Errorf("%s is listed twice", m.Name)
		}
		seen[m.Name] = true
		if m.ContextWindow <= 0 || m.MaxOutputTokens < 0 || m.MaxOutputTokens > m.ContextWindow {
			t.Errorf("%s: window %d, max output %d", m.Name, m.ContextWindow, m.MaxOutputTokens)
		}
		if base, ok := withoutVersionSuffix(m.Name); ok {
			t.Errorf("%s looks like a snapshot of %s; list the model it is a version of", m.Name, base)
		}
	}
}

func TestLookupModel(t *testing.T) {
	for _, tc := range []struct {
		model string
		want  ModelInfo // zero: not found
	}{
		{"gpt-5.5", ModelInfo{Name: "gpt-5.5", ContextWindow: 1_050_000, MaxOutputTokens: 128_000}},
		{"claude-opus-4-7", ModelInfo{Name: "claude-opus-4-7", ContextWindow: 1_000_000, MaxOutputTokens: 128_000}},
		// Gemini: 1,048,576 input tokens plus 65,536 output tokens.
		{"gemini-2.5-pro", ModelInfo{Name: "gemini-2.5-pro", ContextWindow: 1_114_112, MaxOutputTokens: 65_536}},
		{"deepseek-chat", ModelInfo{Name: "deepseek-chat", ContextWindow: 1_000_000}},
		// Dated snapshots and numbered versions are their model.
		{"claude-sonnet-4-20250514", ModelInfo{Name: "claude-sonnet-4", ContextWindow: 200_000, MaxOutputTokens: 64_000}},
		{"claude-haiku-4-5-20251001", ModelInfo{Name: "claude-haiku-4-5", ContextWindow: 200_000, MaxOutputTokens: 64_000}},
		{"gpt-4o-2024-08-06", ModelInfo{Name: "gpt-4o", ContextWindow: 128_000, MaxOutputTokens: 16_384}},
		{"gemini-2.0-flash-001", ModelInfo{Name: "gemini-2.0-flash", ContextWindow: 1_056_768, MaxOutputTokens: 8_192}},
		// A sibling is not its family: no guess.
		{"claude-opus-4-8", ModelInfo{}},
		{"gpt-5.5-pro", ModelInfo{}},
		{"gpt-4o-2024", ModelInfo{}},
		{"gemini-2.5-pro-preview-05-06", ModelInfo{}},
		{"my-finetune", ModelInfo{}},
		{"", ModelInfo{}},
		{"-001", ModelInfo{}},
	} {
		got, ok := LookupModel(tc.model)
		if ok != (tc.want != ModelInfo{}) {
			t.Errorf("LookupModel(%q) found = %v, want %v", tc.model, ok, !ok)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("LookupModel(%q) (-want +got):\n%s", tc.model, diff)
		}
	}
}

// TestDocsListTheModels keeps docs/models.md's table equal to the catalogue.
func TestDocsListTheModels(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "Data version **%s**. %s\n\n| model | context window | max output tokens |\n|---|---|---|\n",
		ModelCatalogue().Version, ModelCatalogue().Source)
	for _, m := range ModelCatalogue().Models {
		out := "-"
		if m.MaxOutputTokens > 0 {
			out = strconv.FormatInt(m.MaxOutputTokens, 10)
		}
		fmt.Fprintf(&b, "| `%s` | %d | %s |\n", m.Name, m.ContextWindow, out)
	}
	testkit.DocBlock(t, "../../docs/models.md", "models", b.String())
}
