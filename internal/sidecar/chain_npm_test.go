package sidecar

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/simulator"
)

// TestNpmSDKsStreamThroughTheChain: the npm openai and @anthropic-ai/sdk packages,
// where node and the packages (bin/sdk-node, installed by the e2e tests) are
// present, stream through the alias with their primary down and parse what the
// other dialect's entry answered.
func TestNpmSDKsStreamThroughTheChain(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	modules, err := filepath.Abs(filepath.Join("..", "..", "bin", "sdk-node", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "openai")); err != nil {
		t.Skipf("the npm SDKs are not installed in %s (the e2e SDK test installs them)", modules)
	}
	dir := t.TempDir()
	script, err := os.ReadFile(filepath.Join("testdata", "chain-sdk.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "chain-sdk.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode            string
		primary, second chainAccount
	}{
		{"openai", openAIEntry(), anthropicEntry()},
		{"anthropic", anthropicEntry(), openAIEntry()},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			tc.primary.acct.Faults.Outages = []simulator.Outage{{End: simulator.Duration(time.Hour)}}
			e := chainEnv(t, nil, tc.primary, tc.second)
			out, err := exec.CommandContext(t.Context(), node, filepath.Join(dir, "chain-sdk.mjs"), tc.mode, e.proxy.URL).CombinedOutput()
			if err != nil {
				t.Fatalf("%s SDK through the chain: %v\n%s", tc.mode, err, out)
			}
			var got struct{ Text, End string }
			if err := json.Unmarshal(out, &got); err != nil || got.Text == "" || got.End == "" {
				t.Fatalf("%s SDK printed %s, want a complete answer", tc.mode, out)
			}
			if n := e.sim.Stats().Accounts[1].Requests; n != 1 {
				t.Errorf("the second entry's account saw %d requests, want the one the SDK's call moved to", n)
			}
		})
	}
}
