// Package managedfields reads which data keys a Secret holds from its managed fields,
// which name every field some writer set, without values. The operator uses it to
// check credential keys by name without ever reading Secret data.
//
// The answer is conclusive only when the managed fields can be trusted about data:
// a Secret with none (they were stripped, or predate field tracking), or one where a
// writer applied stringData server-side (the API server folds stringData into data,
// so applied stringData entries can outlive or disagree with the data keys), is
// inconclusive.
package managedfields

import (
	"encoding/json"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DataKeys returns the data keys that a Secret's managed fields record. It is
// conclusive only when every entry is readable and none owns stringData.
func DataKeys(fields []metav1.ManagedFieldsEntry) (keys map[string]bool, conclusive bool) {
	if len(fields) == 0 {
		return nil, false
	}
	keys = map[string]bool{}
	for _, f := range fields {
		if f.FieldsType != "FieldsV1" || f.FieldsV1 == nil {
			return nil, false
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(f.FieldsV1.GetRawBytes(), &top); err != nil {
			return nil, false
		}
		if _, ok := top["f:stringData"]; ok {
			return nil, false
		}
		raw, ok := top["f:data"]
		if !ok {
			continue
		}
		var data map[string]json.RawMessage
		if err := json.Unmarshal(raw, &data); err != nil {
			return nil, false
		}
		for member := range data {
			if k, ok := strings.CutPrefix(member, "f:"); ok {
				keys[k] = true
			}
		}
	}
	return keys, true
}
