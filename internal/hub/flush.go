package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
	"github.com/aiquota/aiquota/internal/hubapi"
)

// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=providerquotas;fallbackchains;circuitpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=quota.aiquota.dev,resources=providerquotas/status;fallbackchains/status;circuitpolicies/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// DefaultStatusWriteInterval is the least time between two status writes of one resource.
const DefaultStatusWriteInterval = 10 * time.Second

// StatusWriter writes the aggregator's view into the resources' status: each
// resource at most once per Interval, only when one of the aggregator's fields
// changed, with a JSON merge patch of those fields alone (the reconcilers own the
// rest of the status). It runs on the leader only.
type StatusWriter struct {
	// Client reads the resources (from the manager's cache) and patches status.
	Client client.Client
	// Pods reads pod metadata, uncached, to forget sidecars whose pod is gone.
	Pods       client.Reader
	Aggregator *Aggregator
	Metrics    *Metrics
	Log        logr.Logger
	// Interval is the least time between writes of one resource.
	Interval time.Duration
	// Workers is how many patches run at once.
	Workers int
	// Now is the clock (the aggregator's).
	Now func() time.Time
	// Events, when set, records breaker transitions and failovers as Events.
	Events events.EventRecorder

	mu        sync.Mutex
	lastWrite map[resourceKey]time.Time
}

// FlushResult counts one pass.
type FlushResult struct {
	Evaluated, Written, Failed, Expired int
}

// NeedLeaderElection is true: one authoritative writer (and, later, allocator).
func (w *StatusWriter) NeedLeaderElection() bool { return true }

// tick is how often due resources are looked at: often enough that a write is late
// by a small fraction of Interval.
func (w *StatusWriter) tick() time.Duration {
	return min(time.Second, max(100*time.Millisecond, w.Interval/10))
}

// Start flushes until ctx ends; it begins the aggregator's term.
func (w *StatusWriter) Start(ctx context.Context) error {
	w.Aggregator.Begin()
	t := time.NewTicker(w.tick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.Flush(ctx)
		}
	}
}

// Flush evaluates every due resource once.
func (w *StatusWriter) Flush(ctx context.Context) FlushResult {
	start := time.Now()
	var res FlushResult
	res.Expired = w.Aggregator.Expire()
	w.forgetGonePods(ctx)
	keys := w.Aggregator.Due()
	if w.Metrics != nil {
		w.Metrics.activeSidecars.Set(float64(w.Aggregator.ActiveSidecars()))
	}
	workers := max(1, w.Workers)
	jobs := make(chan resourceKey)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				written, err := w.flushOne(ctx, k)
				mu.Lock()
				res.Evaluated++
				switch {
				case err != nil:
					res.Failed++
					w.Aggregator.MarkDirty(k)
					w.logFor(k).Error(err, "status write failed; retrying on the next flush")
				case written:
					res.Written++
				}
				mu.Unlock()
			}
		}()
	}
	for _, k := range keys {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	if w.Metrics != nil {
		w.Metrics.flushDuration.Observe(time.Since(start).Seconds())
	}
	return res
}

// due reports whether k may be written now.
func (w *StatusWriter) due(k resourceKey, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.lastWrite[k]
	return !ok || now.Sub(last) >= w.Interval
}

func (w *StatusWriter) wrote(k resourceKey, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastWrite == nil {
		w.lastWrite = map[resourceKey]time.Time{}
	}
	w.lastWrite[k] = now
}

func (w *StatusWriter) forget(k resourceKey) {
	w.mu.Lock()
	delete(w.lastWrite, k)
	w.mu.Unlock()
	w.Aggregator.ForgetResource(k)
}

// flushOne evaluates one resource: metrics always, status when due and changed.
func (w *StatusWriter) flushOne(ctx context.Context, k resourceKey) (bool, error) {
	kind, ok := statusKinds[k.Kind]
	if !ok {
		return false, fmt.Errorf("unknown resource kind %q", k.Kind)
	}
	now := w.Now()
	due := w.due(k, now)
	obj := kind.object()
	if err := w.Client.Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: k.Name}, obj); err != nil {
		return w.missing(k, err)
	}
	v := kind.view(w, k, obj)
	fields := !equality.Semantic.DeepEqual(v.current, v.wanted)
	cond := v.cond != nil && v.cond.changed()
	if !fields && !cond {
		return false, nil
	}
	if !due {
		w.Aggregator.MarkDirty(k)
		return false, nil
	}
	var written bool
	if fields {
		var err error
		if written, err = w.patch(ctx, k, obj, v.patch(metaTime(now)), now); err != nil || !written {
			return written, err
		}
	}
	if cond {
		applied, err := w.applyCondition(ctx, k, obj, v.cond.wanted(metaTime(now)), now)
		if err != nil {
			return written, err
		}
		written = written || applied
	}
	if written && v.written != nil {
		v.written()
	}
	return written, nil
}

