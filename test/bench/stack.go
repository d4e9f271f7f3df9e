package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/test/harness"
)

// Path names, also the Target names.
const (
	PathDirect  = "direct"
	PathPlain   = "plain"
	PathLimiter = "limiter"
)

// Paths lists every path in the order tables show them.
var Paths = []string{PathDirect, PathPlain, PathLimiter}

// StackOptions shape the processes under test.
type StackOptions struct {
	// Root is the module root the binaries are built from; Dir holds the binaries,
	// configs and key file.
	Root, Dir string
	// TimeToFirstToken is the simulator's fixed delay before each answer.
	TimeToFirstToken time.Duration
	// OutputTokens is how many tokens (stream chunks) each answer has.
	OutputTokens int64
	Model        string
	APIKey       string
	// Tokenizer is the limiter's tokenizer for Model (a limiterconfig.Tokenizer*
	// name); "" means o200k_base, the real BPE the model uses.
	Tokenizer string
	// LimiterEnv is extra environment for the limiter ("GOGC=100"), for paired runs
	// of its runtime settings.
	LimiterEnv []string
	// Logs receives the processes' output, line-prefixed; nil keeps it in memory only.
	Logs io.Writer
}

// Stack is the simulator with the plain proxy and the limiter in front of it.
type Stack struct {
	Sim, Plain, Limiter *harness.Process
	SimURL, PlainURL    string
	LimiterURL          string
	LimiterAdminURL     string
	// What the start-up measurement starts again.
	bins          map[string]string
	limiterConfig string
	limiterEnv    []string
}

// startTimeout bounds each process's start, generous for a loaded 2-core machine.
const startTimeout = 60 * time.Second

// StartStack builds the three binaries and starts them; on error, whatever was
// started is stopped.
func StartStack(ctx context.Context, o StackOptions) (_ *Stack, err error) {
	bins, err := harness.Build(ctx, o.Root, o.Dir, "./cmd/limiter", "./cmd/providersim", "./test/bench/cmd/plainproxy")
	if err != nil {
		return nil, err
	}
	st := &Stack{bins: bins, limiterEnv: o.LimiterEnv}
	defer func() {
		if err != nil {
			_ = st.Close() // the start error is the one worth reporting
		}
	}()

	simCfg, err := json.Marshal(SimulatorConfig(o))
	if err != nil {
		return nil, fmt.Errorf("encode simulator config: %w", err)
	}
	simPath := filepath.Join(o.Dir, "sim.json")
	if err := os.WriteFile(simPath, simCfg, 0o600); err != nil {
		return nil, fmt.Errorf("write simulator config: %w", err)
	}
	if st.Sim, err = harness.Start("providersim", bins["providersim"], []string{"--addr", "127.0.0.1:0", "--config", simPath}, nil, o.Logs); err != nil {
		return nil, err
	}
	m, err := st.Sim.WaitFor(regexp.MustCompile(`providersim listening.* addr=(\S+)`), startTimeout)
	if err != nil {
		return nil, err
	}
	st.SimURL = "http://" + m[1]

	if st.Plain, err = harness.Start("plainproxy", bins["plainproxy"], []string{"--listen", "127.0.0.1:0", "--upstream", st.SimURL}, nil, o.Logs); err != nil {
		return nil, err
	}
	if m, err = st.Plain.WaitFor(regexp.MustCompile(`plainproxy listening" addr=(\S+)`), startTimeout); err != nil {
		return nil, err
	}
	st.PlainURL = "http://" + m[1]

	keyPath := filepath.Join(o.Dir, "openai.key")
	if err := os.WriteFile(keyPath, []byte(o.APIKey+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write key file: %w", err)
	}
	lcfg, err := limiterconfig.Marshal(LimiterConfig(st.SimURL, keyPath, o.Model, o.Tokenizer))
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(o.Dir, "limiter.json")
	if err := os.WriteFile(cfgPath, lcfg, 0o600); err != nil {
		return nil, fmt.Errorf("write limiter config: %w", err)
	}
	st.limiterConfig = cfgPath
	if st.Limiter, err = harness.Start("limiter", bins["limiter"], []string{
		"--config", cfgPath, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "info",
	}, o.LimiterEnv, o.Logs); err != nil {
		return nil, err
	}
	if m, err = st.Limiter.WaitFor(regexp.MustCompile(`"msg":"listening","proxy":"([^"]+)","admin":"([^"]+)"`), startTimeout); err != nil {
		return nil, err
	}
	st.LimiterURL, st.LimiterAdminURL = "http://"+m[1], "http://"+m[2]
	if err := waitOK(ctx, st.LimiterAdminURL+"/readyz"); err != nil {
		return nil, fmt.Errorf("limiter not ready: %w\n%s", err, st.Limiter.Logs())
	}
	return st, nil
}

// Targets are the three paths to the simulator.
func (st *Stack) Targets() map[string]Target {
	return map[string]Target{
		PathDirect:  {Name: PathDirect, BaseURL: st.SimURL},
		PathPlain:   {Name: PathPlain, BaseURL: st.PlainURL},
		PathLimiter: {Name: PathLimiter, BaseURL: st.LimiterURL},
	}
}

// Process is the process serving path (the simulator for direct).
func (st *Stack) Process(path string) *harness.Process {
	switch path {
	case PathPlain:
		return st.Plain
	case PathLimiter:
		return st.Limiter
	}
	return st.Sim
}

// Close stops every started process and reports those that did not stop cleanly.
func (st *Stack) Close() error {
	var errs []error
	for _, p := range []*harness.Process{st.Limiter, st.Plain, st.Sim} {
		if p != nil {
			errs = append(errs, p.Stop(15*time.Second))
		}
	}
	return errors.Join(errs...)
}

// SimulatorConfig is one OpenAI account whose limits never bind, answering after a
// fixed delay with a fixed number of tokens (stream chunks), no faults, no jitter.
// Its limits are still set, so it sends rate-limit headers that the limiter parses.
func SimulatorConfig(o StackOptions) simulator.Config {
	return simulator.Config{
		Seed: 1,
		Accounts: []simulator.Account{{
			Key:      o.APIKey,
			Provider: simulator.ProviderOpenAI,
			Limits:   simulator.Limits{RequestsPerMinute: 100_000_000, TokensPerMinute: 100_000_000_000},
			Latency:  simulator.Latency{TimeToFirstToken: simulator.Duration(o.TimeToFirstToken), OutputTokens: o.OutputTokens},
		}},
	}
}

// LimiterConfig is a realistic single-provider config: one OpenAI account with
// RPM, TPM and concurrency limits well above the benchmark's load, a real
// tokenizer (o200k_base unless tokenizer names another), a safety margin, header
// learning and the default policy.
func LimiterConfig(endpoint, keyPath, model, tokenizer string) *limiterconfig.Config {
	if tokenizer == "" {
		tokenizer = limiterconfig.TokenizerO200kBase
	}
	return &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion,
		Source:        limiterconfig.Source{Kind: "ProviderQuota", Namespace: "bench", Name: "openai-bench"},
		Providers: []limiterconfig.Provider{{
			Name:     "openai-bench",
			Type:     limiterconfig.ProviderOpenAI,
			Endpoint: endpoint,
			Tier:     "bench",
			Keys:     []limiterconfig.Key{{ID: "openai-bench/api-key", File: keyPath}},
			Limits: limiterconfig.Limits{
				RequestsPerMinute: 10_000_000,
				TokensPerMinute:   10_000_000_000,
				MaxConcurrency:    10_000,
			},
			Models:              []limiterconfig.ModelPool{{Names: []string{model}, Tokenizer: tokenizer}},
			SafetyMarginPercent: 5,
			LearnFromHeaders:    true,
		}},
		Queue: &defaultQueue,
	}
}

