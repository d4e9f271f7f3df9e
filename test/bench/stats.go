// Package bench is the end-to-end load benchmark of the limiter sidecar: it starts
// the provider simulator, a plain httputil.ReverseProxy (the floor) and the limiter
// as real processes, drives them with an open-loop or closed-loop load generator,
// and samples each process's CPU and memory from /proc. cmd/proxybench runs it and
// prints the tables; docs/benchmarks.md holds the results.
package bench

import (
	"math"
	"slices"
	"time"
)

// Summary is a latency distribution's headline numbers.
type Summary struct {
	Count int
	P50   time.Duration
	P90   time.Duration
	P99   time.Duration
	Max   time.Duration
}

// Summarize computes nearest-rank percentiles of samples; it sorts a copy, so the
// caller's slice keeps its order. An empty input gives a zero Summary.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return Summary{
		Count: len(s),
		P50:   Percentile(s, 50),
		P90:   Percentile(s, 90),
		P99:   Percentile(s, 99),
		Max:   s[len(s)-1],
	}
}

// Percentile is the nearest-rank percentile p (0 < p <= 100) of sorted: the
// smallest sample such that at least p% of the samples are at or below it. It
// never interpolates, so every reported value is a latency that was observed.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Median is the middle value of xs (the lower middle for an even count), for
// picking a representative repetition; 0 for none.
func Median[T int | int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}
