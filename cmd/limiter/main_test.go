package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/testkit"
	"github.com/aiquota/aiquota/test/harness"
)

const simKey = "sk-process-test-7e1f"

// startBinary starts a built binary and stops it when the test ends.
func startBinary(t *testing.T, bin string, args ...string) *harness.Process {
	t.Helper()
	return harness.StartTest(t, filepath.Base(bin), bin, args, nil, time.Second)
}

// find waits for a log line matching re and returns its first group.
func find(t *testing.T, p *harness.Process, re *regexp.Regexp) string {
	t.Helper()
	return p.MustWaitFor(t, re, 60*time.Second)[1]
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type state struct {
	Config struct {
		Hash string `json:"hash"`
	} `json:"config"`
	Engine struct {
		Accounts []struct {
			InFlight int64 `json:"inFlight"`
			Limits   []struct {
				Kind          string  `json:"kind"`
				RatePerMinute float64 `json:"ratePerMinute"`
			} `json:"limits"`
		} `json:"pools"`
	} `json:"engine"`
}

func readState(t *testing.T, proxy string) state {
	t.Helper()
	code, body := get("http://" + proxy + "/state")
	var s state
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil {
		t.Fatalf("/state: %d %s", code, body)
	}
	return s
}

// configVolume is a ConfigMap volume as the kubelet keeps it: limiter.json links
// through ..data to a timestamped directory, and an update swaps ..data.
type configVolume struct {
	t       *testing.T
	dir     string
	cfg     *limiterconfig.Config
	version int
}

// newConfigVolume makes the volume at dir holding cfg.
func newConfigVolume(t *testing.T, dir string, cfg *limiterconfig.Config) *configVolume {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v := &configVolume{t: t, dir: dir, cfg: cfg}
	v.swap(cfg.Providers[0].Limits.RequestsPerMinute)
	if err := os.Symlink("..data/limiter.json", v.path()); err != nil {
		t.Fatal(err)
	}
	return v
}

// path is the config file's path as the limiter is given it.
func (v *configVolume) path() string { return filepath.Join(v.dir, "limiter.json") }

// swap writes the config with the first provider's limit set to rpm as the
// kubelet writes a ConfigMap update: a new directory, then ..data swapped to it.
func (v *configVolume) swap(rpm int64) {
	t := v.t
	t.Helper()
	v.version++
	v.cfg.Providers[0].Limits.RequestsPerMinute = rpm
	b, err := limiterconfig.Marshal(v.cfg)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("..2030_01_01_00_00_%02d.000000001", v.version)
	if err := os.Mkdir(filepath.Join(v.dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.dir, name, "limiter.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(name, filepath.Join(v.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// TestProcessReloadsAndDrainsOnSIGTERM runs the real binaries: the limiter in front
// of providersim, its config in a ConfigMap-style volume. It reloads on a rewrite
// of the file and on a ..data swap, and on SIGTERM finishes the request in flight
// and exits 0.
func TestProcessReloadsAndDrainsOnSIGTERM(t *testing.T) {
	bins, err := harness.Build(t.Context(), filepath.Join("..", ".."), t.TempDir(), "./cmd/limiter", "./cmd/providersim")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	simCfg := fmt.Sprintf(`{"seed":1,"accounts":[{"key":%q,"provider":"openai","limits":{"requestsPerMinute":1000},"latency":{"timeToFirstToken":"1500ms"}}]}`, simKey)
	if err := os.WriteFile(filepath.Join(dir, "sim.json"), []byte(simCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	sim := startBinary(t, bins["providersim"], "--addr", "127.0.0.1:0", "--config", filepath.Join(dir, "sim.json"))
	simAddr := find(t, sim, regexp.MustCompile(`providersim listening.* addr=(\S+)`))

	keyDir := filepath.Join(dir, "secret")
	if err := os.Mkdir(keyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(keyDir, "api-key")
	if err := os.WriteFile(keyFile, []byte(simKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion,
		Providers: []limiterconfig.Provider{{
			Name: "openai", Type: limiterconfig.ProviderOpenAI, Endpoint: "http://" + simAddr,
			Keys: []limiterconfig.Key{{ID: "secret/api-key", File: keyFile}}, Limits: limiterconfig.Limits{RequestsPerMinute: 100},
		}},
	}
	vol := newConfigVolume(t, filepath.Join(dir, "config"), cfg)

	lim := startBinary(t, bins["limiter"], "--config", vol.path(),
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--drain-timeout", "30s", "--config-poll-interval", "200ms")
	proxy := find(t, lim, regexp.MustCompile(`"msg":"listening".*"proxy":"([^"]+)"`))
	admin := find(t, lim, regexp.MustCompile(`"msg":"listening".*"admin":"([^"]+)"`))
	if code, body := get("http://" + admin + "/readyz"); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}

	chat := func() (int, string) {
		resp, err := http.Post("http://"+proxy+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := chat(); code != 200 {
		t.Fatalf("first request: %d %s", code, body)
	}
	rate := func() float64 {
		s := readState(t, proxy)
		if len(s.Engine.Accounts) == 0 {
			return 0
		}
		return s.Engine.Accounts[0].Limits[0].RatePerMinute
	}
	if r := rate(); r != 100 {
		t.Fatalf("rate %v, want 100", r)
	}

	// Reload 1: the file is rewritten in place (through the symlink, as an editor or
	// a hostPath would): the content-hash poll sees it.
	target, err := filepath.EvalSymlinks(vol.path())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Providers[0].Limits.RequestsPerMinute = 150
	b, _ := limiterconfig.Marshal(cfg)
	if err := os.WriteFile(target, b, 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, "reload after rewriting the file", testkit.True(func() bool { return rate() == 150 }))

	// Reload 2: the kubelet's ConfigMap update, a ..data swap.
	vol.swap(250)
	testkit.Eventually(t, 60*time.Second, "reload after the ..data swap", testkit.True(func() bool { return rate() == 250 }))

	// SIGTERM while a request is in flight (the simulator takes 1.5s to answer).
	result := make(chan string, 1)
	go func() {
		code, body := chat()
		result <- fmt.Sprintf("%d %s", code, body)
	}()
	testkit.Eventually(t, 60*time.Second, "request in flight", testkit.True(func() bool {
		s := readState(t, proxy)
		return len(s.Engine.Accounts) > 0 && s.Engine.Accounts[0].InFlight == 1
	}))
	stopped := make(chan error, 1)
	go func() { stopped <- lim.Stop(60 * time.Second) }()
	testkit.Eventually(t, 60*time.Second, "readiness false while draining", testkit.True(func() bool {
		code, _ := get("http://" + admin + "/readyz")
		return code == 503 || code == 0
	}))
	if got := <-result; !strings.HasPrefix(got, "200 ") {
		t.Errorf("in-flight request across SIGTERM: %s", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("limiter exit after draining: %v\n%s", err, lim.Logs())
	}
	if strings.Contains(lim.Logs(), simKey) {
		t.Error("the API key appears in the limiter's logs")
	}
	if !strings.Contains(lim.Logs(), `"msg":"limiter config reloaded"`) {
		t.Errorf("no reload logged:\n%s", lim.Logs())
	}
	if err := sim.Stop(60 * time.Second); err != nil {
		t.Errorf("providersim exit: %v\n%s", err, sim.Logs())
	}
}

func TestFlagsAreValidated(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "0.0.0.0:8787"}, "not a loopback address"},
		{[]string{"--default-priority", "12"}, "want 0..9"},
		{[]string{"--access-log-sample", "2"}, "want 0..1"},
		{[]string{"--log-level", "loud"}, "--log-level"},
	}
	for _, c := range cases {
		var out strings.Builder
		if code := run(c.args, &out); code != 2 || !strings.Contains(out.String(), c.want) {
			t.Errorf("run(%v) = %d, %q; want 2 and %q", c.args, code, out.String(), c.want)
		}
	}
}
