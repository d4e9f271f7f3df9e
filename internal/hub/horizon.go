package hub

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// HorizonLeaseName names the coordination.k8s.io Lease, in the manager's namespace,
// that records the leader's grant horizon (see HorizonRecord).
const HorizonLeaseName = "aiquota-account-leases.quota.aiquota.dev"

// HorizonRecord keeps the account-lease grant horizon where the next leader reads
// it: the time until which the current leader may grant, written before it grants
// (spec.renewTime of a Lease object). A new leader that finds no record, or one
// that ended more than a lease TTL ago, knows no earlier lease can be in force and
// grants at once instead of learning for a TTL.
type HorizonRecord struct {
	Client    client.Client
	Reader    client.Reader // uncached: the record must be read as stored
	Namespace string
	Holder    string // the manager pod, for people reading the Lease
}

// Load returns the recorded horizon; zero when there is none.
func (r *HorizonRecord) Load(ctx context.Context) (time.Time, error) {
	var l coordinationv1.Lease
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: HorizonLeaseName}, &l)
	switch {
	case apierrors.IsNotFound(err):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("read the grant horizon Lease %s/%s: %w", r.Namespace, HorizonLeaseName, err)
	case l.Spec.RenewTime == nil:
		return time.Time{}, nil
	}
	return l.Spec.RenewTime.Time, nil
}

// Store records until as the horizon, creating the Lease the first time.
func (r *HorizonRecord) Store(ctx context.Context, until time.Time, ttl time.Duration) error {
	seconds := int32(ttl / time.Second)
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       &r.Holder,
		RenewTime:            &metav1.MicroTime{Time: until},
		LeaseDurationSeconds: &seconds,
	}
	var l coordinationv1.Lease
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: HorizonLeaseName}, &l)
	if apierrors.IsNotFound(err) {
		l = coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: HorizonLeaseName}, Spec: spec}
		err = r.Client.Create(ctx, &l)
	} else if err == nil {
		l.Spec = spec
		err = r.Client.Update(ctx, &l)
	}
	if err != nil {
		return fmt.Errorf("record the grant horizon in Lease %s/%s: %w", r.Namespace, HorizonLeaseName, err)
	}
	return nil
}

// horizonRetry is how soon a leader that could not read or write the record tries
// again; until it succeeds it grants nothing new.
const horizonRetry = 2 * time.Second

// Start keeps the grant horizon on record while this replica leads (a manager
// Runnable that needs leader election): it reads the previous term's horizon,
// records its own two TTLs ahead before its allocator grants anything, and moves it
// on every half TTL. Without a Record it returns at once: the allocator then learns
// for one TTL at every start.
func (l *Leases) Start(ctx context.Context) error {
	if l == nil || !l.Enabled || l.Record == nil {
		return nil
	}
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for {
		prior, err := l.Record.Load(ctx)
		if err == nil {
			until := l.Now().Add(2 * l.TTL)
			if err = l.Record.Store(ctx, until, l.TTL); err == nil {
				l.begin(prior, until)
				break
			}
		}
		l.Log.Error(err, "account leases grant nothing new until the grant horizon is on record")
		if !wait(horizonRetry) {
			return nil
		}
	}
	for wait(l.TTL / 2) {
		until := l.Now().Add(2 * l.TTL)
		if err := l.Record.Store(ctx, until, l.TTL); err != nil {
			l.Log.Error(err, "could not move the grant horizon on; account leases stop growing when it is reached")
			continue
		}
		l.mu.Lock()
		l.allocatorLocked(l.Now()).ExtendHorizon(until)
		l.mu.Unlock()
	}
	return nil
}

// NeedLeaderElection is true: only the leader grants leases.
func (l *Leases) NeedLeaderElection() bool { return true }

func (l *Leases) begin(prior, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.allocatorLocked(l.Now()).SetHorizon(prior, until)
	l.recorded = true
}
