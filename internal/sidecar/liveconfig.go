package sidecar

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/provider"
	"github.com/aiquota/aiquota/internal/translate"
)

// maxKeyFileBytes bounds a key file: API keys are a few hundred bytes at most.
const maxKeyFileBytes = 16 << 10

// liveConfig is one loaded configuration, immutable once built: requests load it once
// through an atomic pointer and use it throughout, so a reload never changes the
// rules under a request in flight.
type liveConfig struct {
	cfg        *limiterconfig.Config
	hash       string // of the config document, shown in /state and metrics
	sourceHash [sha256.Size]byte
	providers  []*upstream
	byName     map[string]*upstream
	// defaultPriority applies to requests without a valid priority header.
	defaultPriority int
	// unmounted names the keys left out because their files do not exist
	// ("<provider> key <id>").
	unmounted []string
}

// upstream is one configured provider with its keys read.
type upstream struct {
	cfg      limiterconfig.Provider
	dialect  provider.Dialect
	endpoint *url.URL
	keys     map[string]string // key ID -> key material; never logged
	models   map[string]bool   // every listed model name
	policy   limiterconfig.Policy
}

// source is the bytes a liveConfig is built from: the document and its key files.
type source struct {
	doc  []byte
	keys map[string][]byte // file path -> contents
	// unmounted are key files that do not exist. A pod keeps the volumes it was
	// created with, so one admitted before a ProviderQuota or credential existed
	// later gets a config that names keys it has no mount for.
	unmounted map[string]bool
	hash      [sha256.Size]byte // over doc and keys, to notice any change
}

// readSource reads the config file and every key file it names.
func readSource(path string) (*source, *limiterconfig.Config, error) {
	doc, err := readBounded(path, limiterconfig.MaxDocumentBytes+1)
	if err != nil {
		return nil, nil, fmt.Errorf("read limiter config %s: %w", path, err)
	}
	cfg, err := limiterconfig.Parse(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	s := &source{doc: doc, keys: map[string][]byte{}, unmounted: map[string]bool{}}
	h := sha256.New()
	h.Write(doc)
	for _, p := range cfg.Providers {
		for _, k := range p.Keys {
			if _, done := s.keys[k.File]; done {
				continue
			}
			b, err := readBounded(k.File, maxKeyFileBytes)
			if errors.Is(err, fs.ErrNotExist) {
				s.unmounted[k.File] = true
				h.Write([]byte{1})
				h.Write([]byte(k.File))
				continue
			}
			if err != nil {
				// The error names the file and key ID, never the contents.
				return nil, nil, fmt.Errorf("provider %q key %q: read key file: %w", p.Name, k.ID, err)
			}
			s.keys[k.File] = b
			h.Write([]byte{0})
			h.Write([]byte(k.File))
			h.Write([]byte{0})
			h.Write(b)
		}
	}
	h.Sum(s.hash[:0])
	return s, cfg, nil
}

// readBounded reads a whole file of at most limit-1 bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) >= limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit-1)
	}
	return b, nil
}

// buildLiveConfig checks what Parse cannot (dialects, endpoints, key contents) and
// builds the routing tables.
func buildLiveConfig(src *source, cfg *limiterconfig.Config, flagPriority int) (*liveConfig, error) {
	cfg, unmounted, err := withMountedKeys(cfg, src.unmounted)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(src.doc)
	live := &liveConfig{
		unmounted:  unmounted,
		cfg:        cfg,
		hash:       hex.EncodeToString(sum[:8]),
		sourceHash: src.hash,
		byName:     map[string]*upstream{},
	}
	for _, p := range cfg.Providers {
		u := &upstream{cfg: p, dialect: provider.DialectOf(p.Type), keys: map[string]string{}, models: map[string]bool{}, policy: cfg.PolicyNamed(p.Policy)}
		ep, err := url.Parse(p.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("provider %q endpoint: %w", p.Name, err)
		}
		ep.Path = strings.TrimSuffix(ep.Path, "/")
		ep.RawQuery, ep.Fragment = "", ""
		u.endpoint = ep
		for _, k := range p.Keys {
			key := strings.TrimSpace(string(src.keys[k.File]))
			if key == "" {
				return nil, fmt.Errorf("provider %q key %q: key file %s is empty", p.Name, k.ID, k.File)
			}
			if strings.ContainsAny(key, "\r\n\x00") {
				return nil, fmt.Errorf("provider %q key %q: key file %s holds more than one line", p.Name, k.ID, k.File)
			}
			u.keys[k.ID] = key
		}
		for _, m := range p.Models {
			for _, n := range m.Names {
				u.models[n] = true
			}
		}
		live.providers = append(live.providers, u)
		live.byName[p.Name] = u
	}
	live.defaultPriority = 5
	if cfg.Chain != nil && cfg.Chain.DefaultPriority != 0 {
		live.defaultPriority = int(cfg.Chain.DefaultPriority)
	}
	if flagPriority != 0 {
		live.defaultPriority = flagPriority
	}
	return live, nil
}

