package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testkit"
)

// reloadEnv's limiter allows 100 requests per minute, the figure the tests'
// expectations and config edits start from.
func reloadEnv(t *testing.T, opts ...func(*Options)) *env {
	acct := simAccount(simOpenAIKey, "openai", simulator.Limits{RequestsPerMinute: 10000})
	acct.Latency.TimeToFirstToken = simulator.Duration(50 * time.Millisecond)
	return newEnv(t, simulator.Config{Seed: 9, Accounts: []simulator.Account{acct}}, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		return openAIConfig(simURL, keyFile(simOpenAIKey), limiterconfig.Limits{RequestsPerMinute: 100})
	}, opts...)
}

func (e *env) currentConfig() *limiterconfig.Config {
	b, err := os.ReadFile(e.cfgPath)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := limiterconfig.Parse(b)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func requestLimit(s State) (rate, level float64) {
	for _, p := range s.Engine.Accounts {
		for _, l := range p.Limits {
			if l.Kind == "requestsPerMinute" {
				return l.RatePerMinute, l.Level
			}
		}
	}
	return 0, 0
}

func TestReloadOnFileRewriteKeepsStateAndInFlightRequests(t *testing.T) {
	e := reloadEnv(t, func(o *Options) { o.PollInterval = time.Hour }) // file events only
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.srv.Watch(ctx)
	for range 10 {
		if resp, _ := e.post("/v1/chat/completions", nil, chatBody); resp.StatusCode != http.StatusOK {
			t.Fatal(resp.Status)
		}
	}
	before := e.state()
	// A request in flight across the reload.
	inflight := make(chan int, 1)
	go func() {
		resp, _ := e.post("/v1/chat/completions", nil, chatBody)
		inflight <- resp.StatusCode
	}()
	testkit.Eventually(t, 30*time.Second, "request in flight", testkit.True(func() bool { return e.state().Engine.Accounts[0].InFlight == 1 }))

	c := e.currentConfig()
	c.Providers[0].Limits.RequestsPerMinute = 200
	e.writeConfig(c)
	testkit.Eventually(t, 30*time.Second, "reload to 200 RPM", testkit.True(func() bool { r, _ := requestLimit(e.state()); return r == 200 }))
	if got := <-inflight; got != 200 {
		t.Errorf("in-flight request finished with %d across the reload", got)
	}
	after := e.state()
	_, lvlBefore := requestLimit(before)
	_, lvlAfter := requestLimit(after)
	// 11 requests were taken from 100; raising the limit keeps the level (plus refill),
	// it does not refill to the new capacity.
	if lvlAfter < lvlBefore-1.5 || lvlAfter > lvlBefore+5 {
		t.Errorf("level %.1f before, %.1f after the reload: bucket state must carry over", lvlBefore, lvlAfter)
	}
	if after.Config.Hash == before.Config.Hash || after.Config.LastReloadError != "" {
		t.Errorf("config hash %q -> %q, error %q", before.Config.Hash, after.Config.Hash, after.Config.LastReloadError)
	}
}

// TestBadConfigKeepsTheOldOne: a document that does not load leaves the old one in
// force, for the proxy and for the hub client (Server.Config) alike.
func TestBadConfigKeepsTheOldOne(t *testing.T) {
	e := reloadEnv(t)
	good := e.state().Config.Hash
	if cfg, hash := e.srv.Config(); cfg == nil || hash != good {
		t.Fatalf("Server.Config hash %q, want /state's %q", hash, good)
	}
	cases := []struct{ name, doc, wantErr string }{
		{"invalid JSON", `{"schemaVersion":`, "decode limiter config"},
		{"invalid limits", strings.Replace(mustMarshal(t, e.currentConfig()), `"requestsPerMinute": 100`, `"requestsPerMinute": -1`, 1), "requestsPerMinute"},
		{"wrong schema", strings.Replace(mustMarshal(t, e.currentConfig()), limiterconfig.SchemaVersion, "aiquota.dev/limiter-config/v9", 1), "schemaVersion"},
	}
	orig := mustMarshal(t, e.currentConfig())
	for i, c := range cases {
		if err := os.WriteFile(e.cfgPath, []byte(c.doc), 0o644); err != nil {
			t.Fatal(err)
		}
		err := e.srv.Reload()
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: Reload err = %v, want it to mention %q", c.name, err, c.wantErr)
		}
		s := e.state()
		if s.Config.Hash != good || !s.Ready || !strings.Contains(s.Config.LastReloadError, c.wantErr) {
			t.Errorf("%s: state hash %q ready %v error %q: want the old config in force and the error shown", c.name, s.Config.Hash, s.Ready, s.Config.LastReloadError)
		}
		if resp, _ := e.post("/v1/chat/completions", nil, chatBody); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: requests fail under the kept config: %s", c.name, resp.Status)
		}
		if cfg, hash := e.srv.Config(); hash != good || cfg.Providers[0].Limits.RequestsPerMinute != 100 {
			t.Errorf("%s: the hub client is handed config %q, want the kept %q", c.name, hash, good)
		}
		_, metrics := e.get(e.admin.URL + "/metrics")
		if !strings.Contains(metrics, fmt.Sprintf("aiquota_limiter_config_reload_errors_total %d", i+1)) ||
			!strings.Contains(metrics, `aiquota_limiter_config_info{hash="`+good+`",source="ProviderQuota/team-a/openai-tier3"} 1`) {
			t.Errorf("%s: metrics lack the reload error count or config_info", c.name)
		}
	}
	if err := os.WriteFile(e.cfgPath, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if s := e.state(); s.Config.LastReloadError != "" {
		t.Errorf("error %q still shown after a good reload", s.Config.LastReloadError)
	}
}

