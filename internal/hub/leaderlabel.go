package hub

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LeaderLabel marks the manager pod that holds the leader lease. The control
// channel's Service selects on it, so sidecars' reports go to the one replica that
// aggregates them instead of landing on followers that can only answer notLeader.
const LeaderLabel = "aiquota.dev/control-leader"

// +kubebuilder:rbac:groups="",namespace=system,resources=pods,verbs=list;patch

// LeaderLabeler is a leader-election runnable: once this replica is elected it moves
// LeaderLabel from any other manager pod (a crashed leader keeps its label) to its
// own pod. It runs only on the leader; losing the lease ends the process, and the
// next leader takes the label over.
type LeaderLabeler struct {
	// Reader lists pods without a cache: a cached List would start a cluster-wide
	// pod informer for one lookup at election time.
	Reader    client.Reader
	Client    client.Client
	Namespace string
	Pod       string
	Log       logr.Logger
}

// NeedLeaderElection makes the manager start it only on the elected leader.
func (*LeaderLabeler) NeedLeaderElection() bool { return true }

// Start labels this pod as the leader and unlabels every other one.
func (l *LeaderLabeler) Start(ctx context.Context) error {
	var pods corev1.PodList
	sel := client.MatchingLabels{LeaderLabel: "true"}
	if err := l.Reader.List(ctx, &pods, client.InNamespace(l.Namespace), sel); err != nil {
		return fmt.Errorf("list manager pods labelled %s: %w", LeaderLabel, err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Name == l.Pod {
			continue
		}
		if err := l.patchLabel(ctx, p.Name, nil); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("remove %s from former leader %s: %w", LeaderLabel, p.Name, err)
		}
		l.Log.Info("removed the leader label from a former leader", "pod", klog.KObj(p))
	}
	value := "true"
	if err := l.patchLabel(ctx, l.Pod, &value); err != nil {
		return fmt.Errorf("label this pod %s as the control channel's leader: %w", l.Pod, err)
	}
	l.Log.Info("labelled this pod as the control channel's leader", "pod", klog.KRef(l.Namespace, l.Pod), "label", LeaderLabel)
	return nil
}

// patchLabel sets (value != nil) or removes the leader label with a merge patch, so
// it touches no other field of the pod.
func (l *LeaderLabeler) patchLabel(ctx context.Context, pod string, value *string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]*string{LeaderLabel: value}}})
	if err != nil {
		return fmt.Errorf("encode the label patch: %w", err)
	}
	p := &corev1.Pod{}
	p.Namespace, p.Name = l.Namespace, pod
	return l.Client.Patch(ctx, p, client.RawPatch(client.Merge.Type(), patch))
}