// withMountedKeys returns cfg without the keys whose files are not mounted, the
// providers left without a key, and those providers' chain entries, so that the
// sidecar keeps serving what it can call instead of refusing the whole config. It
// fails only when nothing usable is left.
func withMountedKeys(cfg *limiterconfig.Config, unmounted map[string]bool) (*limiterconfig.Config, []string, error) {
	if len(unmounted) == 0 {
		return cfg, nil, nil
	}
	out := *cfg
	out.Providers = nil
	var left []string
	kept := map[string]bool{}
	for _, p := range cfg.Providers {
		var keys []limiterconfig.Key
		for _, k := range p.Keys {
			if unmounted[k.File] {
				left = append(left, fmt.Sprintf("%s key %s", p.Name, k.ID))
				continue
			}
			keys = append(keys, k)
		}
		if len(keys) == 0 {
			continue
		}
		p.Keys = keys
		out.Providers = append(out.Providers, p)
		kept[p.Name] = true
	}
	if cfg.Chain != nil {
		chain := *cfg.Chain
		chain.Entries = slices.DeleteFunc(slices.Clone(chain.Entries), func(e limiterconfig.ChainEntry) bool { return !kept[e.Provider] })
		out.Chain = &chain
	}
	if err := out.Validate(); err != nil {
		return nil, nil, fmt.Errorf("the key files of %s are not mounted (a pod mounts the keys that existed when it was created; recreate it), and without them: %w",
			strings.Join(left, ", "), err)
	}
	return &out, left, nil
}

// route is where a request goes.
type route struct {
	up *upstream
	// model is the upstream model; rewrite means the body must be changed to it.
	model   string
	rewrite bool
	// translate means the entry speaks another dialect (or operation) than the app:
	// the request and its answer go through internal/translate.
	translate bool
	// index is the entry's place in the chain, -1 without a chain.
	index int
}

// name is how headers, logs and metrics name the entry: provider/model.
func (r route) name() string { return r.up.cfg.Name + "/" + r.model }

// errNoRoute explains a model nothing serves, for the 404.
type errNoRoute struct{ msg string }

func (e *errNoRoute) Error() string { return e.msg }

