package testkit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Trickle posts to path on the server at baseURL (http://host:port) a JSON body
// announced as n bytes that arrives one byte every interval, as a slow or hostile
// client sends it, and returns the answer that comes within wait. The trickle
// stops when Trickle returns.
func Trickle(t testing.TB, baseURL, path string, n int, interval, wait time.Duration) Answer {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(baseURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, n); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var trickle sync.WaitGroup
	trickle.Go(func() {
		for range n {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	})
	defer func() { close(stop); trickle.Wait() }()
	// Without a deadline nothing answers before the trickle ends; the caller does
	// not wait that long.
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a trickling body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return Answer{Status: resp.StatusCode, Close: resp.Close, Body: body}
}

// Answer is an HTTP response as a client saw it.
type Answer struct {
	Status int
	// Close is set when the server closes the connection after the response.
	Close bool
	Body  []byte
}
