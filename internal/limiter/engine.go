// Package limiter is the sidecar's quota engine, with no HTTP in it: token buckets,
// daily caps and concurrency per account (provider, key ID, pool), a priority queue
// with aging per pool (provider, pool), circuit breakers per (provider, model), retry
// backoff, header learning, and a snapshot of all of it for /state and reports.
//
// The engine is configured from a limiterconfig.Config with Apply, which may be
// called again at any time: state of unchanged pools and accounts is kept, changed
// limits are applied with SetLimit semantics, and removed pools reject their waiters.
package limiter

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// DefaultAgingStep is how long a request waits to gain one priority level.
const DefaultAgingStep = 2 * time.Second

// DefaultMaxModelsPerProvider bounds the pools and breakers created on demand for
// models a provider's config does not list, so an app cannot grow state unboundedly.
const DefaultMaxModelsPerProvider = 256

// Options tune an Engine; zero values take the defaults.
type Options struct {
	Clock                Clock
	AgingStep            time.Duration
	MaxModelsPerProvider int
}

// Engine holds every pool, account and breaker. Lookups read an immutable view
// through an atomic pointer; only Apply and first use of an unlisted model lock.
type Engine struct {
	clock     Clock
	agingStep time.Duration
	maxModels int
	depth     atomic.Int64
	// dayUnsure fails daily caps closed while a sidecar that reports to the
	// manager has not yet heard what its accounts used today; dayKnown once it has.
	dayUnsure atomic.Bool
	dayKnown  atomic.Bool
	// waitsEnd is the clock reading by which every wait for capacity ends, 0 for
	// none (EndWaitsWithin).
	waitsEnd atomic.Int64

	mu       sync.Mutex
	pools    map[poolID]*Pool
	accounts map[accountID]*Account
	breakers map[modelID]*Breaker
	view     atomic.Pointer[view]

	failovers failoverLedger
	// today is what each pool used today across the account's sidecars, as the
	// manager last said (RestoreToday): an account created later (the pool of
	// unlisted models, at its first request) starts its day counters from it.
	today map[poolID]poolToday
}

type poolID struct{ provider, pool string }
type accountID struct{ provider, key, pool string }
type modelID struct{ provider, model string }

type view struct {
	providers map[string]*providerView
	// list holds the same providers: a config has a handful, and comparing a few
	// names is cheaper than hashing one.
	list  []*providerView
	queue limiterconfig.Queue
}

// modelIndex maps model names to pools. A sidecar serves a handful of models,
// and comparing a few short names beats hashing one, so small indexes scan.
type modelIndex struct {
	names  []string
	pools  []*Pool
	byName map[string]*Pool
}

const scanLimit = 8

func newModelIndex(m map[string]*Pool) *modelIndex {
	ix := &modelIndex{byName: m}
	if len(m) <= scanLimit {
		for name, t := range m {
			ix.names = append(ix.names, name)
			ix.pools = append(ix.pools, t)
		}
	}
	return ix
}

func (ix *modelIndex) get(model string) *Pool {
	if len(ix.byName) <= scanLimit {
		for i, n := range ix.names {
			if n == model {
				return ix.pools[i]
			}
		}
		return nil
	}
	return ix.byName[model]
}

func (v *view) provider(name string) *providerView {
	if len(v.list) <= scanLimit {
		for _, pv := range v.list {
			if pv.cfg.Name == name {
				return pv
			}
		}
		return nil
	}
	return v.providers[name]
}

type providerView struct {
	cfg    limiterconfig.Provider
	listed map[string]*Pool // every listed model name -> its pool
	// models is listed plus the unlisted models met so far; replaced, never mutated,
	// so lookups take no lock.
	models atomic.Pointer[modelIndex]
	// policies are the chain entries' policies by model; others use defaultPolicy,
	// the provider's own (cfg.Policy).
	policies      map[string]limiterconfig.Policy
	defaultPolicy limiterconfig.Policy
	breakers      atomic.Pointer[map[string]*Breaker]
	created       int // unlisted pools + breakers made on demand, under Engine.mu
}

// ErrUnknownProvider is returned for a provider the configuration does not define.
var ErrUnknownProvider = errors.New("provider not in the limiter configuration")

// ErrUnlistedModel is returned for a model its provider does not list when the
// provider rejects unlisted models.
var ErrUnlistedModel = errors.New("model not listed, and the provider rejects unlisted models")

// ErrTooManyModels is returned when a provider already has the maximum number of
// on-demand pools.
var ErrTooManyModels = errors.New("too many distinct unlisted models for this provider")

// New returns an engine with no configuration; Apply one before use.
func New(o Options) *Engine {
	e := &Engine{
		clock:     o.Clock,
		agingStep: o.AgingStep,
		maxModels: o.MaxModelsPerProvider,
		pools:     map[poolID]*Pool{},
		accounts:  map[accountID]*Account{},
		breakers:  map[modelID]*Breaker{},
	}
	if e.clock == nil {
		e.clock = NewRealClock()
	}
	if e.agingStep <= 0 {
		e.agingStep = DefaultAgingStep
	}
	if e.maxModels <= 0 {
		e.maxModels = DefaultMaxModelsPerProvider
	}
	e.view.Store(&view{providers: map[string]*providerView{}, queue: limiterconfig.DefaultQueue()})
	return e
}

