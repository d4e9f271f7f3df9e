package simulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAdminRoutes(t *testing.T) {
	h := newHarness(t, allPersonas())
	h.do(t, "POST", chatPath, authHeaders(ProviderOpenAI, "sk-o"), chatBody("gpt-4o", 3))

	r := h.do(t, "GET", "/sim/stats", nil, "")
	var st Stats
	if err := json.Unmarshal(r.body, &st); err != nil || r.status != 200 {
		t.Fatalf("GET /sim/stats: %v (%v)", r, err)
	}
	if diff := cmp.Diff(h.sim.Stats(), st); diff != "" {
		t.Errorf("/sim/stats differs from Stats() (-Stats +JSON):\n%s", diff)
	}
	if strings.Contains(string(r.body), "sk-o") {
		t.Errorf("stats expose an API key: %s", r.body)
	}
	p, _ := st.Accounts[0].Pool("gpt-4o")
	if p.Admitted != 1 || p.InputTokens != 10 || p.OutputTokens != 3 || st.Accounts[0].KeyID == "" {
		t.Errorf("stats %+v, want 1 admitted, 10 in, 3 out, a key id", st.Accounts[0])
	}

	// Faults by account index.
	if r := h.do(t, "PUT", "/sim/faults?account=0", nil, `{"errorRates":{"503":1}}`); r.status != 204 {
		t.Fatalf("PUT /sim/faults: %v", r)
	}
	if r := h.do(t, "POST", chatPath, authHeaders(ProviderOpenAI, "sk-o"), chatBody("gpt-4o", 3)); r.status != 503 {
		t.Errorf("after PUT faults 503=1: %v", r)
	}
	for _, bad := range []struct{ query, body, want string }{
		{"account=9", `{}`, "account must be an index 0..3"},
		{"account=x", `{}`, "account must be an index 0..3"},
		{"account=0", `{"errorRates":{"418":1}}`, `faults.errorRates: has key "418"`},
		{"account=0", `{"resetRate":2}`, "faults.resetRate: is 2, want a probability 0..1"},
		{"account=0", `{"resetrate":0.5,"bogus":1}`, `unknown field "bogus"`},
		{"account=0", `{"keepAlive":5}`, "duration must be a string"},
	} {
		r := h.do(t, "PUT", "/sim/faults?"+bad.query, nil, bad.body)
		var e struct{ Error string }
		if err := json.Unmarshal(r.body, &e); err != nil || r.status != 400 || !strings.Contains(e.Error, bad.want) {
			t.Errorf("PUT /sim/faults?%s %s: %v, want 400 mentioning %q", bad.query, bad.body, r, bad.want)
		}
	}

	if r := h.do(t, "POST", "/sim/reset", nil, ""); r.status != 204 {
		t.Fatalf("POST /sim/reset: %v", r)
	}
	if p, _ := h.sim.Stats().Accounts[0].Pool("gpt-4o"); p.Requests != 0 || p.Admitted != 0 {
		t.Errorf("after reset: %+v", p)
	}
	if r := h.do(t, "GET", "/sim/healthz", nil, ""); r.status != 200 || string(r.body) != "ok\n" {
		t.Errorf("healthz: %v", r)
	}
	if r := h.do(t, "GET", "/sim/nothing", nil, ""); r.status != 404 {
		t.Errorf("unknown admin route: %v", r)
	}
}

func TestSetFaultsByKey(t *testing.T) {
	h := newHarness(t, allPersonas())
	if err := h.sim.SetFaults("sk-unknown", Faults{}); err == nil || strings.Contains(err.Error(), "sk-unknown") {
		t.Errorf("SetFaults with an unknown key: %v; want an error that does not echo the key", err)
	}
	if err := h.sim.SetFaults("sk-o", Faults{MalformedRate: -1}); err == nil {
		t.Error("SetFaults accepted a negative rate")
	}
	// The caller's map is copied: changing it later does not change the faults.
	rates := map[string]float64{"500": 1}
	if err := h.sim.SetFaults("sk-o", Faults{ErrorRates: rates}); err != nil {
		t.Fatal(err)
	}
	rates["500"] = 0
	if r := h.do(t, "POST", chatPath, authHeaders(ProviderOpenAI, "sk-o"), chatBody("m", 1)); r.status != http.StatusInternalServerError {
		t.Errorf("%v, want the 500 fault set before the caller's map changed", r)
	}
}