// ownedCondition is the one condition type the hub owns on a kind whose other
// conditions the reconciler writes: its state as stored and as the reports have it.
type ownedCondition struct {
	current *metav1.Condition
	// want is the condition without its lastTransitionTime; nil leaves it absent.
	want *metav1.Condition
}

func (c *ownedCondition) changed() bool {
	if c.want == nil || c.current == nil {
		return c.want != nil
	}
	return c.current.Status != c.want.Status || c.current.Reason != c.want.Reason ||
		c.current.Message != c.want.Message || c.current.ObservedGeneration != c.want.ObservedGeneration
}

// wanted is the condition to write, keeping the stored transition time while the
// status stays the same.
func (c *ownedCondition) wanted(now metav1.Time) metav1.Condition {
	out := *c.want
	out.LastTransitionTime = now
	if c.current != nil && c.current.Status == out.Status {
		out.LastTransitionTime = c.current.LastTransitionTime
	}
	return out
}

// hubFieldManager is the field manager of the hub's server-side applies.
const hubFieldManager = "aiquota-control-channel"

// applyCondition writes one condition by server-side apply as hubFieldManager.
// conditions is a map list keyed by type, so the API server merges the entry in
// and leaves the reconciler's conditions alone, which a merge patch (replacing
// the whole list) would not. The reconciler's merge patches send the list as its
// cache has it; one sent from a cache older than this write drops the entry, and
// the next flush applies it again.
func (w *StatusWriter) applyCondition(ctx context.Context, k resourceKey, obj client.Object, c metav1.Condition, now time.Time) (bool, error) {
	gvk, err := apiutil.GVKForObject(obj, w.Client.Scheme())
	if err != nil {
		return false, fmt.Errorf("kind of %s %s/%s: %w", k.Kind, k.Namespace, k.Name, err)
	}
	data, err := json.Marshal(map[string]any{
		"apiVersion": gvk.GroupVersion().String(), "kind": gvk.Kind,
		"metadata": map[string]string{"name": k.Name, "namespace": k.Namespace},
		"status":   map[string]any{"conditions": []metav1.Condition{c}},
	})
	if err != nil {
		return false, fmt.Errorf("encode the %s condition of %s %s/%s: %w", c.Type, k.Kind, k.Namespace, k.Name, err)
	}
	return w.send(ctx, k, obj, client.RawPatch(types.ApplyYAMLPatchType, data), now, client.FieldOwner(hubFieldManager), client.ForceOwnership)
}

// logFor is the writer's logger with k under its kind's lowerCamel name, as
// controller-runtime logs the objects it reconciles.
func (w *StatusWriter) logFor(k resourceKey) logr.Logger {
	ref := klog.KRef(k.Namespace, k.Name)
	switch k.Kind {
	case kindQuota:
		return w.Log.WithValues("providerQuota", ref)
	case kindChain:
		return w.Log.WithValues("fallbackChain", ref)
	case kindPolicy:
		return w.Log.WithValues("circuitPolicy", ref)
	}
	return w.Log.WithValues("kind", k.Kind, "object", ref)
}

// statusKind is what the writer needs of one kind; every kind goes through the same
// read, compare, rate-limit and patch steps in flushOne.
type statusKind struct {
	object func() client.Object
	// view computes the aggregator's fields for obj, observing the kind's metrics.
	view func(w *StatusWriter, k resourceKey, obj client.Object) statusView
	// gone removes the kind's metrics of a resource that no longer exists.
	gone func(m *Metrics, k resourceKey)
}

// statusView is one resource's aggregator-owned status as the object has it and as
// the reports have it, the patch that writes the latter, and what follows a write.
type statusView struct {
	current, wanted any
	patch           func(now metav1.Time) any
	// written runs after a write, when the object holds the status the API server
	// returned; it records Events.
	written func()
	// cond is the condition the hub owns on the kind, if any.
	cond *ownedCondition
}

