package hubclient

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/testkit"
)

// pki is a CA that issues a serving certificate for 127.0.0.1.
type pki struct {
	caPEM []byte
	cert  tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca := testkit.MustCA(t, "test CA")
	cert, err := ca.Serving("aiquota-control")
	if err != nil {
		t.Fatal(err)
	}
	return &pki{caPEM: ca.PEM, cert: cert}
}

// manager is a stand-in for the manager's endpoint: it decodes every report with
// the report package and answers as the manager does.
type manager struct {
	srv  *httptest.Server
	cert atomic.Pointer[tls.Certificate]
	// refuse, when set, is the status and code of every answer.
	refuse atomic.Pointer[[2]string]
	// leases, when set, are added to every answer.
	leases atomic.Pointer[[]hubapi.Lease]

	mu      sync.Mutex
	reports []*hubapi.Report
	tokens  []string
	remotes []string
	resumed []bool
}

func newManager(t *testing.T, p *pki) *manager {
	m := &manager{}
	m.cert.Store(&p.cert)
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(m.serve))
	// GetConfigForClient, not GetCertificate: a client dialing an IP sends no SNI,
	// and httptest's own certificate would be served instead. Each certificate gets
	// its own session-ticket key, as a restarted manager would: sessions resumed
	// from before a certificate change would otherwise skip verifying the new one.
	m.srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert := m.cert.Load()
		cfg := &tls.Config{Certificates: []tls.Certificate{*cert}}
		cfg.SetSessionTicketKeys([][32]byte{sha256.Sum256(cert.Certificate[0])})
		return cfg, nil
	}}
	m.srv.StartTLS()
	t.Cleanup(m.srv.Close)
	return m
}

