package federation

import (
	"testing"
	"time"
)

// small is Default at a size a test affords: 5 clusters of 100 pods, shorter leases.
func small() Config {
	cfg := Default()
	cfg.Clusters, cfg.PodsPerCluster, cfg.Partitioned = 5, 100, 1
	cfg.ClusterTTL, cfg.PodTTL = 20*time.Second, 10*time.Second
	cfg.ShiftAt, cfg.PartitionAt, cfg.PartitionFor, cfg.Duration = 15*time.Second, 30*time.Second, 30*time.Second, 80*time.Second
	return cfg
}

// TestHierarchicalLeasesNeverOverGrant: through demand moving between clusters and
// a cluster cut from the parent, the pods' leases together never exceed the
// account, and shares follow: goodput comes back after the shift, the parent
// hands the cut cluster's share to the others, and the cluster gets it back.
func TestHierarchicalLeasesNeverOverGrant(t *testing.T) {
	res, err := Run(small())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.OverGrant != 0 {
		t.Errorf("the pods' leases exceeded the account by %v rpm", res.OverGrant)
	}
	// Both reserves (1% each) are all that is not granted under overload.
	if res.Goodput < 98 {
		t.Errorf("steady goodput %.2f%% of the limit, want at least 98%%", res.Goodput)
	}
	if res.Rebalance == 0 || res.Reassigned == 0 || res.Rejoined == 0 {
		t.Errorf("shares did not follow: rebalanced after %v, reassigned after %v, rejoined after %v",
			res.Rebalance, res.Reassigned, res.Rejoined)
	}
}

// TestUnconfirmedMovesOverGrant: a cluster that reports its lease rather than what
// its pods may still enforce lets the parent grant a decrease to another cluster
// before the pods gave it back. Pods that report as often as their cluster happen
// to give it back in time; pods that report less often (an idle sidecar reports
// every 10 s) do not, and only the confirmation through the pods keeps the sum
// within the account.
func TestUnconfirmedMovesOverGrant(t *testing.T) {
	tests := []struct {
		name        string
		podReport   time.Duration
		unconfirmed bool
		overGrant   bool
	}{
		{"confirmed, pods report every 5 s", 5 * time.Second, false, false},
		{"unconfirmed, pods report every 5 s", 5 * time.Second, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := small()
			cfg.PodReport, cfg.Unconfirmed = tc.podReport, tc.unconfirmed
			res, err := Run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.OverGrant > 0; got != tc.overGrant {
				t.Errorf("over-grant %v rpm, want over-grant %v: %+v", res.OverGrant, tc.overGrant, res)
			}
		})
	}
}
