package testenv

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// Lazy is a package's shared test fixture (an API server and what the package adds
// to it), started by the first test that asks for it, so that the tests that need
// none (golden files, fuzz workers, each a process of its own) never pay for it.
type Lazy[T any] struct {
	// Start makes the fixture; on error it cleans up what it made.
	Start func() (T, error)
	// Stop tears a started fixture down once the package's tests are done.
	Stop func(T) error

	once    sync.Once
	v       T
	err     error
	started bool
}

// Get returns the fixture, starting it on first use; a start error fails t.
func (l *Lazy[T]) Get(t testing.TB) T {
	t.Helper()
	l.once.Do(func() {
		l.v, l.err = l.Start()
		l.started = l.err == nil
	})
	if l.err != nil {
		t.Fatal(l.err)
	}
	return l.v
}

// Main is a TestMain's end: it runs the tests, stops the fixture if one of them
// started it, and exits with the tests' code.
func (l *Lazy[T]) Main(m *testing.M) {
	code := m.Run()
	if l.started {
		if err := l.Stop(l.v); err != nil {
			fmt.Fprintln(os.Stderr, "stop the test fixture:", err)
		}
	}
	os.Exit(code)
}