// resolve lists the entries that may serve a request, in the order they are
// tried. With a chain: a chain alias (or no model) may go to every entry, a model
// an entry names to that entry and the ones after it; an entry of another dialect
// only when the operation can be translated. Without a chain: the provider of the
// dialect that lists the model, else the only provider of that dialect unless it
// rejects unlisted models (a request without a model, such as a model list, passes).
// It returns the first route, and with a chain all of them (nil without one, so
// that a request without a chain allocates nothing for its route).
func (live *liveConfig) resolve(d provider.Dialect, op provider.Operation, model string) (route, []route, error) {
	if c := live.cfg.Chain; c != nil {
		alias := model == "" || slices.Contains(c.ModelAliases, model)
		var routes []route
		for i, e := range c.Entries {
			up := live.byName[e.Provider]
			if up == nil || (!alias && len(routes) == 0 && e.Model != model) {
				continue
			}
			tr := translate.Needed(d, op, up.cfg.Type)
			if tr && !translate.Translatable(op) {
				continue
			}
			routes = append(routes, route{up: up, model: e.Model, rewrite: !tr && model != e.Model, translate: tr, index: i})
		}
		if len(routes) > 0 {
			return routes[0], routes, nil
		}
		var served []string
		for _, e := range c.Entries {
			if up := live.byName[e.Provider]; up != nil && (up.dialect == d || translate.Translatable(op)) {
				served = append(served, e.Model)
			}
		}
		served = append(served, c.ModelAliases...)
		if len(served) == 0 {
			return route{}, nil, &errNoRoute{fmt.Sprintf("the aiquota limiter's fallback chain has no %s-dialect entry for model %q", d, model)}
		}
		return route{}, nil, &errNoRoute{fmt.Sprintf("model %q is not served here; the aiquota limiter's fallback chain accepts %s", model, strings.Join(served, ", "))}
	}
	var only *upstream
	n := 0
	for _, up := range live.providers {
		if up.dialect != d {
			continue
		}
		if up.models[model] {
			return route{up: up, model: model, index: -1}, nil, nil
		}
		only = up
		n++
	}
	if n == 1 && model != "" && only.cfg.RejectsUnlisted() {
		listed := only.cfg.ListedModels()
		slices.Sort(listed)
		return route{}, nil, &errNoRoute{fmt.Sprintf("model %q is not served here: ProviderQuota %q accepts only the models it lists (spec.unlistedModels: reject): %s",
			model, only.cfg.Name, strings.Join(listed, ", "))}
	}
	if n == 1 {
		return route{up: only, model: model, index: -1}, nil, nil
	}
	if n == 0 {
		return route{}, nil, &errNoRoute{fmt.Sprintf("no provider speaking the %s dialect is configured in the aiquota limiter (model %q)", d, model)}
	}
	return route{}, nil, &errNoRoute{fmt.Sprintf("model %q is not listed by any of the %d %s-dialect providers configured in the aiquota limiter", model, n, d)}
}

// policyFor is the policy of a chain entry naming one, else the provider's.
func (live *liveConfig) policyFor(up *upstream, model string) limiterconfig.Policy {
	if c := live.cfg.Chain; c != nil {
		for _, e := range c.Entries {
			if e.Policy != "" && e.Provider == up.cfg.Name && e.Model == model {
				return live.cfg.PolicyNamed(e.Policy)
			}
		}
	}
	return up.policy
}

// counterCache resolves a pool's (tokenizer, model) to a token counter: one
// memoising counter per BPE encoding, shared by every model that uses it (counts
// depend on the vocabulary alone), so words and lines an app resends are not
// tokenized again.
type counterCache struct {
	mu    sync.RWMutex
	byKey map[[2]string]provider.Counter
	memos map[provider.Counter]provider.Counter
}

// maxCachedCounters bounds the (tokenizer, model) lookups remembered; beyond it the
// encoding is resolved on each request (still through its shared memo).
const maxCachedCounters = 512

// memoEntries bounds each encoding's memo, in words and lines: at most about 2x
// this many counts, 0.6 MB when full. Traffic with a new word or number in every
// request fills any bound within minutes, and a full memo is live heap the
// collector also sizes its garbage by: 1 << 16 held 4.7 MB, a sixth of the
// limiter's memory under load (docs/benchmarks.md). What the memo is for stays
// in it at this size: a system prompt's lines and the common words are met again
// long before a generation of 8,192 new entries retires them.
const memoEntries = 1 << 13

func newCounterCache() *counterCache {
	return &counterCache{byKey: map[[2]string]provider.Counter{}, memos: map[provider.Counter]provider.Counter{}}
}

func (c *counterCache) get(tokenizer, model string) provider.Counter {
	k := [2]string{tokenizer, model}
	c.mu.RLock()
	ctr := c.byKey[k]
	c.mu.RUnlock()
	if ctr != nil {
		return ctr
	}
	base := provider.CounterFor(tokenizer, model)
	if base == provider.Estimate {
		return base // as cheap as a lookup
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ctr = c.memos[base]
	if ctr == nil {
		ctr = provider.NewMemoCounter(base, memoEntries)
		c.memos[base] = ctr
	}
	if len(c.byKey) < maxCachedCounters {
		c.byKey[k] = ctr
	}
	return ctr
}
