// Command federation simulates one account shared by many clusters through
// hierarchical leases (test/quotabench/federation, docs/quota-federation.md) and
// prints what it measured.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/aiquota/aiquota/test/quotabench/federation"
)

func main() {
	cfg := federation.Default()
	flag.IntVar(&cfg.Clusters, "clusters", cfg.Clusters, "clusters sharing the account")
	flag.IntVar(&cfg.PodsPerCluster, "pods", cfg.PodsPerCluster, "pods per cluster")
	flag.Float64Var(&cfg.ParentReserve, "parent-reserve", cfg.ParentReserve, "the parent allocator's reserve for new clusters")
	flag.Float64Var(&cfg.ClusterReserve, "cluster-reserve", cfg.ClusterReserve, "each cluster allocator's reserve for new pods")
	flag.DurationVar(&cfg.ClusterReport, "cluster-report", cfg.ClusterReport, "how often a cluster reports to the parent")
	flag.DurationVar(&cfg.ClusterTTL, "cluster-ttl", cfg.ClusterTTL, "the parent's lease")
	flag.DurationVar(&cfg.PodReport, "pod-report", cfg.PodReport, "how often a pod reports to its cluster")
	flag.DurationVar(&cfg.PodTTL, "pod-ttl", cfg.PodTTL, "the clusters' leases to pods")
	flag.BoolVar(&cfg.Unconfirmed, "unconfirmed", false, "clusters report their lease alone, not what their pods may still enforce (the ablation)")
	flag.Parse()
	start := time.Now()
	res, err := federation.Run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "federation:", err)
		os.Exit(1)
	}
	fmt.Print(federation.Table(cfg, res))
	fmt.Printf("\n(simulated %v in %v)\n", cfg.Duration, time.Since(start).Round(time.Second))
}
