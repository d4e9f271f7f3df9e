package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// StopPolling wraps err for a condition to return when it can no longer hold (a
// process exited, a request was refused for good): Poll returns err at once.
func StopPolling(err error) error { return stopPolling{err} }

type stopPolling struct{ error }

// Poll calls cond every 200ms until it returns nil or StopPolling's error, or the context
// ends; after timeout it returns cond's last error as "waiting for <what>".
func Poll(ctx context.Context, timeout time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop stopPolling
		if errors.As(err, &stop) {
			return stop.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
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

// FreePorts returns n distinct loopback ports that were free a moment ago: the
// listeners stay open until all n are picked, so the kernel cannot hand out one
// port twice (two processes binding the same port failed a CI run).
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

// CreatePod creates a pod the injection webhook admits, retrying only a failed call
// to the webhook: the API server may hold envtest's caBundle for a moment after the
// manager installs its own.
func CreatePod(ctx context.Context, c client.Client, pod *corev1.Pod) error {
	return Poll(ctx, time.Minute, "the pod to be admitted", func() error {
		err := c.Create(ctx, pod)
		if err != nil && !strings.Contains(err.Error(), "failed calling webhook") {
			return StopPolling(err)
		}
		return err
	})
}