func (m *manager) serve(w http.ResponseWriter, r *http.Request) {
	if rf := m.refuse.Load(); rf != nil {
		status := map[string]int{hubapi.CodeNotLeader: 503, "serverError": 500, hubapi.CodeUnauthenticated: 401}[rf[1]]
		if rf[0] != "" {
			w.Header().Set("Retry-After", rf[0])
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(hubapi.ErrorBody{Error: hubapi.ErrorDetail{Code: rf[1], Message: "refused by the test"}})
		return
	}
	rep, err := hubapi.Read(r.Body)
	if err != nil || r.URL.Path != hubapi.Path || r.Header.Get("Content-Type") != hubapi.ContentType {
		http.Error(w, "bad report", http.StatusBadRequest)
		return
	}
	m.mu.Lock()
	m.reports = append(m.reports, rep)
	m.tokens = append(m.tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	m.remotes = append(m.remotes, r.RemoteAddr)
	m.resumed = append(m.resumed, r.TLS != nil && r.TLS.DidResume)
	m.mu.Unlock()
	resp := hubapi.Response{SchemaVersion: hubapi.SchemaVersion, Seq: rep.Seq}
	if l := m.leases.Load(); l != nil {
		resp.Leases = *l
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func (m *manager) received() ([]*hubapi.Report, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*hubapi.Report(nil), m.reports...), append([]string(nil), m.tokens...)
}

// sidecarFiles are the files the hub client reads: token and CA.
type sidecarFiles struct {
	token, ca string
}

func newFiles(t *testing.T) *sidecarFiles {
	d := t.TempDir()
	return &sidecarFiles{token: filepath.Join(d, "token"), ca: filepath.Join(d, "ca.crt")}
}

func testConfig(url string, f *sidecarFiles, interval time.Duration) *limiterconfig.Config {
	return &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion,
		Source:        limiterconfig.Source{Kind: "FallbackChain", Namespace: "team-a", Name: "chat", Generation: 4},
		Providers: []limiterconfig.Provider{{
			Name: "openai-tier3", Type: limiterconfig.ProviderOpenAI, Endpoint: "https://api.openai.com",
			Keys:   []limiterconfig.Key{{ID: "openai/api-key", File: "/keys/openai"}},
			Limits: limiterconfig.Limits{RequestsPerMinute: 600, TokensPerMinute: 100000, MaxConcurrency: 8, TokensPerDay: 1_000_000},
			Models: []limiterconfig.ModelPool{{Names: []string{"gpt-5.5", "gpt-5.5-2030"}}},
			Policy: "standard", LearnFromHeaders: true,
		}},
		Chain: &limiterconfig.Chain{Entries: []limiterconfig.ChainEntry{
			{Provider: "openai-tier3", Model: "gpt-5.5-2030", Policy: "strict"},
			{Provider: "openai-tier3", Model: "gpt-4o"},
		}},
		Policies: []limiterconfig.Policy{
			func() limiterconfig.Policy { p := limiterconfig.DefaultPolicy(); p.Name = "standard"; return p }(),
			func() limiterconfig.Policy {
				p := limiterconfig.DefaultPolicy()
				p.Name = "strict"
				p.FailureThreshold = 2
				return p
			}(),
		},
		Control: &limiterconfig.Control{URL: url + hubapi.Path, TokenFile: f.token, CAFile: f.ca, ReportInterval: limiterconfig.Duration(interval)},
	}
}

// inForce stands in for the sidecar's configuration in force (sidecar.Server.Config).
type inForce struct {
	p atomic.Pointer[loaded]
}

type loaded struct {
	cfg  *limiterconfig.Config
	hash string
}

// set puts a copy of cfg in force, as a reload would, and returns its document's
// hash.
func (c *inForce) set(t *testing.T, cfg *limiterconfig.Config) string {
	t.Helper()
	doc, err := limiterconfig.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cp := *cfg
	l := &loaded{cfg: &cp, hash: hashOf(doc)}
	c.p.Store(l)
	return l.hash
}

func (c *inForce) get() (*limiterconfig.Config, string) {
	l := c.p.Load()
	if l == nil {
		return nil, ""
	}
	return l.cfg, l.hash
}

// sidecar is what most tests start from: a manager serving with a test CA, the
// sidecar's CA and token files, a config reporting to it every interval in force,
// and an engine applying that config.
type sidecar struct {
	m      *manager
	f      *sidecarFiles
	live   *inForce
	hash   string
	engine *limiter.Engine
}

func newSidecar(t *testing.T, token string, interval time.Duration) *sidecar {
	t.Helper()
	p := newPKI(t)
	s := &sidecar{m: newManager(t, p), f: newFiles(t), live: &inForce{}}
	testkit.WriteAtomically(t, s.f.ca, p.caPEM)
	testkit.WriteAtomically(t, s.f.token, []byte(token))
	cfg := testConfig(s.m.srv.URL, s.f, interval)
	s.hash = s.live.set(t, cfg)
	s.engine = limiter.New(limiter.Options{})
	s.engine.Apply(cfg)
	return s
}

var testPod = hubapi.Pod{Namespace: "team-a", Name: "app-1", UID: "uid-1"}

// jsonLogger logs structured records into w.
func jsonLogger(w *testkit.SyncBuffer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// TestReportsFromTheEngine: the hub client turns a real engine's state into reports
// the manager can read: usage, limits, chain entries resolved to pools, breakers
// with their policies, config source and hash; sequence numbers grow, the boot
// stays, and the token is read afresh for every report.
func TestReportsFromTheEngine(t *testing.T) {
	s := newSidecar(t, "token-1\n", 100*time.Millisecond)
	m, f, live, hash, engine := s.m, s.f, s.live, s.hash, s.engine
	engine.DayKnown() // as after the manager's first answer: the config has a daily cap
	pool, err := engine.Pool("openai-tier3", "gpt-5.5-2030")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res, err := pool.Admit(context.Background(), limiter.Demand{InputTokens: 100, OutputTokens: 50}, 5, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		res.End(limiter.Attempt{Status: 200, Usage: limiter.Usage{InputTokens: 90, OutputTokens: 10}, UsageKnown: true})
	}
	breaker, err := engine.Breaker("openai-tier3", "gpt-5.5-2030")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the strict policy opens after two
		permit, err := breaker.Allow()
		if err != nil {
			t.Fatal(err)
		}
		permit.Record(limiterconfig.FailureServerError, 502)
	}
	engine.NoteFailover(0, 1, limiterconfig.FailureCircuitOpen)
	engine.NoteFailover(0, 5, limiterconfig.FailureCircuitOpen) // not an entry: left out

	r := New(Options{Config: live.get, Snapshot: engine.Snapshot, Pod: testPod, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	testkit.Eventually(t, 60*time.Second, "two reports", testkit.True(func() bool { reps, _ := m.received(); return len(reps) >= 2 }))
	testkit.WriteAtomically(t, f.token, []byte("token-2\n"))
	testkit.Eventually(t, 60*time.Second, "a report with the rotated token", testkit.True(func() bool {
		_, toks := m.received()
		return toks[len(toks)-1] == "token-2"
	}))
	cancel()
	<-done

	reps, toks := m.received()
	if toks[0] != "token-1" {
		t.Errorf("first token %q", toks[0])
	}
	// Every report on a connection of its own (nothing idles at the manager),
	// after the first with a resumed TLS session.
	m.mu.Lock()
	remotes, resumed := slices.Compact(slices.Sorted(slices.Values(m.remotes))), m.resumed
	m.mu.Unlock()
	if len(remotes) != len(reps) {
		t.Errorf("%d reports over %d connections, want one each", len(reps), len(remotes))
	}
	if slices.Contains(resumed[1:], false) {
		t.Errorf("TLS sessions resumed: %v, want all but the first", resumed)
	}
	for i, rep := range reps {
		if rep.Seq != uint64(i+1) || rep.Boot.ID != r.BootID() {
			t.Errorf("report %d: seq %d boot %s", i, rep.Seq, rep.Boot.ID)
		}
	}
	got := reps[0]
	if got.Config.Hash != hash {
		t.Errorf("config hash %q, want the sidecar's %q", got.Config.Hash, hash)
	}
	want := &hubapi.Report{
		SchemaVersion: hubapi.SchemaVersion, Pod: testPod, Seq: 1,
		ReportInterval: hubapi.Duration(100 * time.Millisecond),
		Config:         hubapi.Config{Hash: got.Config.Hash, Kind: "FallbackChain", Namespace: "team-a", Name: "chat", Generation: 4},
		Chain: []hubapi.ChainEntry{
			{Provider: "openai-tier3", Model: "gpt-5.5-2030", Pool: "gpt-5.5"},
			{Provider: "openai-tier3", Model: "gpt-4o", Pool: limiterconfig.UnlistedPool},
		},
		Accounts: []hubapi.Account{{
			Provider: "openai-tier3", Pool: "gpt-5.5", Key: "openai/api-key",
			Counters: hubapi.Counters{Requests: 3, InputTokens: 270, OutputTokens: 30},
			Limits:   hubapi.Limits{RequestsPerMinute: 600, TokensPerMinute: 100000, MaxConcurrency: 8, TokensPerDay: 1_000_000},
			Throttle: 1, RequestsToday: 3, TokensToday: 300,
		}},
		Queues: []hubapi.Queue{{Provider: "openai-tier3", Pool: "gpt-5.5", Admitted: 3}},
		Breakers: []hubapi.Breaker{{
			Provider: "openai-tier3", Model: "gpt-5.5-2030", Policy: "strict", State: hubapi.BreakerOpen,
			ConsecutiveFailures: 2, Opens: 1,
		}},
		Failovers: []hubapi.FailoverCount{{From: 0, To: 1, Reason: limiterconfig.FailureCircuitOpen, Count: 1}},
	}
	opts := cmp.Options{
		cmpopts.IgnoreFields(hubapi.Report{}, "Boot", "SentAt", "LastFailover"),
		cmpopts.IgnoreFields(hubapi.Account{}, "Buckets"),
		cmpopts.IgnoreFields(hubapi.Breaker{}, "Since", "Transitions", "LastFailure"),
	}
	if d := cmp.Diff(want, got, opts); d != "" {
		t.Errorf("report (-want +got):\n%s", d)
	}
	b := got.Breakers[0]
	if lf := b.LastFailure; lf == nil || lf.Kind != limiterconfig.FailureServerError || lf.Status != 502 || lf.At.IsZero() {
		t.Errorf("breaker lastFailure %+v, want the counted 502 serverError with its time", lf)
	}
	if len(b.Transitions) != 1 || b.Transitions[0].To != hubapi.BreakerOpen || b.Since == nil || !b.Since.Equal(b.Transitions[0].At) {
		t.Errorf("breaker history: since %v, transitions %+v", b.Since, b.Transitions)
	}
	if len(got.Accounts[0].Buckets) != 2 {
		t.Errorf("buckets %+v, want RPM and TPM", got.Accounts[0].Buckets)
	}
}

// hashOf is the sidecar's config hash (internal/sidecar shows the same in /state
// and its config_info metric).
func hashOf(doc []byte) string {
	sum := sha256.Sum256(doc)
	return hex.EncodeToString(sum[:8])
}

// TestCAChangeAndNoControlSection: before a configuration is in force and without a
// control section nothing is sent; when one appears, reports start; when the manager's certificate moves to a new
// CA and the CA file follows, reports go on.
func TestCAChangeAndNoControlSection(t *testing.T) {
	p1, p2 := newPKI(t), newPKI(t)
	m := newManager(t, p1)
	f := newFiles(t)
	testkit.WriteAtomically(t, f.ca, p1.caPEM)
	testkit.WriteAtomically(t, f.token, []byte("token"))
	cfg := testConfig(m.srv.URL, f, 100*time.Millisecond)
	ctl := cfg.Control
	cfg.Control = nil
	engine := limiter.New(limiter.Options{})
	engine.Apply(cfg)
	logs := &testkit.SyncBuffer{}
	var live inForce
	r := New(Options{Config: live.get, Snapshot: engine.Snapshot, Pod: testPod, Logger: jsonLogger(logs), IdlePoll: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)

	time.Sleep(100 * time.Millisecond) // five idle polls
	live.set(t, cfg)
	time.Sleep(100 * time.Millisecond)
	if reps, _ := m.received(); len(reps) != 0 {
		t.Fatalf("%d reports without a configuration or without a control section", len(reps))
	}
	cfg.Control = ctl
	live.set(t, cfg)
	testkit.Eventually(t, 60*time.Second, "reports once the control section appears", testkit.True(func() bool { reps, _ := m.received(); return len(reps) > 0 }))

	// The manager's certificate now comes from another CA: reports fail until the
	// CA file (a ConfigMap's ca.crt) follows, then resume.
	m.cert.Store(&p2.cert)
	m.srv.CloseClientConnections()
	testkit.Eventually(t, 60*time.Second, "a failure logged", testkit.True(func() bool { return strings.Contains(logs.String(), "control channel report failed") }))
	n, _ := m.received()
	testkit.WriteAtomically(t, f.ca, p2.caPEM)
	testkit.Eventually(t, 60*time.Second, "reports with the new CA", testkit.True(func() bool { reps, _ := m.received(); return len(reps) > len(n) }))
	testkit.Eventually(t, 60*time.Second, "recovery logged", testkit.True(func() bool { return strings.Contains(logs.String(), "control channel reports resumed") }))
}

// TestFailuresBackOffAndAreLoggedAtABoundedRate drives report cycles directly
// against a refusing manager.
func TestFailuresBackOffAndAreLoggedAtABoundedRate(t *testing.T) {
	s := newSidecar(t, "secret-token-value", 10*time.Second)
	m, live, engine := s.m, s.live, s.engine
	logs := &testkit.SyncBuffer{}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r := New(Options{Config: live.get, Snapshot: engine.Snapshot, Pod: testPod, Logger: jsonLogger(logs), Now: func() time.Time { return now }})
	ctx := context.Background()

	m.refuse.Store(&[2]string{"", "serverError"})
	var delays []time.Duration
	for range 8 {
		delays = append(delays, r.cycle(ctx))
	}
	// Exponential from the interval (with ±20% jitter), capped at five minutes.
	for i, d := range delays {
		want := min(10*time.Second<<i, maxBackoff)
		if d < want*8/10 || d > want*12/10 {
			t.Errorf("delay after failure %d: %s, want about %s", i+1, d, want)
		}
	}
	if n := strings.Count(logs.String(), "control channel report failed"); n != 1 {
		t.Errorf("%d failure logs within a minute, want 1", n)
	}
	now = now.Add(2 * time.Minute)
	r.cycle(ctx)
	if n := strings.Count(logs.String(), "control channel report failed"); n != 2 || !strings.Contains(logs.String(), `"unloggedFailures":7`) {
		t.Errorf("after a minute: %d failure logs; logs:\n%s", n, logs)
	}

	// A follower: retried soon, from one second, and never sooner than Retry-After.
	r.failures = 0
	m.refuse.Store(&[2]string{"3", hubapi.CodeNotLeader})
	if d := r.cycle(ctx); d < 3*time.Second*8/10 || d > 3*time.Second*12/10 {
		t.Errorf("delay after notLeader with Retry-After 3: %s", d)
	}
	m.refuse.Store(&[2]string{"", hubapi.CodeNotLeader})
	r.failures = 0
	if d := r.cycle(ctx); d > 1200*time.Millisecond {
		t.Errorf("delay after notLeader: %s, want about a second", d)
	}

	m.refuse.Store(nil)
	if d := r.cycle(ctx); d != 10*time.Second {
		t.Errorf("delay after success: %s, want the interval", d)
	}
	if !strings.Contains(logs.String(), "control channel reports resumed") {
		t.Error("recovery not logged")
	}
	if strings.Contains(logs.String(), "secret-token-value") {
		t.Error("the token was logged")
	}
}

// TestSendFinal marks the last report final.
func TestSendFinal(t *testing.T) {
	s := newSidecar(t, "token", time.Hour)
	m, live, engine := s.m, s.live, s.engine
	r := New(Options{Config: live.get, Snapshot: engine.Snapshot, Pod: testPod})
	if d := r.cycle(context.Background()); d != time.Hour {
		t.Fatalf("first report: next in %s", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.SendFinal(ctx); err != nil {
		t.Fatal(err)
	}
	reps, _ := m.received()
	if len(reps) != 2 || reps[0].Final || !reps[1].Final || reps[1].Seq != 2 {
		t.Errorf("reports: %+v", reps)
	}
	// A manager that refuses: the final report's error says why.
	m.refuse.Store(&[2]string{"", hubapi.CodeUnauthenticated})
	err := r.SendFinal(ctx)
	var se *statusError
	if !errors.As(err, &se) || se.status != 401 || se.code != hubapi.CodeUnauthenticated || !strings.Contains(err.Error(), "refused by the test") {
		t.Errorf("refused final report: %v", err)
	}
}
