// Package plugin is kubectl-aiquota: the `kubectl aiquota` commands. It reads the
// API's objects with the user's kubeconfig, as kubectl does, and never talks to the
// manager or the sidecars: everything it shows is in the objects' status, written
// there by the hub from the sidecars' reports.
package plugin

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/aiquota/aiquota/internal/scheme"
)

// Streams are the command's standard streams.
type Streams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// globals are the connection flags every subcommand shares; they are kubectl's own
// (client-go's recommended override flags), so `-n`, `--context`, `--kubeconfig`
// and the rest mean what they mean to kubectl.
type globals struct {
	kubeconfig string
	overrides  clientcmd.ConfigOverrides
	// now is the clock ages are measured against; tests fix it.
	now func() time.Time
}

func (g *globals) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = g.kubeconfig
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &g.overrides)
}

// connect returns a client and the namespace the flags and kubeconfig select.
func (g *globals) connect() (client.Client, string, error) {
	cc := g.clientConfig()
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("read the namespace from the kubeconfig: %w", err)
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("load the kubeconfig: %w", err)
	}
	cfg.UserAgent = "kubectl-aiquota"
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, "", fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	return c, ns, nil
}

// NewCommand is `kubectl aiquota` with its subcommands.
func NewCommand(s Streams) *cobra.Command { return newCommand(s, time.Now) }

func newCommand(s Streams, now func() time.Time) *cobra.Command {
	g := &globals{now: now}
	root := &cobra.Command{
		Use: "aiquota",
		// Help and usage name the command as the user types it through kubectl.
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl aiquota"},
		Short:         "Live view of aiquota's quotas, breakers and fallback chains, and of injected pods",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.ErrOut)
	flags := root.PersistentFlags()
	flags.StringVar(&g.kubeconfig, clientcmd.RecommendedConfigPathFlag, "", "Path to the kubeconfig file to use for CLI requests.")
	clientcmd.BindOverrideFlags(&g.overrides, flags, clientcmd.RecommendedConfigOverrideFlags(""))
	root.AddCommand(newTopCommand(g, s), newExplainPodCommand(g, s))
	return root
}

// isTerminal reports whether w is a terminal, where top redraws in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
