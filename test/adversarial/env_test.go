package adversarial

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/sidecar"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/test/harness"
)

const simKey = "sk-sim-openai-adversarial-5e1d"

var (
	buildOnce sync.Once
	bins      map[string]string
	buildErr  error
	binDir    string
)

// binaries builds the limiter, the simulator and the manager once per test binary. LIMITER_BIN
// replaces the limiter, to measure another build (an older one) with the same probes.
func binaries(t *testing.T) map[string]string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		binDir, buildErr = os.MkdirTemp("", "aiquota-adversarial-")
		if buildErr != nil {
			return
		}
		bins, buildErr = harness.Build(t.Context(), root, binDir, "./cmd/limiter", "./cmd/providersim", "./cmd/manager")
		if b := os.Getenv("LIMITER_BIN"); b != "" && buildErr == nil {
			bins["limiter"] = b
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bins
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// stack is one simulator process behind one limiter process.
type stack struct {
	t       *testing.T
	limiter *harness.Process
	proxy   string // http://host:port
	admin   string
	sim     string // the simulator, http://host:port
}

var (
	simAddrRe     = regexp.MustCompile(`providersim listening.*?addr[=":]+([0-9.]+:[0-9]+)`)
	limiterAddrRe = regexp.MustCompile(`"proxy":"([0-9.]+:[0-9]+)","admin":"([0-9.]+:[0-9]+)"`)
)

// startStack starts a simulator with account and a limiter in front of it, with the
// given extra limiter environment (GOMEMLIMIT) and flags; edits change the limiter's
// configuration (the provider's limits) before it starts.
func startStack(t *testing.T, account simulator.Account, env, flags []string, edits ...func(*limiterconfig.Config)) *stack {
	t.Helper()
	simURL := startSim(t, account)
	keyPath := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyPath, []byte(simKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion,
		Providers: []limiterconfig.Provider{{
			Name: "openai", Type: limiterconfig.ProviderOpenAI, Endpoint: simURL,
			Keys:   []limiterconfig.Key{{ID: "openai/key", File: keyPath}},
			Limits: limiterconfig.Limits{RequestsPerMinute: 100000},
		}},
		Queue: &limiterconfig.Queue{MaxWait: limiterconfig.Duration(time.Minute), MaxDepth: 1000},
	}
	for _, edit := range edits {
		edit(cfg)
	}
	s := startLimiter(t, writeConfig(t, cfg), env, flags)
	s.sim = simURL
	return s
}

// startSim starts a simulator with account and returns its URL.
func startSim(t *testing.T, account simulator.Account) string {
	t.Helper()
	simCfg, err := json.Marshal(simulator.Config{Seed: 1, Accounts: []simulator.Account{account}})
	if err != nil {
		t.Fatal(err)
	}
	simPath := filepath.Join(t.TempDir(), "sim.json")
	if err := os.WriteFile(simPath, simCfg, 0o600); err != nil {
		t.Fatal(err)
	}
	_, m := startProcess(t, "providersim", []string{"--addr", "127.0.0.1:0", "--config", simPath}, nil, 5*time.Second, simAddrRe)
	return "http://" + m[1]
}

// startProcess starts the binary name, stopped within grace when the test ends,
// and returns it with the submatches of the log line listening matches.
func startProcess(t *testing.T, name string, args, env []string, grace time.Duration, listening *regexp.Regexp) (*harness.Process, []string) {
	t.Helper()
	p := harness.StartTest(t, name, binaries(t)[name], args, env, grace)
	return p, p.MustWaitFor(t, listening, time.Minute)
}

// writeConfig writes a limiter configuration to a file and returns its path.
func writeConfig(t *testing.T, cfg *limiterconfig.Config) string {
	t.Helper()
	doc, err := limiterconfig.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "limiter.json")
	if err := os.WriteFile(cfgPath, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// startLimiter starts the limiter with the configuration at cfgPath, the extra
// environment and flags.
func startLimiter(t *testing.T, cfgPath string, env, flags []string) *stack {
	t.Helper()
	args := append([]string{"--config", cfgPath, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, flags...)
	lim, m := startProcess(t, "limiter", args, env, 10*time.Second, limiterAddrRe)
	return &stack{t: t, limiter: lim, proxy: "http://" + m[1], admin: "http://" + m[2]}
}

// labelled sums the samples of a metric whose labels include every fragment given
// (`outcome="canceled"`).
func (s *stack) labelled(name string, fragments ...string) float64 {
	s.t.Helper()
	return scrape(s.t, s.admin+"/metrics", name, fragments...)
}

// scrape sums the samples at a Prometheus endpoint of a metric whose labels include
// every fragment given.
func scrape(t *testing.T, url, name string, fragments ...string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var sum float64
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, f := range fragments {
			if !strings.Contains(line, f) {
				continue lines
			}
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// state is the limiter's /state.
func (s *stack) state() sidecar.State {
	s.t.Helper()
	var st sidecar.State
	getJSON(s.t, s.proxy+"/state", &st)
	return st
}

// getJSON decodes what a GET of url answers into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// metric reads one unlabelled sample from the limiter's /metrics; ok is false when
// the limiter does not export it.
func (s *stack) metric(name string) (float64, bool) {
	s.t.Helper()
	resp, err := http.Get(s.admin + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, found := strings.CutPrefix(sc.Text(), name+" "); found {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// peakRSS is the limiter's resident-set high-water mark (VmHWM), in bytes.
func (s *stack) peakRSS() int64 {
	s.t.Helper()
	b := s.proc("status")
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "VmHWM:"); found {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuSeconds is the CPU time the limiter process has used (user and system), at
// the kernel's tick resolution: for the record, never asserted on.
func (s *stack) cpuSeconds() float64 {
	s.t.Helper()
	b := s.proc("stat")
	if len(b) == 0 {
		return 0
	}
	// The fields after the command name (which may hold spaces) start at state;
	// utime and stime are the 12th and 13th of them, in ticks of 1/100 s.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// proc is a file of the limiter's /proc directory, empty (and logged) when it
// cannot be read: the figures it gives are for the record.
func (s *stack) proc(name string) []byte {
	s.t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.limiter.Pid()) + "/" + name)
	if err != nil {
		s.t.Logf("the limiter's /proc/<pid>/%s: %v", name, err)
	}
	return b
}

// upstreamRequests is every request the simulator authenticated, whatever it answered.
func (s *stack) upstreamRequests() int64 {
	s.t.Helper()
	var st simulator.Stats
	getJSON(s.t, s.sim+"/sim/stats", &st)
	var n int64
	for _, a := range st.Accounts {
		n += a.Requests
	}
	return n
}
