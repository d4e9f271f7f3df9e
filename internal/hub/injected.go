package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/aiquota/aiquota/internal/hubapi"
	"github.com/aiquota/aiquota/internal/naming"
)

// Defaults of the cache of injection records.
const (
	// DefaultInjectedCacheSize bounds the pods remembered, one entry per pod UID.
	DefaultInjectedCacheSize = 20000
	// defaultNotInjectedTTL is how long a pod found without a record is remembered:
	// long enough that a pod repeating a refused report costs no GET per report.
	defaultNotInjectedTTL = time.Minute
)

// errNotInjected is a pod whose record does not name the report's configuration.
var errNotInjected = errors.New("not injected for this configuration")

// injectedConfig is what a pod's aiquota.dev/injected record says it was injected
// for: kind is hubapi.KindFallbackChain or KindProviderQuota, "" for no record.
type injectedConfig struct {
	kind, name string
	// why explains an empty kind.
	why string
}

// InjectionChecker accepts a report only from a pod that the webhook injected for
// the configuration the report is about: its aiquota.dev/injected record (written
// by internal/webhook at the pod's creation) names that FallbackChain or
// ProviderQuota. Without it, any pod of a namespace could mint a control-channel
// token for itself and write made-up usage, breakers or failovers into status.
//
// Each pod is looked up once per UID (a metadata-only GET from the API server) and
// remembered in a bounded LRU; a pod without a record is remembered for a minute.
type InjectionChecker struct {
	reader      client.Reader
	now         func() time.Time
	negativeTTL time.Duration

	mu    sync.Mutex
	cache *lru[types.UID, injectedConfig]
}

// NewInjectionChecker reads pods with reader; size <= 0 means DefaultInjectedCacheSize.
func NewInjectionChecker(reader client.Reader, size int, now func() time.Time) *InjectionChecker {
	if size <= 0 {
		size = DefaultInjectedCacheSize
	}
	if now == nil {
		now = time.Now
	}
	return &InjectionChecker{reader: reader, now: now, negativeTTL: defaultNotInjectedTTL, cache: newLRU[types.UID, injectedConfig](size)}
}

// Check returns nil when the identity's pod was injected for cfg, an error
// wrapping errNotInjected (with the reason) when it was not, and any other error
// when the pod could not be read.
func (c *InjectionChecker) Check(ctx context.Context, id Identity, cfg hubapi.Config) error {
	got, err := c.lookup(ctx, id)
	if err != nil {
		return err
	}
	if got.kind == "" {
		return fmt.Errorf("%w: pod %s/%s %s", errNotInjected, id.Namespace, id.PodName, got.why)
	}
	if got.kind != cfg.Kind || got.name != cfg.Name {
		return fmt.Errorf("%w: pod %s/%s was injected for %s %s, not %s %s", errNotInjected,
			id.Namespace, id.PodName, got.kind, got.name, truncateText(cfg.Kind), truncateText(cfg.Name))
	}
	return nil
}

// Len is the number of pods remembered.
func (c *InjectionChecker) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cache.len()
}

func (c *InjectionChecker) lookup(ctx context.Context, id Identity) (injectedConfig, error) {
	uid := types.UID(id.PodUID)
	now := c.now()
	c.mu.Lock()
	if cfg, ok := c.cache.get(uid, now); ok {
		c.mu.Unlock()
		return cfg, nil
	}
	c.mu.Unlock()

	var pod metav1.PartialObjectMetadata
	pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	err := c.reader.Get(ctx, types.NamespacedName{Namespace: id.Namespace, Name: id.PodName}, &pod)
	var cfg injectedConfig
	switch {
	case apierrors.IsNotFound(err):
		cfg.why = "no longer exists"
	case err != nil:
		return injectedConfig{}, fmt.Errorf("get pod %s/%s: %w", id.Namespace, id.PodName, err)
	case pod.UID != uid:
		cfg.why = "is another pod than the token's (uid " + string(pod.UID) + ")"
	default:
		cfg = readRecord(pod.Annotations)
	}
	var expires time.Time // an injected pod's record never changes
	if cfg.kind == "" {
		expires = now.Add(c.negativeTTL)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cache.put(uid, cfg, expires)
	return cfg, nil
}

// readRecord reads the chain or quota an aiquota.dev/injected record names. The
// record is internal/webhook's Summary; only the fields read here matter to the hub.
func readRecord(annotations map[string]string) injectedConfig {
	raw, ok := annotations[naming.AnnotationInjected]
	if !ok {
		return injectedConfig{why: "has no " + naming.AnnotationInjected + " annotation: the aiquota webhook never injected it"}
	}
	var rec struct {
		Version       int    `json:"version"`
		FallbackChain string `json:"fallbackChain"`
		ProviderQuota string `json:"providerQuota"`
	}
	bad := injectedConfig{why: "has an " + naming.AnnotationInjected + " annotation that is not the webhook's record"}
	if json.Unmarshal([]byte(raw), &rec) != nil || rec.Version != 1 {
		return bad
	}
	switch {
	case rec.FallbackChain != "" && rec.ProviderQuota == "":
		return injectedConfig{kind: hubapi.KindFallbackChain, name: rec.FallbackChain}
	case rec.ProviderQuota != "" && rec.FallbackChain == "":
		return injectedConfig{kind: hubapi.KindProviderQuota, name: rec.ProviderQuota}
	}
	return bad
}
