package controller

import (
	"context"
	"strings"
	"sync"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
)

type eventRecorder = events.EventRecorder

// Event actions (events.k8s.io requires one).
const (
	actionReconcile = "Reconcile"
	actionRender    = "Render"
)

// Event reasons beyond the condition reasons.
const (
	eventReady          = "Ready"
	eventConfigRendered = "ConfigRendered"
)

func condition(typ string, ok bool, reason, message string) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message}
}

// setConditions stamps each condition with the generation it describes. A condition
// whose status did not change keeps its lastTransitionTime, so an unchanged object
// produces an identical status and no write.
func setConditions(conds *[]metav1.Condition, generation int64, cs ...metav1.Condition) {
	for _, c := range cs {
		c.ObservedGeneration = generation
		meta.SetStatusCondition(conds, c)
	}
}

// readyOf is Ready: True when every input is, else the first false one's reason and
// message.
func readyOf(cs ...metav1.Condition) metav1.Condition {
	for _, c := range cs {
		if c.Status != metav1.ConditionTrue {
			return condition(quotav1alpha1.ConditionReady, false, c.Reason, c.Message)
		}
	}
	return condition(quotav1alpha1.ConditionReady, true, quotav1alpha1.ReasonReady, "references resolve and the limiter config is up to date")
}

// announceReady records an Event when Ready changed status or, while not Ready, its
// reason: the transitions an operator acts on. Repeating reconciles stay silent.
func announceReady(rec eventRecorder, obj client.Object, before, after []metav1.Condition, readyNote string) {
	now := meta.FindStatusCondition(after, quotav1alpha1.ConditionReady)
	if now == nil {
		return
	}
	was := meta.FindStatusCondition(before, quotav1alpha1.ConditionReady)
	if was != nil && was.Status == now.Status && (now.Status == metav1.ConditionTrue || was.Reason == now.Reason) {
		return
	}
	if now.Status == metav1.ConditionTrue {
		rec.Eventf(obj, nil, corev1.EventTypeNormal, eventReady, actionReconcile, "%s", readyNote)
		return
	}
	rec.Eventf(obj, nil, corev1.EventTypeWarning, now.Reason, actionReconcile, "not ready: %s", truncate(now.Message, maxEventNote-len("not ready: ")))
}

// maxEventNote is the API server's limit on an Event's note; longer ones are refused.
const maxEventNote = 1024

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " [...]"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// joinProblems is the message of a condition made of several problems.
func joinProblems(ps []problem) string {
	msgs := make([]string, 0, len(ps))
	for _, p := range ps {
		msgs = append(msgs, p.message)
	}
	return strings.Join(msgs, "; ")
}

// firstReason picks the reason of the most severe problem: the order of reasons in
// severity lists them from "nothing can render" to "a pod may not start".
func firstReason(ps []problem, severity ...string) string {
	for _, r := range severity {
		for _, p := range ps {
			if p.reason == r {
				return r
			}
		}
	}
	return ps[0].reason
}

// lastWrites remembers the object each of our writes returned. The informer cache
// sees our own writes a little later; a reconcile that runs in between (the owned
// ConfigMap's watch event usually triggers one) would otherwise compare against the
// old state and write again. Entries are only used while they are newer than the
// cache, by resourceVersion, and are dropped when the object goes away.
type lastWrites struct {
	mu sync.Mutex
	m  map[writeKey]client.Object
}

type writeKey struct {
	kind string
	name types.NamespacedName
}

func newLastWrites() *lastWrites { return &lastWrites{m: map[writeKey]client.Object{}} }

func (l *lastWrites) remember(kind string, obj client.Object) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[writeKey{kind, client.ObjectKeyFromObject(obj)}] = obj.DeepCopyObject().(client.Object)
}

func (l *lastWrites) forget(kind string, name types.NamespacedName) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, writeKey{kind, name})
}

// recalled is our last write of the object when it is newer than cached.
func (l *lastWrites) recalled(kind string, cached client.Object) (client.Object, bool) {
	l.mu.Lock()
	mine, ok := l.m[writeKey{kind, client.ObjectKeyFromObject(cached)}]
	l.mu.Unlock()
	if !ok || mine.GetUID() != cached.GetUID() {
		return nil, false
	}
	// Resource versions are comparable integers on every API server we support; if
	// they are not, the cache is the safer truth.
	newer, err := resourceversion.CompareResourceVersion(mine.GetResourceVersion(), cached.GetResourceVersion())
	if err != nil || newer <= 0 {
		return nil, false
	}
	return mine.DeepCopyObject().(client.Object), true
}

// freshest is cached, or our own later write of it.
func freshest[T client.Object](l *lastWrites, kind string, cached T) T {
	if mine, ok := l.recalled(kind, cached); ok {
		if t, ok := mine.(T); ok {
			return t
		}
	}
	return cached
}

// reconciled reads the object a reconcile is for: the cached copy, or our own later
// write of it. It is nil when the object is gone (its ConfigMap goes with it, by
// owner reference) or being deleted.
func reconciled[T any, P interface {
	*T
	client.Object
}](ctx context.Context, d *deps, kind string, name types.NamespacedName) (P, error) {
	cached := P(new(T))
	if err := d.client.Get(ctx, name, cached); err != nil {
		if apierrors.IsNotFound(err) {
			d.writes.forget(kind, name)
		}
		return nil, client.IgnoreNotFound(err)
	}
	obj := freshest(d.writes, kind, cached)
	if !obj.GetDeletionTimestamp().IsZero() {
		return nil, nil
	}
	return obj, nil
}
