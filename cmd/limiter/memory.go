package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
)

// sidecarGCPercent is the collector's target heap growth when GOGC is not set. A
// sidecar's memory is paid once per pod, so it collects before Go's 100% growth.
// Not at 50%: with the token memo bounded the live heap is about 3 MB, and at 50%
// the collections that heap needs raised the CPU ratio to a plain proxy from
// 1.08x to 1.34x (non-streaming); 75% held it at 1.18-1.21x for 0.6 MB more than
// 50% and 1.2 MB less than 100% (docs/benchmarks.md, "Footprint under load").
const sidecarGCPercent = 75

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