var defaultQueue = limiterconfig.DefaultQueue()

// SimStats fetches the simulator's ground-truth counters.
func (st *Stack) SimStats(ctx context.Context) (simulator.Stats, error) {
	var s simulator.Stats
	b, err := get(ctx, st.SimURL+"/sim/stats")
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decode /sim/stats: %w", err)
	}
	return s, nil
}

// SimAdmitted is how many requests the simulator admitted, over all accounts and pools.
func SimAdmitted(s simulator.Stats) int64 {
	var n int64
	for _, a := range s.Accounts {
		for _, p := range a.Pools {
			n += p.Admitted
		}
	}
	return n
}

// ScrapeLimiter fetches the limiter's /metrics, as Prometheus would.
func (st *Stack) ScrapeLimiter(ctx context.Context) ([]byte, error) {
	return get(ctx, st.LimiterAdminURL+"/metrics")
}

// LimiterRequests sums aiquota_limiter_requests_total with the given outcome
// label in a /metrics exposition.
func LimiterRequests(metrics []byte, outcome string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(string(metrics)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "aiquota_limiter_requests_total{") || !strings.Contains(line, `outcome="`+outcome+`"`) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// goRuntimeMetrics are the Go collector's gauges that explain a process's RSS.
var goRuntimeMetrics = []string{
	"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes",
	"go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_goroutines",
}

// GoRuntimeStats picks the unlabelled Go runtime gauges out of a /metrics exposition.
func GoRuntimeStats(metrics []byte) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.Lines(string(metrics)) {
		name, val, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !slices.Contains(goRuntimeMetrics, name) {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

func get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("build GET %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, b)
	}
	return b, nil
}

// waitOK polls url until it answers 200, for up to startTimeout.
func waitOK(ctx context.Context, url string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		_, err := get(ctx, url)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ModuleRoot finds the directory of the main module's go.mod.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module; run from the aiquota checkout")
	}
	return filepath.Dir(mod), nil
}
