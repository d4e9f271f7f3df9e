package controller

import (
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
)

func TestLastWritesRecallsOnlyNewerOwnWrites(t *testing.T) {
	obj := func(uid, rv string, gen int64) *quotav1alpha1.FallbackChain {
		return &quotav1alpha1.FallbackChain{ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: "c", UID: types.UID(uid), ResourceVersion: rv, Generation: gen,
		}}
	}
	tests := []struct {
		name     string
		written  *quotav1alpha1.FallbackChain
		cached   *quotav1alpha1.FallbackChain
		wantMine bool
	}{
		{name: "nothing written", cached: obj("u", "10", 1)},
		{name: "cache behind our write", written: obj("u", "12", 2), cached: obj("u", "10", 1), wantMine: true},
		{name: "cache caught up", written: obj("u", "12", 2), cached: obj("u", "12", 2)},
		{name: "cache ahead (someone wrote since)", written: obj("u", "12", 2), cached: obj("u", "15", 3)},
		{name: "longer is newer", written: obj("u", "100", 2), cached: obj("u", "99", 1), wantMine: true},
		{name: "another object of the same name", written: obj("old", "50", 2), cached: obj("new", "10", 1)},
		{name: "resource versions that do not compare", written: obj("u", "b", 2), cached: obj("u", "a", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLastWrites()
			if tt.written != nil {
				l.remember(kindFallbackChain, tt.written)
			}
			got := freshest(l, kindFallbackChain, tt.cached)
			if mine := got != tt.cached; mine != tt.wantMine {
				t.Fatalf("recalled our write = %v, want %v", mine, tt.wantMine)
			}
			if tt.wantMine && got.ResourceVersion != tt.written.ResourceVersion {
				t.Errorf("recalled resourceVersion %s", got.ResourceVersion)
			}
		})
	}
	l := newLastWrites()
	l.remember(kindFallbackChain, obj("u", "12", 2))
	l.forget(kindFallbackChain, types.NamespacedName{Namespace: "ns", Name: "c"})
	if got := freshest(l, kindFallbackChain, obj("u", "10", 1)); got.ResourceVersion != "10" {
		t.Error("a forgotten write was recalled")
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("é", 600) // 1200 bytes
	got := truncate(long, 100)
	if len(got) > 100 || !utf8.ValidString(got) || !strings.HasSuffix(got, " [...]") {
		t.Errorf("truncate = %q (%d bytes)", got, len(got))
	}
	if truncate("short", 100) != "short" {
		t.Error("a short string was changed")
	}
}
