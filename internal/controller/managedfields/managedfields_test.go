package managedfields

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func fieldsEntry(manager, op, raw string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationType(op), FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(raw)}
}

func TestDataKeys(t *testing.T) {
	tests := []struct {
		name           string
		fields         []metav1.ManagedFieldsEntry
		wantKeys       map[string]bool
		wantConclusive bool
	}{
		{name: "no managed fields", wantConclusive: false},
		{
			name:           "kubectl create secret",
			fields:         []metav1.ManagedFieldsEntry{fieldsEntry("kubectl-create", "Update", `{"f:data":{".":{},"f:api-key":{}},"f:type":{}}`)},
			wantKeys:       map[string]bool{"api-key": true},
			wantConclusive: true,
		},
		{
			name: "keys from several writers",
			fields: []metav1.ManagedFieldsEntry{
				fieldsEntry("argocd", "Apply", `{"f:data":{"f:a":{}},"f:metadata":{"f:labels":{"f:x":{}}}}`),
				fieldsEntry("kubectl-edit", "Update", `{"f:data":{"f:b.key_2":{}}}`),
			},
			wantKeys:       map[string]bool{"a": true, "b.key_2": true},
			wantConclusive: true,
		},
		{
			name:           "no data at all",
			fields:         []metav1.ManagedFieldsEntry{fieldsEntry("x", "Update", `{"f:type":{}}`)},
			wantKeys:       map[string]bool{},
			wantConclusive: true,
		},
		{
			name: "stringData applied server-side cannot be trusted",
			fields: []metav1.ManagedFieldsEntry{
				fieldsEntry("a", "Update", `{"f:data":{"f:a":{}}}`),
				fieldsEntry("gitops", "Apply", `{"f:stringData":{"f:b":{}}}`),
			},
		},
		{name: "unknown fields type", fields: []metav1.ManagedFieldsEntry{{Manager: "x", FieldsType: "FieldsV2"}}},
		{name: "garbage", fields: []metav1.ManagedFieldsEntry{fieldsEntry("x", "Update", `{"f:data":[1]}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, conclusive := DataKeys(tt.fields)
			if conclusive != tt.wantConclusive {
				t.Fatalf("conclusive = %v", conclusive)
			}
			if diff := cmp.Diff(tt.wantKeys, keys); conclusive && diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzDataKeys(f *testing.F) {
	f.Add(`{"f:data":{".":{},"f:api-key":{}},"f:type":{}}`, `{"f:stringData":{"f:b":{}}}`)
	f.Add(`{"f:data":null}`, `{}`)
	f.Add(`[`, `{"f:data":{"f:":{}}}`)
	f.Fuzz(func(t *testing.T, a, b string) {
		keys, conclusive := DataKeys([]metav1.ManagedFieldsEntry{fieldsEntry("a", "Update", a), fieldsEntry("b", "Apply", b)})
		if !conclusive && keys != nil {
			t.Fatalf("inconclusive but returned keys %v", keys)
		}
	})
}
