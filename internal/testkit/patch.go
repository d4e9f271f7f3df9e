package testkit

import (
	"encoding/json"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"gomodules.xyz/jsonpatch/v2"
)

// ApplyPatches applies an admission response's JSON patch to the object it was
// made for, as the API server does.
func ApplyPatches(t testing.TB, original []byte, patches []jsonpatch.JsonPatchOperation) []byte {
	t.Helper()
	if len(patches) == 0 {
		return original
	}
	ops, err := json.Marshal(patches)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatchapply.DecodePatch(ops)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	out, err := p.Apply(original)
	if err != nil {
		t.Fatalf("apply patch %s to %s: %v", ops, original, err)
	}
	return out
}