// Queue is the queue bounds in force: the config's, or DefaultQueue when it set none.
func (e *Engine) Queue() limiterconfig.Queue { return e.view.Load().queue }

func (e *Engine) maxDepth() int { return int(e.depth.Load()) }

// Apply installs cfg. Pools, queues and breakers that still exist keep their state
// (limits that changed are applied as with SetLimit); pools that no longer exist
// reject their waiters with ReasonPoolRemoved. cfg is not retained.
func (e *Engine) Apply(cfg *limiterconfig.Config) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.view.Load()
	nv := &view{providers: map[string]*providerView{}, queue: cfg.QueueOrDefault()}
	livePools := map[poolID]bool{}
	liveBreakers := map[modelID]bool{}
	for i := range cfg.Providers {
		p := cfg.Providers[i]
		pv := &providerView{cfg: p, listed: map[string]*Pool{}, policies: map[string]limiterconfig.Policy{}, defaultPolicy: cfg.PolicyNamed(p.Policy)}
		if cfg.Chain != nil {
			for _, en := range cfg.Chain.Entries {
				if en.Provider == p.Name && en.Policy != "" {
					pv.policies[en.Model] = cfg.PolicyNamed(en.Policy)
				}
			}
		}
		for _, m := range p.Models {
			if len(m.Names) == 0 {
				continue
			}
			t := e.configurePoolLocked(&pv.cfg, pv.cfg.PoolFor(m.Names[0]))
			livePools[poolID{provider: p.Name, pool: t.Name}] = true
			for _, name := range m.Names {
				pv.listed[name] = t
			}
		}
		models := map[string]*Pool{}
		for name, t := range pv.listed {
			models[name] = t
		}
		breakers := map[string]*Breaker{}
		if opv := old.providers[p.Name]; opv != nil {
			for model := range opv.models.Load().byName {
				if _, ok := pv.listed[model]; ok {
					continue
				}
				if _, ok := opv.listed[model]; ok || pv.cfg.RejectsUnlisted() {
					continue // listed before, or refused now: made on demand again if allowed
				}
				t := e.configurePoolLocked(&pv.cfg, pv.cfg.PoolFor(model))
				livePools[poolID{provider: p.Name, pool: t.Name}] = true
				models[model] = t
				pv.created++
			}
			for model, b := range *opv.breakers.Load() {
				b.configure(pv.policyFor(model))
				breakers[model] = b
				liveBreakers[modelID{p.Name, model}] = true
				if _, ok := pv.listed[model]; !ok {
					pv.created++
				}
			}
		}
		pv.models.Store(newModelIndex(models))
		pv.breakers.Store(&breakers)
		nv.providers[p.Name] = pv
		nv.list = append(nv.list, pv)
	}
	for id, t := range e.pools {
		if !livePools[id] {
			t.close()
			delete(e.pools, id)
		}
	}
	for id := range e.accounts {
		pv := nv.providers[id.provider]
		if !livePools[poolID{provider: id.provider, pool: id.pool}] || pv == nil || !hasKey(&pv.cfg, id.key) {
			delete(e.accounts, id)
		}
	}
	for id := range e.breakers {
		if !liveBreakers[id] {
			delete(e.breakers, id)
		}
	}
	e.depth.Store(int64(nv.queue.MaxDepth))
	if cfg.Control != nil && !e.dayKnown.Load() {
		e.dayUnsure.Store(true)
	}
	e.view.Store(nv)
}

func hasKey(p *limiterconfig.Provider, id string) bool {
	for _, k := range p.Keys {
		if k.ID == id {
			return true
		}
	}
	return false
}

func (pv *providerView) policyFor(model string) limiterconfig.Policy {
	if p, ok := pv.policies[model]; ok {
		return p
	}
	return pv.defaultPolicy
}

// configurePoolLocked gets or creates the Pool of pool and (re)configures its
// accounts, one per key.
func (e *Engine) configurePoolLocked(p *limiterconfig.Provider, pool limiterconfig.Pool) *Pool {
	id := poolID{provider: p.Name, pool: pool.Name}
	t := e.pools[id]
	if t == nil {
		t = &Pool{Provider: p.Name, Name: pool.Name, engine: e}
		empty := []*Account{}
		t.accounts.Store(&empty)
		e.pools[id] = t
	}
	accounts := make([]*Account, 0, len(p.Keys))
	for _, k := range p.Keys {
		kid := accountID{provider: p.Name, key: k.ID, pool: pool.Name}
		pl := e.accounts[kid]
		if pl == nil {
			pl = newAccount(p.Name, k.ID, pool.Name, t, e.clock)
			e.accounts[kid] = pl
			if u, ok := e.today[id]; ok && u.day == utcDay(e.clock.Wall(e.clock.Now())) {
				pl.RestoreToday(u.requests, u.tokens)
			}
		}
		pl.configure(pool.Limits, p.SafetyMarginPercent)
		accounts = append(accounts, pl)
	}
	t.accounts.Store(&accounts)
	t.wake()
	return t
}

