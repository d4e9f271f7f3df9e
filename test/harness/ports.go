package harness

import (
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
