package hub

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestLeaderLabelMovesToTheNewLeader: a crashed leader's pod keeps the label until
// the next leader takes it over; other labels are untouched.
func TestLeaderLabelMovesToTheNewLeader(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	old, next, bystander := newPod(t, ns, "old"), newPod(t, ns, "next"), newPod(t, ns, "bystander")
	for _, p := range []*corev1.Pod{old, next, bystander} {
		patch := client.MergeFrom(p.DeepCopy())
		p.Labels = map[string]string{"app": "aiquota"}
		if p == old {
			p.Labels[LeaderLabel] = "true"
		}
		if err := env.Client.Patch(ctx, p, patch); err != nil {
			t.Fatal(err)
		}
	}

	l := &LeaderLabeler{Reader: env.Client, Client: env.Client, Namespace: ns, Pod: next.Name, Log: logr.Discard()}
	if !l.NeedLeaderElection() {
		t.Fatal("the labeler must run only on the elected leader")
	}
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Idempotent: a second start (same leader) changes nothing.
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, name := range []string{old.Name, next.Name, bystander.Name} {
		var p corev1.Pod
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		got[name] = p.Labels
	}
	want := map[string]map[string]string{
		old.Name:       {"app": "aiquota"},
		next.Name:      {"app": "aiquota", LeaderLabel: "true"},
		bystander.Name: {"app": "aiquota"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("pod labels after the new leader started (-want +got):\n%s", d)
	}
}