// Pool returns the queue and accounts serving model at provider. A model the
// configuration does not list is served by the provider's one UnlistedPool (so
// made-up names cannot multiply the account's limits), or refused with
// ErrUnlistedModel where the provider rejects unlisted models.
func (e *Engine) Pool(provider, model string) (*Pool, error) {
	pv := e.view.Load().provider(provider)
	if pv == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProvider, provider)
	}
	if t := pv.models.Load().get(model); t != nil {
		return t, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	pv = e.view.Load().provider(provider)
	if pv == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProvider, provider)
	}
	cur := pv.models.Load().byName
	if t := cur[model]; t != nil {
		return t, nil
	}
	if pv.cfg.RejectsUnlisted() {
		return nil, fmt.Errorf("%w: %q at %s", ErrUnlistedModel, model, provider)
	}
	if pv.created >= e.maxModels {
		return nil, fmt.Errorf("%w (%d), refusing model %q at %s", ErrTooManyModels, e.maxModels, model, provider)
	}
	t := e.configurePoolLocked(&pv.cfg, pv.cfg.PoolFor(model))
	next := make(map[string]*Pool, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[model] = t
	pv.models.Store(newModelIndex(next))
	pv.created++
	return t, nil
}

// Breaker returns the circuit breaker of (provider, model), creating it on first use.
func (e *Engine) Breaker(provider, model string) (*Breaker, error) {
	pv := e.view.Load().provider(provider)
	if pv == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProvider, provider)
	}
	if b := (*pv.breakers.Load())[model]; b != nil {
		return b, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	pv = e.view.Load().provider(provider)
	if pv == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProvider, provider)
	}
	cur := *pv.breakers.Load()
	if b := cur[model]; b != nil {
		return b, nil
	}
	_, listed := pv.listed[model]
	if !listed && pv.created >= e.maxModels {
		return nil, fmt.Errorf("%w (%d), refusing model %q at %s", ErrTooManyModels, e.maxModels, model, provider)
	}
	id := modelID{provider, model}
	b := e.breakers[id]
	if b == nil {
		b = newBreaker(provider, model, pv.policyFor(model), e.clock)
		e.breakers[id] = b
	}
	next := make(map[string]*Breaker, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[model] = b
	pv.breakers.Store(&next)
	if !listed {
		pv.created++
	}
	return b, nil
}

type poolToday struct {
	day              int64 // UTC day number
	requests, tokens int64
}

// RestoreToday raises the day counters of the pool's accounts, now and of those
// created later today, to what the manager says the pool used on UTC date day
// (YYYY-MM-DD) across its sidecars; another day's figures are ignored.
func (e *Engine) RestoreToday(provider, pool, day string, requests, tokens int64) {
	d, err := time.Parse(time.DateOnly, day)
	if err != nil || utcDay(d) != utcDay(e.clock.Wall(e.clock.Now())) {
		return
	}
	id := poolID{provider: provider, pool: pool}
	e.mu.Lock()
	if e.today == nil {
		e.today = map[poolID]poolToday{}
	}
	e.today[id] = poolToday{day: utcDay(d), requests: requests, tokens: tokens}
	var accounts []*Account
	for aid, a := range e.accounts {
		if aid.provider == provider && aid.pool == pool {
			accounts = append(accounts, a)
		}
	}
	e.mu.Unlock()
	for _, a := range accounts {
		a.RestoreToday(requests, tokens)
	}
}

// DayKnown ends the closed daily caps of a sidecar that reports to the manager: the
// manager has answered (and restored what the accounts used today, RestoreToday).
func (e *Engine) DayKnown() {
	e.dayKnown.Store(true)
	e.dayUnsure.Store(false)
	for _, p := range e.poolList() {
		p.wake()
	}
}

// EndWaitsWithin makes every wait for capacity end within d: requests queued now
// whose wait runs longer are refused then (ReasonQueueTimeout, with their
// Retry-After), and later ones wait at most until then. A draining sidecar calls
// it, so that a request still queued at the end of the drain is answered rather
// than cut off with its connection.
func (e *Engine) EndWaitsWithin(d time.Duration) {
	end := e.clock.Now() + int64(d)
	e.waitsEnd.Store(end)
	for _, p := range e.poolList() {
		p.endWaitsBy(end)
	}
}

// poolList returns the pools, for work on each outside the engine's lock.
func (e *Engine) poolList() []*Pool {
	e.mu.Lock()
	defer e.mu.Unlock()
	pools := make([]*Pool, 0, len(e.pools))
	for _, p := range e.pools {
		pools = append(pools, p)
	}
	return pools
}

// Account returns the account of one key on one pool, for SetLimit (leases).
func (e *Engine) Account(provider, keyID, pool string) (*Account, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.accounts[accountID{provider: provider, key: keyID, pool: pool}]
	return p, ok
}