func mustMarshal(t *testing.T, c *limiterconfig.Config) string {
	b, err := limiterconfig.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReloadOnConfigMapSymlinkSwap mimics the kubelet's ConfigMap volume: the file is
// a symlink through ..data to a timestamped directory, and an update swaps ..data.
func TestReloadOnConfigMapSymlinkSwap(t *testing.T) {
	e := reloadEnv(t)
	vol := t.TempDir()
	writeVersion := func(name string, c *limiterconfig.Config) {
		dir := filepath.Join(vol, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "limiter.json"), []byte(mustMarshal(t, c)), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(vol, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	c := e.currentConfig()
	writeVersion("..2030_01_01_00_00_00.000000001", c)
	if err := os.Symlink(filepath.Join("..data", "limiter.json"), filepath.Join(vol, "limiter.json")); err != nil {
		t.Fatal(err)
	}
	srv := New(Options{ConfigPath: filepath.Join(vol, "limiter.json"), PollInterval: time.Hour, Logger: e.srv.log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.Watch(ctx)
	st := srv.State()
	if !st.Ready || st.Config.Hash == "" {
		t.Fatalf("not ready on the symlinked config: %+v", st.Config)
	}
	c.Providers[0].Limits.RequestsPerMinute = 321
	writeVersion("..2030_01_01_00_01_00.000000001", c)
	testkit.Eventually(t, 30*time.Second, "reload after the ..data swap", testkit.True(func() bool { return srv.State().Config.Hash != st.Config.Hash }))
	pool, err := srv.Engine().Pool("openai-main", "gpt-4o")
	if err != nil {
		t.Fatal(err)
	}
	if got := pool.Accounts()[0].Snapshot().Limits[0].RatePerMinute; got != 321 {
		t.Errorf("rate after the swap %v, want 321", got)
	}
}

func TestPollingBackstopSeesKeyRotation(t *testing.T) {
	keyDir := t.TempDir() // like a Secret volume: not the watched directory
	keyPath := filepath.Join(keyDir, "api-key")
	if err := writeFile(keyPath, "sk-not-the-right-one"); err != nil {
		t.Fatal(err)
	}
	e := reloadEnv(t, func(o *Options) { o.PollInterval = 50 * time.Millisecond })
	c := e.currentConfig()
	c.Providers[0].Keys[0].File = keyPath
	e.writeConfig(c)
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.srv.Watch(ctx)
	if resp, _ := e.post("/v1/chat/completions", nil, chatBody); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("with the wrong key: %s, want 401", resp.Status)
	}
	if err := writeFile(keyPath, simOpenAIKey+"\n"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the rotated key in use", testkit.True(func() bool {
		resp, _ := e.post("/v1/chat/completions", nil, chatBody)
		return resp.StatusCode == http.StatusOK
	}))
}

func TestReadinessAndAdminRoutes(t *testing.T) {
	dir := t.TempDir()
	srv := New(Options{ConfigPath: filepath.Join(dir, "missing.json"), Logger: slog.New(slog.DiscardHandler)})
	if srv.Ready() {
		t.Error("ready without a config")
	}
	if cfg, hash := srv.Config(); cfg != nil || hash != "" {
		t.Errorf("config in force without a config file: %q", hash)
	}
	if st := srv.State(); !strings.Contains(st.Config.LastReloadError, "missing.json") {
		t.Errorf("state error %q, want the missing file named", st.Config.LastReloadError)
	}

	e := reloadEnv(t)
	cases := []struct {
		base, path string
		want       int
	}{
		{e.admin.URL, "/healthz", 200},
		{e.admin.URL, "/readyz", 200},
		{e.admin.URL, "/metrics", 200},
		{e.admin.URL, "/state", 404}, // /state is for localhost only
		{e.admin.URL, "/v1/chat/completions", 404},
		{e.proxy.URL, "/state", 200},
	}
	for _, c := range cases {
		if got, _ := e.get(c.base + c.path); got != c.want {
			t.Errorf("GET %s on the %s listener: %d, want %d", c.path, map[bool]string{true: "admin", false: "proxy"}[c.base == e.admin.URL], got, c.want)
		}
	}
	e.srv.Drain(time.Second)
	if got, body := e.get(e.admin.URL + "/readyz"); got != 503 || !strings.Contains(body, "draining") {
		t.Errorf("readyz while draining: %d %q", got, body)
	}
}

func TestMetricsNamesAndLabels(t *testing.T) {
	e := reloadEnv(t)
	if resp, _ := e.post("/v1/chat/completions", nil, chatBody); resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	_, m := e.get(e.admin.URL + "/metrics")
	// gpt-4o is not listed: it draws on the provider's pool of unlisted models.
	for _, want := range []string{
		`aiquota_limiter_requests_total{outcome="success",pool="(unlisted)",provider="openai-main"} 1`,
		`aiquota_limiter_upstream_responses_total{code="200",key="openai-secret/key",pool="(unlisted)",provider="openai-main"} 1`,
		`aiquota_limiter_queue_wait_seconds_count{pool="(unlisted)",provider="openai-main"} 1`,
		`aiquota_limiter_queue_depth{pool="(unlisted)",provider="openai-main"} 0`,
		`aiquota_limiter_account_utilisation_ratio{key="openai-secret/key",limit="requestsPerMinute",pool="(unlisted)",provider="openai-main"}`,
		`aiquota_limiter_tokens_reserved_total{key="openai-secret/key",pool="(unlisted)",provider="openai-main"}`,
		`aiquota_limiter_tokens_used_total{direction="output",key="openai-secret/key",pool="(unlisted)",provider="openai-main"}`,
		`aiquota_limiter_tokens_refunded_total{key="openai-secret/key",pool="(unlisted)",provider="openai-main"}`,
		`aiquota_limiter_breaker_state{model="gpt-4o",provider="openai-main"} 0`,
		`aiquota_limiter_upstream_latency_seconds_count{pool="(unlisted)",provider="openai-main"} 1`,
		`aiquota_limiter_added_latency_seconds_count 1`,
		`aiquota_limiter_ready 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
