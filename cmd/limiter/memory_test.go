package main

import (
	"io/fs"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "134217728\n", want: 134217728},
		{in: "max\n", want: 0},
		{in: "9223372036854771712", want: 0}, // cgroup v1 unlimited
		{in: "", wantErr: true},
		{in: "12Mi", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "99999999999999999999999", wantErr: true},
	} {
		got, err := parseMemoryLimit([]byte(tc.in))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestTuneMemory(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(name string) ([]byte, error) {
			if v, ok := m[name]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name      string
		env       map[string]string
		files     map[string]string
		want      []any
		wantLimit int64
		wantErr   string
	}{
		{
			name:      "cgroup v2 limit",
			files:     map[string]string{"/sys/fs/cgroup/memory.max": "134217728\n"},
			want:      []any{"gcPercent", sidecarGCPercent, "memoryLimitBytes", int64(120795955)},
			wantLimit: 120795955,
		},
		{
			name:      "cgroup v1 limit",
			files:     map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "100000000"},
			want:      []any{"gcPercent", sidecarGCPercent, "memoryLimitBytes", int64(90000000)},
			wantLimit: 90000000,
		},
		{name: "no limit", files: map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, want: []any{"gcPercent", sidecarGCPercent}},
		{
			name:    "garbage limit is reported, not used",
			files:   map[string]string{"/sys/fs/cgroup/memory.max": "lots"},
			want:    []any{"gcPercent", sidecarGCPercent},
			wantErr: `/sys/fs/cgroup/memory.max: cgroup memory limit "lots"`,
		},
		{name: "no cgroup files", want: []any{"gcPercent", sidecarGCPercent}},
		{
			name:  "the environment wins",
			env:   map[string]string{"GOGC": "200", "GOMEMLIMIT": "64MiB"},
			files: map[string]string{"/sys/fs/cgroup/memory.max": "134217728"},
			want:  []any{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(1 << 40)
			got, err := tuneMemory(env(tc.env), files(tc.files))
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("tuneMemory error %v, want one containing %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("tuneMemory attributes (-want +got):\n%s", diff)
			}
			wantPercent := 100
			if tc.env["GOGC"] == "" {
				wantPercent = sidecarGCPercent
			}
			if p := debug.SetGCPercent(100); p != wantPercent {
				t.Errorf("GC percent %d, want %d", p, wantPercent)
			}
			wantLimit := tc.wantLimit
			if wantLimit == 0 {
				wantLimit = 1 << 40
			}
			if l := debug.SetMemoryLimit(-1); l != wantLimit {
				t.Errorf("memory limit %d, want %d", l, wantLimit)
			}
		})
	}
}

func FuzzParseMemoryLimit(f *testing.F) {
	for _, s := range []string{"134217728\n", "max\n", "9223372036854771712", "", "-1", "1e9"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseMemoryLimit(b)
		if v < 0 || (err != nil && v != 0) {
			t.Fatalf("parseMemoryLimit(%q) = %d, %v", b, v, err)
		}
	})
}
