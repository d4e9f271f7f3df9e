// Package harness runs the project's real binaries as processes for end-to-end tests
// and the local demo: it builds them, starts them, reads their logs and stops them.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aiquota/aiquota/internal/testkit"
)

// Build compiles the named main packages (e.g. "./cmd/limiter") of the module rooted
// at root into dir, as the Dockerfile builds the images' binaries, and returns their
// paths by base name. Built with cgo, as a plain `go build` here does, a binary
// maps the C library and its loader too: 1.4 MB more resident file pages than the
// static binary that ships, which the benchmarks would count against it.
func Build(ctx context.Context, root, dir string, pkgs ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, pkg := range pkgs {
		bin := filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
		out[filepath.Base(pkg)] = bin
	}
	return out, nil
}

// Process is a started binary whose combined output is kept for WaitFor.
type Process struct {
	Name string
	cmd  *exec.Cmd
	logs *testkit.SyncBuffer
	done chan struct{}
	err  error
}

// Start starts bin with args and extra env (on top of this process's environment);
// its output is kept and also copied to tee when tee is not nil.
func Start(name, bin string, args, env []string, tee io.Writer) (*Process, error) {
	p := &Process{Name: name, logs: &testkit.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	var w io.Writer = p.logs
	if tee != nil {
		w = io.MultiWriter(p.logs, &prefixWriter{prefix: []byte(name + " | "), w: tee})
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// StartTest starts bin as Start does, for the test t: t fails when it cannot start,
// and the process is stopped, within grace, when the test ends.
func StartTest(t testing.TB, name, bin string, args, env []string, grace time.Duration) *Process {
	t.Helper()
	p, err := Start(name, bin, args, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(grace) })
	return p
}

// MustWaitFor is WaitFor failing t when no line matches in time.
func (p *Process) MustWaitFor(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	m, err := p.WaitFor(re, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// WaitFor waits until a line of the output matches re and returns the submatches.
func (p *Process) WaitFor(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.logs.String()); m != nil {
			return m, nil
		}
		select {
		case <-p.done:
			if p.err == nil {
				return nil, fmt.Errorf("%s exited before logging %q; output:\n%s", p.Name, re, p.logs.String())
			}
			return nil, fmt.Errorf("%s exited (%w) before logging %q; output:\n%s", p.Name, p.err, re, p.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s did not log %q within %s; output:\n%s", p.Name, re, timeout, p.logs.String())
		}
	}
}

// Logs returns everything the process has written so far.
func (p *Process) Logs() string { return p.logs.String() }

// Pid is the operating-system process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to grace for a clean exit, then kills. It returns the
// exit error of a process that did not exit cleanly.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM and was killed", p.Name, grace)
	}
}

func (p *Process) exitErr() error {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return fmt.Errorf("%s exited with %w", p.Name, ee)
	}
	return p.err
}

// prefixWriter prefixes each line, so interleaved process logs stay readable.
type prefixWriter struct {
	mu      sync.Mutex
	prefix  []byte
	w       io.Writer
	midLine bool
}

func (pw *prefixWriter) Write(p []byte) (int, error) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	var out []byte
	for _, c := range p {
		if !pw.midLine {
			out = append(out, pw.prefix...)
			pw.midLine = true
		}
		out = append(out, c)
		if c == '\n' {
			pw.midLine = false
		}
	}
	if _, err := pw.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