// kindOf types a kind's view function, so the descriptors below need no assertions.
func kindOf[O any, P interface {
	*O
	client.Object
}](view func(w *StatusWriter, k resourceKey, obj P) statusView, gone func(m *Metrics, k resourceKey)) statusKind {
	return statusKind{
		object: func() client.Object { return P(new(O)) },
		view:   func(w *StatusWriter, k resourceKey, obj client.Object) statusView { return view(w, k, obj.(P)) },
		gone:   gone,
	}
}

var statusKinds = map[string]statusKind{
	kindQuota: kindOf(func(w *StatusWriter, k resourceKey, obj *quotav1alpha1.ProviderQuota) statusView {
		v := w.Aggregator.quotaView(k, &obj.Status)
		if w.Metrics != nil {
			w.Metrics.observeQuota(k, &v)
		}
		before := meta.FindStatusCondition(obj.Status.Conditions, quotav1alpha1.ConditionDemandExceedsQuota)
		if before != nil {
			before = before.DeepCopy()
		}
		return statusView{
			current: ownedQuota(&obj.Status),
			wanted:  v.status,
			patch: func(now metav1.Time) any {
				return quotaPatch{
					Utilization: v.status.Utilization, Models: v.status.Models, TokensToday: v.status.TokensToday,
					RequestsToday: v.status.RequestsToday, Day: nonEmpty(v.status.Day), ActiveSidecars: v.status.ActiveSidecars,
					LearnedLimits: v.status.LearnedLimits, Sharing: v.status.Sharing, LastUpdated: &now,
				}
			},
			cond:    &ownedCondition{current: before, want: demandCondition(v.status.Sharing, v.demandExceeds, before, obj.Generation)},
			written: func() { w.quotaEvents(obj, before) },
		}
	}, func(m *Metrics, k resourceKey) { m.observeQuota(k, nil) }),

	kindChain: kindOf(func(w *StatusWriter, k resourceKey, obj *quotav1alpha1.FallbackChain) statusView {
		v := w.Aggregator.chainView(k, &obj.Status)
		if w.Metrics != nil {
			w.Metrics.observeChain(k, &v)
		}
		st := &obj.Status
		before := st.LastFailover
		return statusView{
			current: chainOwned{ActiveEntry: st.ActiveEntry, ActiveModel: st.ActiveModel, Failovers: st.Failovers, LastFailover: st.LastFailover},
			wanted:  v.status,
			patch: func(now metav1.Time) any {
				return chainPatch{
					ActiveEntry: v.status.ActiveEntry, ActiveModel: nonEmpty(v.status.ActiveModel), Failovers: v.status.Failovers,
					LastFailover: v.status.LastFailover, LastUpdated: &now,
				}
			},
			written: func() { w.chainEvents(obj, before) },
		}
	}, func(m *Metrics, k resourceKey) { m.observeChain(k, nil) }),

	kindPolicy: kindOf(func(w *StatusWriter, k resourceKey, obj *quotav1alpha1.CircuitPolicy) statusView {
		v := w.Aggregator.policyView(k)
		if w.Metrics != nil {
			w.Metrics.observePolicy(k, &v)
		}
		before := obj.Status.Breakers
		return statusView{
			current: policyOwned{Breakers: obj.Status.Breakers, OpenBreakers: obj.Status.OpenBreakers},
			wanted:  v,
			patch: func(now metav1.Time) any {
				return policyPatch{Breakers: v.Breakers, OpenBreakers: v.OpenBreakers, LastUpdated: &now}
			},
			written: func() { w.breakerEvents(obj, before) },
		}
	}, func(m *Metrics, k resourceKey) { m.observePolicy(k, nil) }),
}

func ownedQuota(st *quotav1alpha1.ProviderQuotaStatus) quotaOwned {
	return quotaOwned{
		Utilization: st.Utilization, Models: st.Models, TokensToday: st.TokensToday, RequestsToday: st.RequestsToday,
		Day: st.Day, ActiveSidecars: st.ActiveSidecars, LearnedLimits: st.LearnedLimits, Sharing: st.Sharing,
	}
}

// missing handles a resource that could not be read: one that does not exist (a
// report may name anything in its namespace) is forgotten; others are retried.
func (w *StatusWriter) missing(k resourceKey, err error) (bool, error) {
	if apierrors.IsNotFound(err) {
		w.forget(k)
		if kind, ok := statusKinds[k.Kind]; ok && w.Metrics != nil {
			kind.gone(w.Metrics, k)
		}
		return false, nil
	}
	return false, fmt.Errorf("read %s %s/%s: %w", k.Kind, k.Namespace, k.Name, err)
}

