package simulator

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestDefaultConfigRoundTrips(t *testing.T) {
	def := DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("DefaultConfig is invalid: %v", err)
	}
	b, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig(b)
	if err != nil {
		t.Fatalf("ParseConfig(DefaultConfig as JSON): %v\n%s", err, b)
	}
	if diff := cmp.Diff(def, back, cmpopts.IgnoreFields(Config{}, "Now")); diff != "" {
		t.Errorf("round trip (-default +parsed):\n%s", diff)
	}
	var keys []string
	for _, a := range def.Accounts {
		keys = append(keys, a.Key+"="+a.Provider)
	}
	want := []string{"sk-sim-openai=openai", "sk-sim-anthropic=anthropic", "sk-sim-gemini=gemini", "sk-sim-deepseek=deepseek"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("default accounts (-want +got):\n%s", diff)
	}
}

func TestParseConfigReportsEveryProblem(t *testing.T) {
	doc := `{
	  "seed": 1,
	  "accounts": [
	    {"key": "k", "provider": "openai", "limits": {"requestsPerMinute": -1},
	     "models": [{"names": ["a", ""]}, {"names": ["a"], "contextWindow": -5}],
	     "latency": {"timeToFirstToken": "-1s", "outputJitter": 2},
	     "faults": {"errorRates": {"500": 0.7, "503": 0.6, "teapot": 0}, "outages": [{"start": "10s", "end": "5s"}], "keepAlive": "-1s"}},
	    {"key": "k", "provider": "bard"},
	    {"key": "with space", "provider": "gemini"}
	  ]
	}`
	_, err := ParseConfig([]byte(doc))
	if err == nil {
		t.Fatal("ParseConfig accepted an invalid config")
	}
	for _, want := range []string{
		"accounts[0].limits.requestsPerMinute: is -1",
		"accounts[0].models[0].names[1]: must not be empty",
		`accounts[0].models[1].names[0]: model "a" is in more than one pool`,
		"accounts[0].models[1].contextWindow: must not be negative",
		"accounts[0].latency.timeToFirstToken: must not be negative",
		"accounts[0].latency.outputJitter: is 2, want 0..1",
		`accounts[0].faults.errorRates: has key "teapot"`,
		"accounts[0].faults.errorRates: probabilities add up to 1.3",
		"accounts[0].faults.outages[0].end: (5s) must be after start (10s)",
		"accounts[0].faults.keepAlive: must not be negative",
		"accounts[1].key: is the same key as accounts[0]",
		`accounts[1].provider: is "bard"`,
		"accounts[2].key: must not contain whitespace",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestParseConfigRefusesUnknownFieldsAndNumbersAsDurations(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"accounts":[{"key":"k","provider":"openai","limits":{"requestPerMinute":5}}]}`, `unknown field "requestPerMinute"`},
		{`{"accounts":[{"key":"k","provider":"openai","latency":{"timeToFirstToken":100}}]}`, "duration must be a string"},
		{`{"accounts":[]} {}`, "trailing data"},
		{`{"accounts":[]}`, "accounts: must list at least one account"},
	} {
		if _, err := ParseConfig([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%s) = %v, want an error mentioning %q", tc.doc, err, tc.want)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	var l Latency
	if err := json.Unmarshal([]byte(`{"timeToFirstToken":"1m30s"}`), &l); err != nil || l.TimeToFirstToken.D() != 90*time.Second {
		t.Fatalf("decode: %v %v", l.TimeToFirstToken.D(), err)
	}
	b, _ := json.Marshal(l)
	if !strings.Contains(string(b), `"timeToFirstToken":"1m30s"`) {
		t.Errorf("encode: %s", b)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New(Config{}) succeeded")
	}
}
