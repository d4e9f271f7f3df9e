package webhook

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// EventRecorder is the events.k8s.io recorder (the manager's GetEventRecorder).
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

var schemaReplicaSet = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}

// maxEventNote is the events.k8s.io limit on Event.note.
const maxEventNote = 1024

// ownerLookups bounds the ReplicaSet reads in flight; beyond it an event goes to the
// ReplicaSet itself instead of waiting, so admission never queues behind events.
const ownerLookups = 64

// eventSink records events on a pod's owning workload. The pod does not exist yet
// at admission (and never will if denied), so its controller is where `kubectl
// describe` users look: a Deployment rather than its ReplicaSet when it can be told.
type eventSink struct {
	recorder EventRecorder
	reader   client.Reader
	log      logr.Logger
	slots    chan struct{}
}

func newEventSink(recorder EventRecorder, reader client.Reader, log logr.Logger) *eventSink {
	return &eventSink{recorder: recorder, reader: reader, log: log, slots: make(chan struct{}, ownerLookups)}
}

// record returns at once; the owner lookup and the event write happen in the
// background.
func (s *eventSink) record(namespace string, owners []metav1.OwnerReference, ev *podEvent) {
	owner := controllerOf(owners)
	if owner == nil {
		// A bare pod: whoever created it got the admission response directly.
		return
	}
	note := ev.note
	if len(note) > maxEventNote {
		note = note[:maxEventNote-3] + "..."
	}
	ref := &corev1.ObjectReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name, Namespace: namespace, UID: owner.UID}
	if owner.Kind != "ReplicaSet" || owner.APIVersion != "apps/v1" || s.reader == nil {
		s.recorder.Eventf(ref, nil, ev.eventType, ev.reason, eventAction, "%s", note)
		return
	}
	select {
	case s.slots <- struct{}{}:
		go func() {
			defer func() { <-s.slots }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.recorder.Eventf(s.workloadOf(ctx, ref), nil, ev.eventType, ev.reason, eventAction, "%s", note)
		}()
	default:
		s.recorder.Eventf(ref, nil, ev.eventType, ev.reason, eventAction, "%s", note)
	}
}

// workloadOf returns the Deployment that controls a ReplicaSet, or the ReplicaSet.
func (s *eventSink) workloadOf(ctx context.Context, rs *corev1.ObjectReference) *corev1.ObjectReference {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(schemaReplicaSet)
	if err := s.reader.Get(ctx, types.NamespacedName{Namespace: rs.Namespace, Name: rs.Name}, meta); err != nil {
		s.log.V(1).Info("could not read the pod's ReplicaSet; recording the event on it", "replicaSet", klog.KRef(rs.Namespace, rs.Name), "error", err)
		return rs
	}
	if d := controllerOf(meta.OwnerReferences); d != nil && d.Kind == "Deployment" && d.APIVersion == "apps/v1" {
		return &corev1.ObjectReference{APIVersion: d.APIVersion, Kind: d.Kind, Name: d.Name, Namespace: rs.Namespace, UID: d.UID}
	}
	return rs
}

func controllerOf(owners []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range owners {
		if owners[i].Controller != nil && *owners[i].Controller {
			return &owners[i]
		}
	}
	return nil
}