// The status patches: JSON merge patches that carry every field the aggregator
// owns, and nothing else. null clears a field. They do not depend on how fresh the
// cached copy is, and carry no resourceVersion precondition, so they never conflict
// with the reconcilers' writes of their own fields.
type (
	quotaPatch struct {
		Utilization    *quotav1alpha1.UtilizationSummary `json:"utilization"`
		Models         []quotav1alpha1.ModelUtilization  `json:"models"`
		TokensToday    int64                             `json:"tokensToday"`
		RequestsToday  int64                             `json:"requestsToday"`
		Day            *string                           `json:"day"`
		ActiveSidecars int32                             `json:"activeSidecars"`
		LearnedLimits  *quotav1alpha1.QuotaLimits        `json:"learnedLimits"`
		Sharing        *quotav1alpha1.AccountSharing     `json:"sharing"`
		LastUpdated    *metav1.Time                      `json:"lastUpdated"`
	}
	chainPatch struct {
		ActiveEntry  *int32                       `json:"activeEntry"`
		ActiveModel  *string                      `json:"activeModel"`
		Failovers    quotav1alpha1.FailoverCounts `json:"failovers"`
		LastFailover *quotav1alpha1.Failover      `json:"lastFailover"`
		LastUpdated  *metav1.Time                 `json:"lastUpdated"`
	}
	policyPatch struct {
		Breakers     []quotav1alpha1.BreakerStatus `json:"breakers"`
		OpenBreakers int32                         `json:"openBreakers"`
		LastUpdated  *metav1.Time                  `json:"lastUpdated"`
	}
)

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// patch sends {"status": fields} as a merge patch to obj's status subresource.
func (w *StatusWriter) patch(ctx context.Context, k resourceKey, obj client.Object, fields any, now time.Time) (bool, error) {
	data, err := json.Marshal(map[string]any{"status": fields})
	if err != nil {
		return false, fmt.Errorf("encode the status patch of %s %s/%s: %w", k.Kind, k.Namespace, k.Name, err)
	}
	return w.send(ctx, k, obj, client.RawPatch(types.MergePatchType, data), now)
}

// send patches obj's status subresource, timing and counting the write.
func (w *StatusWriter) send(ctx context.Context, k resourceKey, obj client.Object, p client.Patch, now time.Time, opts ...client.SubResourcePatchOption) (bool, error) {
	start := time.Now()
	err := w.Client.Status().Patch(ctx, obj, p, opts...)
	if w.Metrics != nil {
		w.Metrics.writeDuration.Observe(time.Since(start).Seconds())
		result := "success"
		if err != nil {
			result = "error"
		}
		w.Metrics.statusWrites.WithLabelValues(k.Kind, result).Inc()
	}
	if apierrors.IsNotFound(err) {
		return w.missing(k, err)
	}
	if err != nil {
		return false, fmt.Errorf("patch the status of %s %s/%s: %w", k.Kind, k.Namespace, k.Name, err)
	}
	w.wrote(k, now)
	return true, nil
}

// demandCondition is DemandExceedsQuota for sharing: True while requests wait at a
// full grant. Without leases it is left absent, or turned False if it was set (the
// hub never removes it: another writer may have sent the entry since, and an apply
// removes only what its manager alone owns).
func demandCondition(sh *quotav1alpha1.AccountSharing, exceeds bool, cur *metav1.Condition, generation int64) *metav1.Condition {
	c := &metav1.Condition{Type: quotav1alpha1.ConditionDemandExceedsQuota, ObservedGeneration: generation}
	switch {
	case sh == nil && cur == nil:
		return nil
	case sh == nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, quotav1alpha1.ReasonWithinQuota, "no sidecar holds a lease on this account"
	case exceeds:
		c.Status, c.Reason = metav1.ConditionTrue, quotav1alpha1.ReasonQueuedAtFullGrant
		c.Message = fmt.Sprintf("%d requests wait in the sidecars' queues although the leases grant %d%% of the account's limit "+
			"(all of it less the safety margin and the reserve for new pods); raise the limit or lower the demand", sh.Queued, sh.GrantedPercent)
	default:
		c.Status, c.Reason = metav1.ConditionFalse, quotav1alpha1.ReasonWithinQuota
		c.Message = fmt.Sprintf("the leases cover the demand: %d requests queued, %d%% of the account's limit granted", sh.Queued, sh.GrantedPercent)
	}
	return c
}

