package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
)

// sidecarGCPercent is the collector's target heap growth when GOGC is not set. A
// sidecar's memory is paid once per pod, and its live heap is small (the
// tokenizer's vocabularies are read in place from the binary, not the heap), so
// collecting at 50% growth instead of Go's 100% keeps the garbage between
// collections small too: with the earlier heap-held vocabulary it took a fifth
// off the anonymous memory under load, for no change in the CPU ratio to a plain
// proxy that we could measure (docs/benchmarks.md).
const sidecarGCPercent = 50

// memoryLimitFraction of the container's memory limit becomes the runtime's soft
// limit when GOMEMLIMIT is not set: the collector works harder near the limit rather
// than let a burst of queued requests get the container OOM-killed; the rest is
// headroom for what the cgroup charges but the Go runtime does not count: mapped
// binary pages and the kernel's socket buffers.
const memoryLimitFraction = 0.9

// cgroupMemoryFiles hold the container's memory limit under cgroup v2 and v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// tuneMemory applies the sidecar's collector settings where the environment does not
// set its own, and describes what it did for the start-up log; err says why a
// cgroup limit that exists could not be used.
func tuneMemory(getenv func(string) string, readFile func(string) ([]byte, error)) (attrs []any, err error) {
	attrs = []any{}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(sidecarGCPercent)
		attrs = append(attrs, "gcPercent", sidecarGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		limit, err := containerMemoryLimit(readFile)
		if err != nil {
			return attrs, err
		}
		if limit > 0 {
			soft := int64(float64(limit) * memoryLimitFraction)
			debug.SetMemoryLimit(soft)
			attrs = append(attrs, "memoryLimitBytes", soft)
		}
	}
	return attrs, nil
}

// containerMemoryLimit reads the cgroup's memory limit: 0 where there is none
// ("max", v1's huge sentinel, no cgroup file).
func containerMemoryLimit(readFile func(string) ([]byte, error)) (int64, error) {
	for _, f := range cgroupMemoryFiles {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		v, err := parseMemoryLimit(b)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		return v, nil
	}
	return 0, nil
}

// noLimit is cgroup v1's "unlimited": the largest page-aligned int64, or anything
// near it (kernels differ in the page size they round to).
const noLimit = 1 << 62

func parseMemoryLimit(b []byte) (int64, error) {
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup memory limit %q: %w", s, err)
	}
	if v < 0 {
		return 0, fmt.Errorf("cgroup memory limit %d is negative", v)
	}
	if v >= noLimit {
		return 0, nil
	}
	return v, nil
}

// osMemory is tuneMemory's view of the real process environment.
func osMemory() ([]any, error) { return tuneMemory(os.Getenv, os.ReadFile) }
