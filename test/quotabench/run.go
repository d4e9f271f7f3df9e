package quotabench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aiquota/aiquota/internal/limiter"
	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/sidecar"
	"github.com/aiquota/aiquota/internal/simulator"
	"github.com/aiquota/aiquota/test/harness"
)

const (
	simKey       = "sk-quotabench"
	openAIModel  = "gpt-4o-mini"
	claudeModel  = "claude-sonnet-4"
	sampleEvery  = 250 * time.Millisecond
	startTimeout = 60 * time.Second
	// settledShare is the share of the binding rate a 2 s window must reach for the
	// account to count as used again after a change.
	settledShare  = 0.95
	settledWindow = 2 * time.Second
)

// Options shape a run.
type Options struct {
	// Limiter is the built cmd/limiter; Dir holds the configs and key file.
	Limiter, Dir string
	// Logs receives the limiters' output, line-prefixed; nil keeps it in memory.
	Logs io.Writer
	// Cluster, when set, runs the leases mode: the manager and pods admitted by
	// its webhook. Without it the leases rows say so.
	Cluster *Cluster
}

// Result is one scenario in one mode.
type Result struct {
	Scenario string
	Mode     Mode
	// Note says why a row measured nothing (Skipped).
	Note    string
	Skipped bool
	// Goodput is the share of the binding limit used after the warm-up, in percent.
	Goodput float64
	// ProviderRequests reached the simulator; Provider429 of them it refused for a
	// limit (injected faults excluded).
	ProviderRequests, Provider429 int64
	// AppOK and AppFailed count SDK calls that returned an answer or an error.
	AppOK, AppFailed int64
	// Rebalance is, per change, the time until a 2 s window used 95% of the
	// binding rate again; -1 when it never did before the next change.
	Rebalance []time.Duration
	// OverGrant is the largest sum of the pods' leased request rates above the
	// account's RPM, per minute; OverGrantKnown is false when no pod held a lease.
	OverGrant      float64
	OverGrantKnown bool
}

// Run runs one scenario in one mode.
func Run(ctx context.Context, o Options, sc Scenario, mode Mode) (Result, error) {
	res := Result{Scenario: sc.Name, Mode: mode}
	if mode == ModeLeases && o.Cluster == nil {
		res.Skipped, res.Note = true, "not run: needs an API server (KUBEBUILDER_ASSETS) and the manager"
		return res, nil
	}
	if sc.ManagerOnly && mode != ModeLeases {
		res.Skipped, res.Note = true, "n/a: no manager in this mode"
		return res, nil
	}
	sim, err := simulator.New(simulator.Config{Seed: 1, Accounts: []simulator.Account{{
		Key: simKey, Provider: sc.Provider, Limits: sc.Limits,
		Latency: simulator.Latency{TimeToFirstToken: simulator.Duration(sc.Latency), OutputTokens: 8},
	}}})
	if err != nil {
		return res, fmt.Errorf("simulator: %w", err)
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	f := &fleet{o: o, sc: sc, mode: mode, simURL: srv.URL, deployPods: sc.Pods}
	var mgrs *managers
	defer func() {
		// The pods first: their last report goes to a manager still running.
		f.close()
		if mgrs != nil {
			mgrs.stop()
		}
	}()
	if mode == ModeLeases {
		replicas := 1
		for _, ev := range sc.Events {
			if ev.Failover {
				replicas = 2
			}
		}
		if mgrs, err = o.Cluster.startManagers(ctx, replicas); err != nil {
			return res, err
		}
		if f.lease, err = o.Cluster.newScenario(ctx, sc, srv.URL, o.Limiter); err != nil {
			return res, err
		}
	} else if err := f.writeFiles(); err != nil {
		return res, err
	}
	for i := range sc.Pods {
		if err := f.start(i); err != nil {
			return res, err
		}
	}
	// The simulator's bucket refilled while the pods started.
	if err := drain(ctx, srv.URL, sc); err != nil {
		return res, err
	}
	d := newDriver(sc, f)
	s := &sampler{sim: sim, fleet: f, limit: float64(sc.Limits.RequestsPerMinute)}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { d.run(runCtx) })
	wg.Go(func() { s.run(runCtx, start) })
	err = playEvents(runCtx, sc, f, d, sim, mgrs, start)
	if err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(time.Until(start.Add(sc.Duration))):
		}
	}
	cancel()
	wg.Wait()
	if err != nil {
		return res, err
	}
	d.inflight.Wait()
	s.measure(&res, sc)
	res.AppOK, res.AppFailed = d.ok.Load(), d.failed.Load()
	return res, nil
}

