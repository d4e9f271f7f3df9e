package harness

import (
	"fmt"
	"strconv"
)

// ControlManagerArgs are the manager binary's flags for a test that runs it on
// this machine against the API server of kubeconfig for its control channel:
// that on controlPort with the serving certificate in certDir, metrics in plain
// HTTP on metricsPort, the probes and the webhook on free ports, the webhook's
// certificate generated into webhookCertDir and no webhook configuration to
// inject it into.
func ControlManagerArgs(kubeconfig, certDir, webhookCertDir string, controlPort, metricsPort int) []string {
	return []string{
		"--kubeconfig", kubeconfig,
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metricsPort), "--metrics-secure=false",
		"--health-probe-bind-address", "127.0.0.1:0",
		"--webhook-port", strconv.Itoa(FreePorts(1)[0]),
		"--cert-dir", webhookCertDir, "--cert-webhook-config", "",
		"--control-bind-address", fmt.Sprintf("127.0.0.1:%d", controlPort),
		"--control-cert-dir", certDir,
	}
}
