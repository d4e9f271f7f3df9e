package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/test/harness"
)

var listening = regexp.MustCompile(`msg="providersim listening" addr=(\S+)`)

// TestBinaryServesAndStopsOnSIGTERM runs the real binary: it listens on a free port,
// answers a request as the default OpenAI account, and exits 0 on SIGTERM.
func TestBinaryServesAndStopsOnSIGTERM(t *testing.T) {
	bins, err := harness.Build(t.Context(), filepath.Join("..", ".."), t.TempDir(), "./cmd/providersim")
	if err != nil {
		t.Fatal(err)
	}
	sim := harness.StartTest(t, "providersim", bins["providersim"], []string{"--addr", "127.0.0.1:0", "--seed", "5"}, nil, time.Second)
	addr := sim.MustWaitFor(t, listening, 30*time.Second)[1]
	if !strings.Contains(sim.Logs(), "seed=5") {
		t.Errorf("the --seed flag did not reach the config: %s", sim.Logs())
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-5.5","messages":[{"role":"user","content":"hello"}],"max_tokens":4}`))
	req.Header.Set("Authorization", "Bearer sk-sim-openai")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		Usage struct {
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode the response: %v\n%s", err, body)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("x-ratelimit-limit-requests") != "10000" || got.Usage.CompletionTokens != 4 {
		t.Fatalf("status %d, RPM limit header %q, completion tokens %d; want 200, 10000 (OpenAI Tier 3), 4\n%s",
			resp.StatusCode, resp.Header.Get("x-ratelimit-limit-requests"), got.Usage.CompletionTokens, body)
	}

	if err := sim.Stop(30 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, sim.Logs())
	}
	if !strings.Contains(sim.Logs(), "providersim stopped") {
		t.Errorf("no clean stop logged:\n%s", sim.Logs())
	}
}

func TestPrintConfigRoundTrips(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"--print-config", "--seed", "9"}, &out, &errOut); err != nil {
		t.Fatalf("run: %v %s", err, errOut.String())
	}
	cfg, err := simulator.ParseConfig(out.Bytes())
	if err != nil {
		t.Fatalf("printed config does not parse: %v\n%s", err, out.String())
	}
	if cfg.Seed != 9 || len(cfg.Accounts) != 4 {
		t.Errorf("printed config: seed %d, %d accounts; want 9 and 4", cfg.Seed, len(cfg.Accounts))
	}
	// A file written from it is read back with --config.
	path := filepath.Join(t.TempDir(), "sim.json")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run([]string{"--config", path, "--print-config"}, &out, &errOut); err != nil {
		t.Fatalf("--config of the printed file: %v", err)
	}
}

func TestBadInvocations(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid.json")
	if err := os.WriteFile(invalid, []byte(`{"accounts":[{"key":"k","provider":"nope"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", filepath.Join(dir, "missing.json")}, "read config"},
		{[]string{"--config", invalid}, `accounts[0].provider: is "nope"`},
		{[]string{"--addr", "256.0.0.1:1"}, "listen"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--no-such-flag"}, "flag provided but not defined"},
	} {
		if err := run(tc.args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
}