// drain empties the simulator's per-minute request bucket, which starts full, so
// that a run of seconds meets the account's rate instead of a minute's burst.
func drain(ctx context.Context, url string, sc Scenario) error {
	n := sc.Limits.RequestsPerMinute
	if sc.Binding != BindRPM || n == 0 {
		return nil
	}
	c := openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey(simKey), option.WithMaxRetries(0))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, _ = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
				Model: openAIModel, MaxTokens: openai.Int(1),
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("drain")},
			})
		})
	}
	wg.Wait()
	return ctx.Err()
}

// playEvents applies the scenario's changes at their offsets.
func playEvents(ctx context.Context, sc Scenario, f *fleet, d *driver, sim *simulator.Server, mgrs *managers, start time.Time) error {
	for _, ev := range sc.Events {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(start.Add(ev.At))):
		}
		switch {
		case ev.Pods > 0:
			if err := f.scale(ev.Pods); err != nil {
				return err
			}
			d.setPods(ev.Pods)
		case ev.Weights != nil:
			d.setWeights(ev.Weights)
		case ev.RollingRestart:
			for i := range f.pods() {
				if err := f.restart(i); err != nil {
					return err
				}
			}
		case ev.Storm > 0:
			if err := sim.SetFaults(simKey, simulator.Faults{ErrorRates: map[string]float64{"429": ev.StormShare}}); err != nil {
				return fmt.Errorf("start the 429 storm: %w", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(ev.Storm):
			}
			if err := sim.SetFaults(simKey, simulator.Faults{}); err != nil {
				return fmt.Errorf("end the 429 storm: %w", err)
			}
		case ev.KillManager > 0 && mgrs != nil:
			if err := mgrs.kill(0); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(ev.KillManager):
			}
			if err := mgrs.start(ctx, 0); err != nil {
				return err
			}
		case ev.Failover && mgrs != nil:
			// The first replica leads (it was ready before the second started).
			if err := mgrs.kill(0); err != nil {
				return err
			}
		}
	}
	return nil
}

// fleet is the pods' limiter processes, each one's config rendered for the mode.
type fleet struct {
	o          Options
	sc         Scenario
	mode       Mode
	simURL     string
	deployPods int
	cfgPath    string
	// lease, in the leases mode, admits the pods in the cluster.
	lease *leasePods

	mu    sync.Mutex
	procs []*pod
}

type pod struct {
	proc    *harness.Process
	proxy   string
	running bool
}

func (f *fleet) writeFiles() error {
	keyPath := filepath.Join(f.o.Dir, "provider.key")
	if err := os.WriteFile(keyPath, []byte(simKey+"\n"), 0o600); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	cfg, err := limiterconfig.Marshal(limiterConfig(f.sc, f.mode, f.deployPods, f.simURL, keyPath))
	if err != nil {
		return err
	}
	f.cfgPath = filepath.Join(f.o.Dir, "limiter.json")
	if err := os.WriteFile(f.cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("write limiter config: %w", err)
	}
	return nil
}

