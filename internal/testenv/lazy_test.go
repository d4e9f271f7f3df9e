package testenv

import (
	"errors"
	"fmt"
	"testing"
)

// fatalRecorder is a testing.TB whose Fatal records instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatal(args ...any) { r.msg = fmt.Sprint(args...) }

func TestLazyStartsOnceAndReportsItsError(t *testing.T) {
	starts := 0
	ok := Lazy[int]{Start: func() (int, error) { starts++; return 7, nil }}
	if a, b := ok.Get(t), ok.Get(t); a != 7 || b != 7 || starts != 1 || !ok.started {
		t.Errorf("Get, Get = %d, %d after %d starts (started %v); want 7, 7 after 1", a, b, starts, ok.started)
	}

	failing := Lazy[int]{Start: func() (int, error) { return 0, errors.New("no assets") }}
	rec := &fatalRecorder{TB: t}
	failing.Get(rec)
	if rec.msg != "no assets" || failing.started {
		t.Errorf("a failed start: Fatal(%q), started %v; want Fatal(\"no assets\"), not started", rec.msg, failing.started)
	}
}
