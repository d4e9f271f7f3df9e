package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// FreePorts returns n distinct loopback ports that were free a moment ago, for
// processes that take their addresses as flags: the listeners stay open until all
// n are picked, so the kernel cannot hand out one port twice (two processes
// binding the same port failed a CI run).
func FreePorts(n int) []int {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err) // no loopback port at all: nothing here could work
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// HTTPOK returns nil when a GET of url answers 200 (a readiness probe), else an
// error with the status and the start of the body.
func HTTPOK(url string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, body)
	}
	return nil
}

// StopPolling is what Poll's condition returns to end Poll at once with Err (a
// process that exited will not become ready).
type StopPolling struct{ Err error }

func (s StopPolling) Error() string { return s.Err.Error() }

// Poll calls cond every 200 ms until it returns nil, returns a StopPolling, the
// timeout passes (then cond's last error) or ctx ends.
func Poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop StopPolling
		if errors.As(err, &stop) {
			return stop.Err
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