// limiterConfig is the quota as each pod's limiter gets it: the account's limits,
// divided by the pods at deploy time in the static mode.
func limiterConfig(sc Scenario, mode Mode, pods int, endpoint, keyPath string) *limiterconfig.Config {
	l := sc.Limits
	lim := limiterconfig.Limits{RequestsPerMinute: l.RequestsPerMinute, TokensPerMinute: l.TokensPerMinute,
		InputTokensPerMinute: l.InputTokensPerMinute, OutputTokensPerMinute: l.OutputTokensPerMinute,
		MaxConcurrency: l.MaxConcurrency, RequestsPerDay: l.RequestsPerDay, TokensPerDay: l.TokensPerDay}
	if mode == ModeStatic {
		div := func(v int64) int64 {
			if v == 0 {
				return 0
			}
			return max(1, v/int64(pods))
		}
		lim = limiterconfig.Limits{RequestsPerMinute: div(lim.RequestsPerMinute), TokensPerMinute: div(lim.TokensPerMinute),
			InputTokensPerMinute: div(lim.InputTokensPerMinute), OutputTokensPerMinute: div(lim.OutputTokensPerMinute),
			MaxConcurrency: div(lim.MaxConcurrency), RequestsPerDay: div(lim.RequestsPerDay), TokensPerDay: div(lim.TokensPerDay)}
	}
	typ, model := limiterconfig.ProviderOpenAI, openAIModel
	tokenizer := limiterconfig.TokenizerO200kBase
	if sc.Provider == simulator.ProviderAnthropic {
		typ, model, tokenizer = limiterconfig.ProviderAnthropic, claudeModel, limiterconfig.TokenizerEstimate
	}
	queue := limiterconfig.Queue{MaxWait: limiterconfig.Duration(5 * time.Second), MaxDepth: 1000}
	return &limiterconfig.Config{
		SchemaVersion: limiterconfig.SchemaVersion,
		Source:        limiterconfig.Source{Kind: "ProviderQuota", Namespace: "quotabench", Name: "account"},
		Providers: []limiterconfig.Provider{{
			Name: "account", Type: typ, Endpoint: endpoint, Tier: "bench",
			Keys:                []limiterconfig.Key{{ID: "account/api-key", File: keyPath}},
			Limits:              lim,
			Models:              []limiterconfig.ModelPool{{Names: []string{model}, Tokenizer: tokenizer}},
			SafetyMarginPercent: 0,
			LearnFromHeaders:    true,
		}},
		Queue: &queue,
	}
}

var listening = regexp.MustCompile(`"msg":"listening","proxy":"([^"]+)","admin":"([^"]+)"`)

// start starts pod i's limiter (again, after a stop).
func (f *fleet) start(i int) error {
	var p *harness.Process
	var proxy string
	if f.lease != nil {
		var err error
		if p, proxy, err = f.lease.start(i); err != nil {
			return err
		}
	} else {
		var err error
		p, err = harness.Start("limiter-"+strconv.Itoa(i), f.o.Limiter, []string{
			"--config", f.cfgPath, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "info",
		}, nil, f.o.Logs)
		if err != nil {
			return err
		}
		m, err := p.WaitFor(listening, startTimeout)
		if err != nil {
			_ = p.Stop(5 * time.Second)
			return err
		}
		proxy = "http://" + m[1]
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.procs) <= i {
		f.procs = append(f.procs, &pod{})
	}
	f.procs[i] = &pod{proc: p, proxy: proxy, running: true}
	return nil
}

// podGracePeriod is how long a stopped limiter may take to exit before it is
// killed: a pod's default terminationGracePeriodSeconds.
const podGracePeriod = 30 * time.Second

func (f *fleet) stop(i int) error {
	f.mu.Lock()
	p := f.procs[i]
	p.running = false
	f.mu.Unlock()
	return p.proc.Stop(podGracePeriod)
}

func (f *fleet) restart(i int) error {
	if err := f.stop(i); err != nil {
		return err
	}
	return f.start(i)
}

// scale starts or stops pods (the highest indexes go first, as a ReplicaSet's
// newest would).
func (f *fleet) scale(n int) error {
	for i := f.pods(); i < n; i++ {
		if err := f.start(i); err != nil {
			return err
		}
	}
	for i := f.pods() - 1; i >= n; i-- {
		if err := f.stop(i); err != nil {
			return err
		}
		f.mu.Lock()
		f.procs = f.procs[:i]
		f.mu.Unlock()
	}
	return nil
}

func (f *fleet) pods() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.procs)
}

// proxy is pod i's limiter URL, "" while it is down.
func (f *fleet) proxy(i int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.procs) || !f.procs[i].running {
		return ""
	}
	return f.procs[i].proxy
}

