// Command kubectl-aiquota is the aiquota kubectl plugin: on PATH, kubectl runs it as
// `kubectl aiquota`. `top` shows the quotas, breakers and chains as the sidecars
// report them; `explain-pod` shows what the webhook injected into a pod.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/aiquota/aiquota/internal/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := plugin.NewCommand(plugin.Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
