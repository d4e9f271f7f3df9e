// Command plainproxy is the benchmark's floor: the least a Go reverse proxy does —
// net/http/httputil.ReverseProxy in front of one upstream, with the same upstream
// transport settings as the limiter sidecar — so that what the limiter adds on top
// of any Go proxy can be told apart from what proxying itself costs.
//
//	plainproxy --listen 127.0.0.1:0 --upstream http://127.0.0.1:9090
//
// It reads each request body into memory before forwarding it, as the limiter does.
// Forwarding the body as a stream hits a limit of Go's HTTP/1 server (golang/go
// issue 40747): once the response starts, the server closes the unread request body,
// and the transport's final read of it then tears down the upstream connection, cutting
// about one streamed answer in a hundred under load. A floor that loses answers is no
// floor.
//
// It logs one line with its address once listening and stops on SIGTERM or SIGINT.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "plainproxy:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("plainproxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address (port 0 picks a free one)")
	upstream := fs.String("upstream", "", "upstream base URL, e.g. http://127.0.0.1:9090")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target, err := url.Parse(*upstream)
	if err != nil || target.Scheme == "" || target.Host == "" {
		return fmt.Errorf("--upstream %q is not an absolute URL", *upstream)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) },
		// The limiter's upstream transport settings (sidecar.NewTransport), copied
		// rather than imported so the floor carries none of the limiter's code.
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   512,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: bufferBody(proxy), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("plainproxy listening", "addr", ln.Addr().String(), "upstream", target.String())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// maxBodyBytes matches the limiter's default request body limit.
const maxBodyBytes = 32 << 20

// bufferBody reads the request body whole before handing the request on.
func bufferBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			buf := bytes.NewBuffer(make([]byte, 0, max(0, min(r.ContentLength, maxBodyBytes))))
			if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBodyBytes)); err != nil {
				http.Error(w, "plainproxy: read request body: "+err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
			r.ContentLength = int64(buf.Len())
		}
		next.ServeHTTP(w, r)
	})
}