// proxies are the running pods' proxy listeners, which serve /state.
func (f *fleet) proxies() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, p := range f.procs {
		if p.running {
			out = append(out, p.proxy)
		}
	}
	return out
}

func (f *fleet) close() {
	f.mu.Lock()
	procs := f.procs
	f.procs = nil
	f.mu.Unlock()
	for _, p := range procs {
		if p.proc != nil {
			_ = p.proc.Stop(podGracePeriod)
		}
	}
}

// driver is the apps: each pod's app calls its sidecar through the official SDK at
// its share of the demand, open loop.
type driver struct {
	sc    Scenario
	fleet *fleet

	mu      sync.Mutex
	pods    int
	weights []float64

	inflight   sync.WaitGroup
	ok, failed atomic.Int64
}

func newDriver(sc Scenario, f *fleet) *driver {
	return &driver{sc: sc, fleet: f, pods: sc.Pods, weights: sc.Weights}
}

func (d *driver) setPods(n int) {
	d.mu.Lock()
	d.pods = n
	d.mu.Unlock()
}

func (d *driver) setWeights(w []float64) {
	d.mu.Lock()
	d.weights = w
	d.mu.Unlock()
}

// rates splits the demand among the current pods by weight.
func (d *driver) rates() []float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := make([]float64, d.pods)
	var sum float64
	for i := range w {
		w[i] = 1
		if d.weights != nil {
			w[i] = 0
			if i < len(d.weights) {
				w[i] = d.weights[i]
			}
		}
		sum += w[i]
	}
	for i := range w {
		if sum > 0 {
			w[i] *= d.sc.Demand / sum
		}
	}
	return w
}

// run sends each pod's calls on a 10 ms tick, carrying fractions over, so that any
// mix of rates is met without a goroutine per pod. A ticker drops ticks on a busy
// machine, so what is owed follows the clock, not the tick count.
func (d *driver) run(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var owed []float64
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		elapsed := now.Sub(last).Seconds()
		last = now
		r := d.rates()
		for len(owed) < len(r) {
			owed = append(owed, 0)
		}
		for i, rate := range r {
			owed[i] += rate * elapsed
			for ; owed[i] >= 1; owed[i]-- {
				d.call(ctx, i)
			}
		}
	}
}

func (d *driver) call(ctx context.Context, i int) {
	url := d.fleet.proxy(i)
	if url == "" {
		// The pod is restarting: its app's call fails, as it would in the cluster
		// without a readiness gate in front of it.
		d.failed.Add(1)
		return
	}
	d.inflight.Add(1)
	go func() {
		defer d.inflight.Done()
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		var err error
		if d.sc.Provider == simulator.ProviderAnthropic {
			c := anthropic.NewClient(aoption.WithBaseURL(url), aoption.WithAPIKey("sk-app-has-no-real-key"))
			_, err = c.Messages.New(callCtx, anthropic.MessageNewParams{
				Model: claudeModel, MaxTokens: 16,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello"))},
			})
		} else {
			c := openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey("sk-app-has-no-real-key"))
			_, err = c.Chat.Completions.New(callCtx, openai.ChatCompletionNewParams{
				Model: openAIModel, MaxTokens: openai.Int(16),
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
			})
		}
		if err != nil {
			d.failed.Add(1)
			return
		}
		d.ok.Add(1)
	}()
}

// sample is the simulator's ground truth, and the pods' leases, at one instant.
type sample struct {
	at                          time.Duration
	requests, admitted, limited int64
	inFlight                    int64
	leased                      float64
	anyLease                    bool
}

type sampler struct {
	sim     *simulator.Server
	fleet   *fleet
	limit   float64
	samples []sample
}

func (s *sampler) run(ctx context.Context, start time.Time) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		s.samples = append(s.samples, s.take(ctx, start))
		select {
		case <-ctx.Done():
			s.samples = append(s.samples, s.take(context.Background(), start))
			return
		case <-t.C:
		}
	}
}

// limitReasons are the simulator's refusals that a limit caused (not injected faults).
var limitReasons = []string{"rpm", "tpm", "itpm", "otpm", "concurrency", "daily"}

