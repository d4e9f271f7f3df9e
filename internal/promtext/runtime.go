package promtext

import (
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"syscall"
)

// goSample maps a runtime/metrics sample to the Prometheus client's name for it,
// so that dashboards and benchmarks read the sidecar as they read any Go
// process. The memstats names are sums of runtime classes, as the client
// computes them.
type goSample struct {
	name, help string
	typ        Type
	classes    []string // runtime/metrics names whose values add up to it
}

var goSamples = []goSample{
	{"go_goroutines", "Number of goroutines that currently exist.", GaugeType, []string{"/sched/goroutines:goroutines"}},
	{"go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use.", GaugeType, []string{"/memory/classes/heap/objects:bytes"}},
	{"go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.", GaugeType, []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"}},
	{"go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used.", GaugeType, []string{"/memory/classes/heap/released:bytes", "/memory/classes/heap/free:bytes"}},
	{"go_memstats_heap_released_bytes", "Number of heap bytes released to the OS.", GaugeType, []string{"/memory/classes/heap/released:bytes"}},
	{"go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator.", GaugeType, []string{"/memory/classes/heap/stacks:bytes"}},
	{"go_memstats_sys_bytes", "Number of bytes obtained from system.", GaugeType, []string{"/memory/classes/total:bytes"}},
	{"go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place.", GaugeType, []string{"/gc/heap/goal:bytes"}},
}

// userHZ is the unit of /proc/<pid>/stat's CPU times: 100 on every Linux
// architecture Go supports, as the Prometheus client assumes too.
const userHZ = 100

// Runtime registers the Go runtime's and the process's standard metrics under
// the Prometheus client's names. The process metrics read /proc; where it is
// missing (not Linux) a scrape leaves them out.
func (r *Registry) Runtime() {
	descs := make([]*Desc, len(goSamples))
	var samples []metrics.Sample
	for i, g := range goSamples {
		descs[i] = r.Desc(g.typ, g.name, g.help)
		for _, c := range g.classes {
			samples = append(samples, metrics.Sample{Name: c})
		}
	}
	info := r.Desc(GaugeType, "go_info", "Information about the Go environment.", "version")
	r.OnScrape(func(s *Scrape) {
		read := make([]metrics.Sample, len(samples))
		copy(read, samples)
		metrics.Read(read)
		next := 0
		for i, g := range goSamples {
			var v float64
			for range g.classes {
				if read[next].Value.Kind() == metrics.KindUint64 {
					v += float64(read[next].Value.Uint64())
				}
				next++
			}
			s.Add(descs[i], v)
		}
		s.Add(info, 1, runtime.Version())
	})

	cpu := r.Desc(CounterType, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
	resident := r.Desc(GaugeType, "process_resident_memory_bytes", "Resident memory size in bytes.")
	virtual := r.Desc(GaugeType, "process_virtual_memory_bytes", "Virtual memory size in bytes.")
	start := r.Desc(GaugeType, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
	openFDs := r.Desc(GaugeType, "process_open_fds", "Number of open file descriptors.")
	maxFDs := r.Desc(GaugeType, "process_max_fds", "Maximum number of open file descriptors.")
	r.OnScrape(func(s *Scrape) {
		if st, ok := readProcStat(); ok {
			s.Add(cpu, float64(st.utime+st.stime)/userHZ)
			s.Add(resident, float64(st.rssPages*int64(os.Getpagesize())))
			s.Add(virtual, float64(st.vsize))
			if boot, ok := bootTime(); ok {
				s.Add(start, float64(boot)+float64(st.startTicks)/userHZ)
			}
		}
		if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
			s.Add(openFDs, float64(len(fds)))
		}
		var lim syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
			s.Add(maxFDs, float64(lim.Cur))
		}
	})
}

type procStat struct {
	utime, stime, startTicks, vsize, rssPages int64
}

func readProcStat() (procStat, bool) {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return procStat{}, false
	}
	return parseProcStat(raw)
}

// parseProcStat reads /proc/<pid>/stat. The command name, in parentheses, may
// hold spaces and parentheses itself, so fields are counted from its last ')'.
func parseProcStat(raw []byte) (procStat, bool) {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(raw[i+1:]) // f[0] is field 3, the state
	const (
		utime     = 14 - 3
		stime     = 15 - 3
		starttime = 22 - 3
		vsize     = 23 - 3
		rss       = 24 - 3
	)
	if len(f) <= rss {
		return procStat{}, false
	}
	var st procStat
	for _, x := range []struct {
		field int
		into  *int64
	}{{utime, &st.utime}, {stime, &st.stime}, {starttime, &st.startTicks}, {vsize, &st.vsize}, {rss, &st.rssPages}} {
		v, err := strconv.ParseInt(string(f[x.field]), 10, 64)
		if err != nil {
			return procStat{}, false
		}
		*x.into = v
	}
	return st, true
}

// bootTime is the system's boot time in seconds since the epoch, from /proc/stat.
func bootTime() (int64, bool) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for line := range bytes.Lines(raw) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
