package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/aiquota/aiquota/test/harness"
)

// StartupSample is one cold start of a proxy: the time from exec to its first
// successful answer (the limiter's /readyz, the plain proxy's first forwarded
// request), and its memory after settling idle.
type StartupSample struct {
	Ready time.Duration
	Idle  ProcSample
}

// startupPoll is how often a starting process is asked whether it is ready:
// the resolution of the ready time.
const startupPoll = time.Millisecond

// startupSettle is how long a started process idles before its memory is read.
const startupSettle = time.Second

// measureStartups starts the limiter (with the stack's config) and the plain
// proxy n times each, one process at a time, and samples each start.
func measureStartups(ctx context.Context, st *Stack, n int) (map[string][]StartupSample, error) {
	out := map[string][]StartupSample{}
	for range n {
		for _, proc := range []string{ProcLimiter, ProcPlain} {
			s, err := measureStartup(ctx, st, proc)
			if err != nil {
				return out, fmt.Errorf("start-up of %s: %w", proc, err)
			}
			out[proc] = append(out[proc], s)
		}
	}
	return out, nil
}

func measureStartup(ctx context.Context, st *Stack, proc string) (StartupSample, error) {
	var s StartupSample
	ports, err := freePorts(2)
	if err != nil {
		return s, err
	}
	addr, admin := "127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1])
	var bin, readyURL string
	var args, env []string
	anyAnswer := false // the plain proxy is ready when it forwards anything
	switch proc {
	case ProcLimiter:
		bin, env = st.bins["limiter"], st.limiterEnv
		args = []string{"--config", st.limiterConfig, "--listen", addr, "--admin-listen", admin, "--log-level", "info"}
		readyURL = "http://" + admin + "/readyz"
	case ProcPlain:
		bin = st.bins["plainproxy"]
		args = []string{"--listen", addr, "--upstream", st.SimURL}
		readyURL, anyAnswer = "http://"+addr+"/v1/models", true
	default:
		return s, fmt.Errorf("no start-up measurement for %q", proc)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	start := time.Now()
	p, err := harness.Start(proc+"-startup", bin, args, env, nil)
	if err != nil {
		return s, err
	}
	defer func() { _ = p.Stop(15 * time.Second) }()
	for {
		if ready(ctx, client, readyURL, anyAnswer) {
			s.Ready = time.Since(start)
			break
		}
		if time.Since(start) > startTimeout {
			return s, fmt.Errorf("not ready after %s; output:\n%s", startTimeout, p.Logs())
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(startupPoll):
		}
	}
	select {
	case <-ctx.Done():
		return s, ctx.Err()
	case <-time.After(startupSettle):
	}
	s.Idle, err = ReadProc(p.Pid())
	return s, err
}

// ready reports whether url answers 200, or at all.
func ready(ctx context.Context, c *http.Client, url string, anyAnswer bool) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return anyAnswer || resp.StatusCode == http.StatusOK
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		addr, ok := ln.Addr().(*net.TCPAddr)
		if !ok {
			return nil, errors.New("listener has no TCP address")
		}
		ports = append(ports, addr.Port)
	}
	return ports, nil
}