func (s *sampler) take(ctx context.Context, start time.Time) sample {
	sm := sample{at: time.Since(start)}
	for _, a := range s.sim.Stats().Accounts {
		sm.requests += a.Requests
		for _, p := range a.Pools {
			sm.admitted += p.Admitted
			sm.inFlight += p.InFlight
			for _, r := range limitReasons {
				sm.limited += p.Rejected[r]
			}
		}
	}
	sm.leased, sm.anyLease = leasedRequests(ctx, s.fleet.proxies())
	return sm
}

// leasedRequests sums the request rates (per minute) the pods hold as leases.
func leasedRequests(ctx context.Context, proxies []string) (float64, bool) {
	var sum float64
	held := false
	for _, a := range proxies {
		var state sidecar.State
		if err := getJSON(ctx, a+"/state", &state); err != nil {
			continue // a pod going down holds no lease worth counting
		}
		for _, acct := range state.Engine.Accounts {
			for _, l := range acct.Limits {
				if l.Kind == limiter.KindRequests.String() && l.Lease != nil {
					sum += l.Lease.RatePerSecond * 60
					held = true
				}
			}
		}
	}
	return sum, held
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build GET %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", url, err)
	}
	return nil
}

// measure turns the samples into the row's figures.
func (s *sampler) measure(res *Result, sc Scenario) {
	if len(s.samples) == 0 {
		return
	}
	first, last := s.samples[0], s.samples[len(s.samples)-1]
	res.ProviderRequests, res.Provider429 = last.requests-first.requests, last.limited-first.limited
	warm := s.at(sc.Warmup)
	switch sc.Binding {
	case BindRPM:
		secs := (last.at - warm.at).Seconds()
		if secs > 0 {
			res.Goodput = 100 * float64(last.admitted-warm.admitted) / (s.limit / 60 * secs)
		}
	case BindConcurrency:
		var sum float64
		var n int
		for _, sm := range s.samples {
			if sm.at >= sc.Warmup {
				sum += float64(sm.inFlight)
				n++
			}
		}
		if n > 0 {
			res.Goodput = 100 * sum / float64(n) / float64(sc.Limits.MaxConcurrency)
		}
	case BindDaily:
		res.Goodput = 100 * float64(last.admitted-first.admitted) / float64(sc.Limits.RequestsPerDay)
	}
	for _, sm := range s.samples {
		if sm.anyLease {
			res.OverGrantKnown = true
			res.OverGrant = max(res.OverGrant, sm.leased-s.limit)
		}
	}
	if sc.Binding != BindRPM {
		return
	}
	for k, ev := range sc.Events {
		if ev.Pods == 0 && ev.Weights == nil && ev.Storm == 0 {
			continue
		}
		from := ev.At + ev.Storm
		until := sc.Duration
		if k+1 < len(sc.Events) {
			until = sc.Events[k+1].At
		}
		res.Rebalance = append(res.Rebalance, s.settled(from, until))
	}
}

// at is the last sample at or before offset.
func (s *sampler) at(offset time.Duration) sample {
	out := s.samples[0]
	for _, sm := range s.samples {
		if sm.at > offset {
			break
		}
		out = sm
	}
	return out
}

// settled is the time from from until the account stays used: from then on, every
// window of settledWindow before until admitted settledShare of the binding rate (a
// burst from full buckets right after a change does not count). It is -1 when that
// never held.
func (s *sampler) settled(from, until time.Duration) time.Duration {
	want := settledShare * s.limit / 60
	// ok[i]: the window starting at sample i met the rate; the last window's end
	// must not pass until.
	var ok []bool
	var starts []time.Duration
	for i, a := range s.samples {
		if a.at < from {
			continue
		}
		j := i + 1
		for j < len(s.samples) && s.samples[j].at-a.at < settledWindow {
			j++
		}
		if j == len(s.samples) || s.samples[j].at > until {
			break
		}
		b := s.samples[j]
		ok = append(ok, float64(b.admitted-a.admitted) >= want*(b.at-a.at).Seconds())
		starts = append(starts, a.at)
	}
	settledAt := time.Duration(-1)
	for i := len(ok) - 1; i >= 0 && ok[i]; i-- {
		settledAt = starts[i] - from
	}
	return settledAt
}
