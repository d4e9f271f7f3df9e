// Command providersim serves the provider simulator (internal/simulator) over HTTP:
// the OpenAI, Anthropic, Gemini and DeepSeek routes for the accounts in its config,
// plus the admin routes under /sim/.
//
//	providersim --addr 127.0.0.1:9090 --config sim.json [--seed N]
//	providersim --print-config > sim.json   # the default config, to edit
//
// Without --config it serves simulator.DefaultConfig: one account per persona, keys
// sk-sim-openai, sk-sim-anthropic, sk-sim-gemini and sk-sim-deepseek, limits from the
// published tier tables. It logs one line with the address once listening (port 0
// picks a free port) and shuts down gracefully on SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aiquota/aiquota/internal/simulator"
)

// shutdownGrace bounds how long in-flight responses (long streams included) may take
// to finish after SIGTERM before connections are closed.
const shutdownGrace = 10 * time.Second

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "providersim:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("providersim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "listen address (host:port; port 0 picks a free one)")
	configPath := fs.String("config", "", "simulator config JSON file (default: the built-in config)")
	seed := fs.Int64("seed", 0, "overrides the config's seed when set")
	printConfig := fs.Bool("print-config", false, "print the effective config as JSON and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	cfg := simulator.DefaultConfig()
	if *configPath != "" {
		data, err := os.ReadFile(*configPath)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		if cfg, err = simulator.ParseConfig(data); err != nil {
			return fmt.Errorf("config %s: %w", *configPath, err)
		}
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "seed" {
			cfg.Seed = *seed
		}
	})
	if *printConfig {
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return fmt.Errorf("encode config: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}

	sim, err := simulator.New(cfg)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           sim,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	providers := make([]string, 0, len(cfg.Accounts))
	for _, a := range cfg.Accounts {
		providers = append(providers, a.Provider)
	}
	log.Info("providersim listening", "addr", ln.Addr().String(), "accounts", len(cfg.Accounts), "providers", providers, "seed", cfg.Seed)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("providersim shutting down", "graceSeconds", shutdownGrace.Seconds())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown: %w", err)
		}
		log.Warn("providersim closed connections still open after the grace period")
	}
	log.Info("providersim stopped")
	return nil
}