// Event reasons and the action of the aggregator's Events.
const (
	eventBreakerOpened = "BreakerOpened"
	eventBreakerClosed = "BreakerClosed"
	eventFailedOver    = "FailedOver"
	eventAction        = "AggregateReports"
)

// breakerEvents records the breakers that opened or closed between two written
// statuses: transitions users act on, at most one per breaker per write.
func (w *StatusWriter) breakerEvents(cp *quotav1alpha1.CircuitPolicy, before []quotav1alpha1.BreakerStatus) {
	if w.Events == nil {
		return
	}
	was := map[[2]string]quotav1alpha1.BreakerState{}
	for _, b := range before {
		was[[2]string{b.ProviderQuota, b.Model}] = b.State
	}
	for _, b := range cp.Status.Breakers {
		prev := was[[2]string{b.ProviderQuota, b.Model}]
		switch {
		case b.State == quotav1alpha1.BreakerOpen && prev != quotav1alpha1.BreakerOpen:
			note := fmt.Sprintf("the circuit breaker for %s/%s is open in at least one sidecar", b.ProviderQuota, b.Model)
			if b.LastFailure != "" {
				note += " (last failure: " + b.LastFailure + ")"
			}
			note += "; its calls fail fast or fall back until it recovers; check the provider's status and the sidecars' logs"
			w.Events.Eventf(cp, nil, corev1.EventTypeWarning, eventBreakerOpened, eventAction, "%s", note)
		case b.State == quotav1alpha1.BreakerClosed && (prev == quotav1alpha1.BreakerOpen || prev == quotav1alpha1.BreakerHalfOpen):
			w.Events.Eventf(cp, nil, corev1.EventTypeNormal, eventBreakerClosed, eventAction,
				"the circuit breaker for %s/%s closed again in every sidecar: calls succeed", b.ProviderQuota, b.Model)
		}
	}
}

// quotaEvents records demand starting to exceed the quota: the transition users act
// on. Its end shows in the condition alone.
func (w *StatusWriter) quotaEvents(pq *quotav1alpha1.ProviderQuota, before *metav1.Condition) {
	now := meta.FindStatusCondition(pq.Status.Conditions, quotav1alpha1.ConditionDemandExceedsQuota)
	if w.Events == nil || now == nil || now.Status != metav1.ConditionTrue || (before != nil && before.Status == metav1.ConditionTrue) {
		return
	}
	w.Events.Eventf(pq, nil, corev1.EventTypeWarning, quotav1alpha1.ConditionDemandExceedsQuota, eventAction, "%s", now.Message)
}

// chainEvents records failovers that happened since the previous write.
func (w *StatusWriter) chainEvents(fc *quotav1alpha1.FallbackChain, before *quotav1alpha1.Failover) {
	lf := fc.Status.LastFailover
	if w.Events == nil || lf == nil || (before != nil && !lf.Time.After(before.Time.Time)) {
		return
	}
	w.Events.Eventf(fc, nil, corev1.EventTypeWarning, eventFailedOver, eventAction,
		"requests failed over from %s to %s (%s); %d failovers in the last hour. The first entries' providers are failing or out of quota",
		lf.From, lf.To, lf.Reason, fc.Status.Failovers.LastHour)
}

// maxPodChecks bounds pod lookups per flush.
const maxPodChecks = 50

// forgetGonePods looks up the pods of sidecars that missed a report and forgets
// those whose pod no longer exists (or is another pod of the same name now), so a
// crashed pod leaves the status before its sidecar would expire.
func (w *StatusWriter) forgetGonePods(ctx context.Context) {
	if w.Pods == nil {
		return
	}
	for _, p := range w.Aggregator.Silent(maxPodChecks) {
		var pod metav1.PartialObjectMetadata
		pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
		err := w.Pods.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, &pod)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			w.Log.V(1).Info("pod lookup failed; the sidecar expires on its own", "pod", klog.KRef(p.Namespace, p.Name), "error", err)
			continue
		case string(pod.UID) == p.UID && pod.DeletionTimestamp == nil:
			continue
		}
		if w.Aggregator.Forget(hubapi.Pod{Namespace: p.Namespace, Name: p.Name, UID: p.UID}) {
			w.Log.V(1).Info("forgot the sidecar of a pod that is gone", "pod", klog.KRef(p.Namespace, p.Name))
		}
	}
}
