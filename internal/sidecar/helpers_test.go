package sidecar

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/internal/testkit"
)

// Keys the simulator accepts; the tests also check they never leak.
const (
	simOpenAIKey    = "sk-sim-openai-9f3a1c7e5b"
	simAnthropicKey = "sk-ant-sim-4d2b8e6f1a"
	simGeminiKey    = "AIzaSim-7c5e3a1f9d"
	simDeepSeekKey  = "sk-ds-sim-2e8c4a6f0b"
	simSecondKey    = "sk-sim-openai-second-6b1d"
)

// env is a simulator (real HTTP) behind a sidecar (real HTTP).
type env struct {
	t       *testing.T
	sim     *simulator.Server
	simURL  string
	srv     *Server
	proxy   *httptest.Server
	admin   *httptest.Server
	dir     string
	cfgPath string
	logs    *testkit.SyncBuffer
}

// simAccount is a simulator account with the given key and persona.
func simAccount(key, persona string, l simulator.Limits) simulator.Account {
	return simulator.Account{Key: key, Provider: persona, Limits: l}
}

// newEnv starts the simulator and a sidecar whose config is built by mk from the
// simulator's URL and the key files written for every sim key.
func newEnv(t *testing.T, simCfg simulator.Config, mk func(simURL string, keyFile func(key string) string) *limiterconfig.Config, opts ...func(*Options)) *env {
	t.Helper()
	sim, err := simulator.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(sim)
	t.Cleanup(simSrv.Close)
	e := &env{t: t, sim: sim, simURL: simSrv.URL, dir: t.TempDir(), logs: &testkit.SyncBuffer{}}
	keyFile := func(key string) string {
		p := filepath.Join(e.dir, "key-"+strings.NewReplacer("/", "_").Replace(key))
		if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e.cfgPath = filepath.Join(e.dir, "limiter.json")
	e.writeConfig(mk(simSrv.URL, keyFile))
	o := Options{
		ConfigPath: e.cfgPath,
		Logger:     slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range opts {
		f(&o)
	}
	e.srv = New(o)
	e.proxy = httptest.NewServer(e.srv.ProxyHandler())
	t.Cleanup(e.proxy.Close)
	e.admin = httptest.NewServer(e.srv.AdminHandler())
	t.Cleanup(e.admin.Close)
	t.Cleanup(func() { e.assertNoSecrets() })
	return e
}

// streamLines sends req and reads the streamed answer to its end: its status and
// its non-empty lines.
func streamLines(t *testing.T, req *http.Request) (int, []string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() != "" {
			lines = append(lines, sc.Text())
		}
	}
	return resp.StatusCode, lines
}

// stubConfig writes, in a new directory, a key file holding key and the config mk
// makes from its path, and returns the config's path.
func stubConfig(tb testing.TB, key string, mk func(keyPath string) *limiterconfig.Config) string {
	tb.Helper()
	dir := tb.TempDir()
	keyPath := filepath.Join(dir, "key")
	if err := os.WriteFile(keyPath, []byte(key+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	raw, err := limiterconfig.Marshal(mk(keyPath))
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "limiter.json")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

func (e *env) writeConfig(c *limiterconfig.Config) {
	e.t.Helper()
	b, err := limiterconfig.Marshal(c)
	if err != nil {
		e.t.Fatal(err)
	}
	testkit.WriteAtomically(e.t, e.cfgPath, b)
}

// assertNoSecrets checks that no key appears in logs, metrics or /state.
func (e *env) assertNoSecrets() {
	_, metrics := e.get(e.admin.URL + "/metrics")
	_, state := e.get(e.proxy.URL + "/state")
	for _, key := range []string{simOpenAIKey, simAnthropicKey, simGeminiKey, simDeepSeekKey, simSecondKey} {
		for name, text := range map[string]string{"logs": e.logs.String(), "metrics": metrics, "state": state} {
			if strings.Contains(text, key) {
				e.t.Errorf("key material found in %s", name)
			}
		}
	}
	if strings.Contains(metrics, "aiquota_limiter_handler_panics_total 1") || strings.Contains(e.logs.String(), "proxy handler panic") {
		e.t.Error("a request reached the handler's panic recovery")
	}
}

func (e *env) get(url string) (int, string) {
	e.t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// reply is what post keeps of a response. post reads and closes the body itself,
// so callers get no *http.Response whose body they would be left to close.
type reply struct {
	Status     string
	StatusCode int
	Header     http.Header
}

// post sends body to the sidecar and returns the response with its body read.
func (e *env) post(path string, header http.Header, body string) (reply, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.proxy.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return reply{Status: resp.Status, StatusCode: resp.StatusCode, Header: resp.Header}, string(b)
}

func (e *env) state() State {
	e.t.Helper()
	_, body := e.get(e.proxy.URL + "/state")
	var s State
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		e.t.Fatalf("decode /state: %v\n%s", err, body)
	}
	return s
}

// simPool returns the simulator's stats of one pool of the account at index.
func (e *env) simPool(account int, pool string) simulator.PoolStats {
	e.t.Helper()
	st := e.sim.Stats()
	for _, a := range st.Accounts {
		if a.Index == account {
			p, _ := a.Pool(pool)
			return p
		}
	}
	return simulator.PoolStats{}
}

// fastPolicy retries quickly so failure tests run in milliseconds.
// simUpstream is one simulated account (persona, key; 10000 RPM at the simulator, 8
// output tokens unless latency says otherwise) behind a provider "up" of type typ,
// with the limits given, policy "p" (fastPolicy shaped by policy) and a queue of
// queueWait.
type simUpstream struct {
	persona, typ, key string
	faults            simulator.Faults
	latency           simulator.Latency
	limits            limiterconfig.Limits
	queueWait         time.Duration
	policy            func(*limiterconfig.Policy)
	learn             bool // LearnFromHeaders
}

func upstreamEnv(t *testing.T, seed int64, u simUpstream) *env {
	t.Helper()
	acct := simAccount(u.key, u.persona, simulator.Limits{RequestsPerMinute: 10000})
	acct.Faults, acct.Latency = u.faults, u.latency
	if acct.Latency.OutputTokens == 0 {
		acct.Latency.OutputTokens = 8
	}
	return newEnv(t, simulator.Config{Seed: seed, Accounts: []simulator.Account{acct}}, func(simURL string, keyFile func(string) string) *limiterconfig.Config {
		p := fastPolicy("p")
		if u.policy != nil {
			u.policy(&p)
		}
		return &limiterconfig.Config{
			SchemaVersion: limiterconfig.SchemaVersion,
			Providers: []limiterconfig.Provider{{Name: "up", Type: u.typ, Endpoint: simURL, Policy: "p", LearnFromHeaders: u.learn,
				Keys: []limiterconfig.Key{{ID: "up/key", File: keyFile(u.key)}}, Limits: u.limits}},
			Policies: []limiterconfig.Policy{p},
			Queue:    &limiterconfig.Queue{MaxWait: limiterconfig.Duration(u.queueWait), MaxDepth: 100},
		}
	})
}

func fastPolicy(name string) limiterconfig.Policy {
	p := limiterconfig.DefaultPolicy()
	p.Name = name
	p.Retry.BaseDelay = limiterconfig.Duration(5 * time.Millisecond)
	p.Retry.MaxDelay = limiterconfig.Duration(20 * time.Millisecond)
	p.Retry.UnavailableBaseDelay = limiterconfig.Duration(10 * time.Millisecond)
	p.Retry.MaxRetries = 2
	p.Retry.MaxTotal = limiterconfig.Duration(20 * time.Second)
	p.RecoveryTimeout = limiterconfig.Duration(300 * time.Millisecond)
	p.RequestTimeout = limiterconfig.Duration(5 * time.Second)
	return p
}

// openAIConfig is one OpenAI provider at the simulator with the given limits.
func openAIConfig(simURL, keyFile string, l limiterconfig.Limits) *limiterconfig.Config {
	return &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion,
		Source:        limiterconfig.Source{Kind: "ProviderQuota", Namespace: "team-a", Name: "openai-tier3", Generation: 3},
		Providers: []limiterconfig.Provider{{
			Name: "openai-main", Type: limiterconfig.ProviderOpenAI, Endpoint: simURL,
			Keys:   []limiterconfig.Key{{ID: "openai-secret/key", File: keyFile}},
			Limits: l, LearnFromHeaders: true, Policy: "fast",
		}},
		Policies: []limiterconfig.Policy{fastPolicy("fast")},
		Queue:    &limiterconfig.Queue{MaxWait: limiterconfig.Duration(10 * time.Second), MaxDepth: 1000},
	}
}

const chatBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello"}],"max_tokens":50}`

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o600)
}
