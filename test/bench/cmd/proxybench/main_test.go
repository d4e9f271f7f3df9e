package main

import "testing"

func TestShellJoin(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-rate", "1000"}, "-rate 1000"},
		{[]string{"-concurrency", "", "-max-load", "1.5"}, "-concurrency '' -max-load 1.5"},
		{[]string{"-limiter-env", "GOGC=100 GOMEMLIMIT=20MiB"}, "-limiter-env 'GOGC=100 GOMEMLIMIT=20MiB'"},
		{[]string{"-out", "it's.md"}, `-out 'it'\''s.md'`},
	} {
		if got := shellJoin(tc.args); got != tc.want {
			t.Errorf("shellJoin(%q) = %s, want %s", tc.args, got, tc.want)
		}
	}
}
