package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"google.golang.org/genai"
	corev1 "k8s.io/api/core/v1"

	"github.com/aiquota/aiquota/internal/naming"
)

// setAppEnv puts the app container's literal env into the test process, as the
// kubelet would into the app's: the SDKs below read their key and base URL from it.
func setAppEnv(t *testing.T, app corev1.Container) []string {
	t.Helper()
	var env []string
	for _, e := range app.Env {
		if e.ValueFrom != nil {
			continue
		}
		t.Setenv(e.Name, e.Value)
		env = append(env, e.Name+"="+e.Value)
	}
	for _, name := range []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"} {
		if os.Getenv(name) != naming.PlaceholderAPIKey {
			t.Errorf("%s in the app's env is %q, want the placeholder key", name, os.Getenv(name))
		}
	}
	return env
}

// checkZeroCodeSDKs calls the sidecar through each official SDK constructed with no
// arguments, as an app with no code change would: no key of its own, no base URL in
// code. The Go SDKs run in this process; the Node ones, where node is installed,
// in a child process with the app's env.
func checkZeroCodeSDKs(ctx context.Context, t *testing.T, root string, appEnv []string) {
	t.Helper()
	t.Run("anthropic-sdk-go", func(t *testing.T) {
		client := anthropic.NewClient()
		msg, err := client.Messages.New(ctx, anthropic.MessageNewParams{
			Model:     "claude-sonnet-4",
			MaxTokens: 20,
			Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello"))},
		})
		if err != nil {
			t.Fatalf("messages through the sidecar: %v", err)
		}
		if len(msg.Content) == 0 || msg.Content[0].Text == "" {
			t.Errorf("empty message: %+v", msg)
		}
	})
	t.Run("genai", func(t *testing.T) {
		gc, err := genai.NewClient(ctx, nil)
		if err != nil {
			t.Fatalf("genai.NewClient with the app's env: %v", err)
		}
		resp, err := gc.Models.GenerateContent(ctx, "gemini-2.5-flash", genai.Text("Say hello"), nil)
		if err != nil {
			t.Fatalf("generateContent through the sidecar: %v", err)
		}
		if resp.Text() == "" {
			t.Errorf("empty answer: %+v", resp)
		}
	})
	t.Run("npm", func(t *testing.T) {
		node, err := exec.LookPath("node")
		if err != nil {
			t.Skip("node is not installed: the npm openai and @anthropic-ai/sdk check needs it (.ci/run installs it)")
		}
		dir := npmInstall(ctx, t, root)
		cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "zero-code.mjs"))
		cmd.Dir = dir
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, appEnv...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node zero-code.mjs: %v\n%s", err, stderr.String())
		}
		got := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			var r struct{ SDK, Text string }
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("node output %q: %v", sc.Text(), err)
			}
			got[r.SDK] = r.Text
		}
		for _, sdk := range []string{"openai", "anthropic"} {
			if got[sdk] == "" {
				t.Errorf("the npm %s SDK got no answer; output:\n%s", sdk, out)
			}
		}
	})
}

// npmInstall installs the pinned npm SDKs of testdata/sdk-node into bin/sdk-node
// (outside the tree, reused while the lock file is unchanged) and returns that
// directory with the script beside its node_modules.
func npmInstall(ctx context.Context, t *testing.T, root string) string {
	t.Helper()
	src := filepath.Join(root, "test", "e2e", "testdata", "sdk-node")
	dir := filepath.Join(root, "bin", "sdk-node")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"package.json", "package-lock.json", "zero-code.mjs"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stamp := filepath.Join(dir, "node_modules", ".installed-lock.json")
	if prev, err := os.ReadFile(stamp); err == nil && bytes.Equal(prev, lock) {
		return dir
	}
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, strings.TrimSpace(string(out)))
	}
	if err := os.WriteFile(stamp, lock, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
