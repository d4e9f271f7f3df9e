package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProcSample is one reading of a process's CPU time and memory from /proc.
type ProcSample struct {
	At  time.Time
	CPU time.Duration // utime + stime since the process started
	RSS int64         // VmRSS, bytes
	HWM int64         // VmHWM (peak RSS), bytes
	// RSSAnon and RSSFile split VmRSS: anonymous memory (heap, stacks) and mapped
	// file pages (mostly the binary's own, reclaimable under memory pressure).
	RSSAnon, RSSFile int64
}

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	if s.CPU, err = parseStatCPU(string(stat)); err != nil {
		return s, fmt.Errorf("pid %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	s.RSS, s.HWM = parseStatusKB(string(status), "VmRSS:")*1024, parseStatusKB(string(status), "VmHWM:")*1024
	s.RSSAnon, s.RSSFile = parseStatusKB(string(status), "RssAnon:")*1024, parseStatusKB(string(status), "RssFile:")*1024
	return s, nil
}

// parseStatCPU returns utime+stime from a /proc/<pid>/stat line. The command name
// (field 2) may hold spaces and parentheses, so fields are counted from the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat line: no ')'")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("unreadable /proc stat line: %d fields after the name", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("unreadable utime/stime: %w", err)
	}
	return ticks(ut + st), nil
}

// parseStatusKB reads a "Key:   123 kB" line of /proc/<pid>/status; 0 if absent.
func parseStatusKB(status, key string) int64 {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		v, _ := strconv.ParseInt(f[0], 10, 64)
		return v
	}
	return 0
}

// MachineCPU is the CPU time all processes on the machine have used since boot
// (user, nice and system time from /proc/stat; interrupts and steal, which belong to
// no process, are left out). Its delta over a window minus the benchmark's own
// processes is what other work on the machine took meanwhile.
func MachineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read machine cpu time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "cpu" {
		return 0, fmt.Errorf("unreadable /proc/stat first line %q", line)
	}
	var busy int64
	for _, v := range f[1:4] { // user nice system
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unreadable /proc/stat value %q: %w", v, err)
		}
		busy += n
	}
	return ticks(busy), nil
}

// LoadAvg returns the 1-, 5- and 15-minute load averages.
func LoadAvg() ([3]float64, error) {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l, fmt.Errorf("read load average: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return l, fmt.Errorf("unreadable /proc/loadavg %q", b)
	}
	for i := range l {
		if l[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return l, fmt.Errorf("unreadable /proc/loadavg %q: %w", b, err)
		}
	}
	return l, nil
}

func ticks(n int64) time.Duration {
	return time.Duration(n) * time.Second / time.Duration(clockTicks())
}

// clockTicks is the kernel's USER_HZ (AT_CLKTCK in the auxiliary vector), the unit
// of /proc CPU times; 100 on every common Linux build, which is the fallback.
var clockTicks = sync.OnceValue(func() int64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	const atClkTck = 17
	for i := 0; i+16 <= len(b); i += 16 {
		k, v := binary.NativeEndian.Uint64(b[i:]), binary.NativeEndian.Uint64(b[i+8:])
		if k == atClkTck && v > 0 && v < 1e6 {
			return int64(v)
		}
	}
	return 100
})
