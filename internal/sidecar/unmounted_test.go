package sidecar

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// TestUnmountedKeysLeaveOnlyTheirProviderOut: a pod created while a chain's second
// ProviderQuota was missing has no mount for its key. When the quota appears and the
// chain's config names it, the sidecar reloads, keeps serving the first entry and
// leaves the second out, instead of refusing the config (and, after a restart,
// never becoming ready). With no key mounted at all, the config is refused.
func TestUnmountedKeysLeaveOnlyTheirProviderOut(t *testing.T) {
	e := reloadEnv(t)
	good := e.state().Config.Hash

	cfg := e.currentConfig()
	late := cfg.Providers[0]
	late.Name = "late-quota"
	late.Keys = []limiterconfig.Key{{ID: "late-secret/api-key", File: filepath.Join(e.dir, "not-mounted", "api-key")}}
	cfg.Providers = append(cfg.Providers, late)
	cfg.Chain = &limiterconfig.Chain{
		Entries:      []limiterconfig.ChainEntry{{Provider: "openai-main", Model: "gpt-4o"}, {Provider: "late-quota", Model: "gpt-4o-mini"}},
		ModelAliases: []string{"chat"},
	}
	e.writeConfig(cfg)
	if err := e.srv.Reload(); err != nil {
		t.Fatalf("reload with an unmounted key: %v", err)
	}
	s := e.state()
	if s.Config.Hash == good || !s.Ready || s.Config.LastReloadError != "" {
		t.Errorf("state hash %q (was %q) ready %v error %q: want the new config in force", s.Config.Hash, good, s.Ready, s.Config.LastReloadError)
	}
	if resp, body := e.post("/v1/chat/completions", nil, strings.Replace(chatBody, `"gpt-4o"`, `"chat"`, 1)); resp.StatusCode != http.StatusOK || resp.Header.Get(ServedByHeader) != "openai-main/gpt-4o" {
		t.Errorf("chain alias: %s served by %q: %s", resp.Status, resp.Header.Get(ServedByHeader), body)
	}
	if resp, _ := e.post("/v1/chat/completions", nil, strings.Replace(chatBody, `"gpt-4o"`, `"gpt-4o-mini"`, 1)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the unmounted provider's entry: %s, want 404", resp.Status)
	}
	if live, _ := e.srv.Config(); live == nil || len(live.Providers) != 1 || len(live.Chain.Entries) != 1 {
		t.Errorf("config in force %+v: want the late provider and its entry left out", live)
	}
	if !strings.Contains(e.logs.String(), "late-quota key late-secret/api-key") {
		t.Error("the log does not name the unmounted key")
	}

	cfg.Providers = cfg.Providers[1:]
	cfg.Chain.Entries = cfg.Chain.Entries[1:]
	e.writeConfig(cfg)
	if err := e.srv.Reload(); err == nil || !strings.Contains(err.Error(), "not mounted") {
		t.Errorf("reload with no key mounted: err = %v, want a refusal naming the unmounted keys", err)
	}
}
