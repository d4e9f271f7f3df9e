// Package adversarial runs the real limiter and simulator binaries as processes and
// probes them the way a hostile user or a careless app would (issue 8's "keep it
// fixed"): each test starts its own processes on loopback and asserts on what the
// limiter reports about itself (metrics, /state), never on wall time.
package adversarial
