package table

import (
	"fmt"
	"testing"
)

func TestVocabRoundTrip(t *testing.T) {
	var tokens []string
	for b := range 256 {
		tokens = append(tokens, string([]byte{byte(b)}))
	}
	for i := range 3000 {
		tokens = append(tokens, fmt.Sprintf("tok%d", i), fmt.Sprintf(" word%d", i*7))
	}
	file, err := BuildVocab(tokens, 13)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVocab(string(file))
	if err != nil {
		t.Fatal(err)
	}
	for r, tok := range tokens {
		if got, ok := v.Rank(tok); !ok || got != r {
			t.Fatalf("Rank(%q) = %d, %v, want %d", tok, got, ok, r)
		}
	}
	for _, s := range []string{"", "tok", "tok3000", "word1", "\x00\x00"} {
		if r, ok := v.Rank(s); ok {
			t.Errorf("Rank(%q) = %d, want none", s, r)
		}
	}
	seen := 0
	for tok, r := range v.Tokens {
		if tokens[r] != tok {
			t.Fatalf("Tokens gave %q at rank %d, want %q", tok, r, tokens[r])
		}
		seen++
	}
	if seen != len(tokens) {
		t.Errorf("Tokens gave %d tokens, want %d", seen, len(tokens))
	}
	longest, mean := v.Probes()
	t.Logf("longest probe %d, mean %.2f", longest, mean)
}

func TestParseVocabRejectsMalformedFiles(t *testing.T) {
	var tokens []string
	for b := range 300 {
		tokens = append(tokens, fmt.Sprintf("%c", b))
	}
	good, err := BuildVocab(tokens, 9)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseVocab(string(good)); err != nil {
		t.Fatal(err)
	}
	patched := func(at int, v uint32) string {
		b := append([]byte(nil), good...)
		copy(b[at:], appendU32(nil, v))
		return string(b)
	}
	for name, file := range map[string]string{
		"empty":           "",
		"bad magic":       "x" + string(good[1:]),
		"truncated":       string(good[:len(good)-1]),
		"trailing bytes":  string(good) + "x",
		"too few tokens":  patched(8, 10),
		"index too small": patched(12, 8),
		"data too long":   patched(20, 1<<22),
	} {
		if _, err := ParseVocab(file); err == nil {
			t.Errorf("%s: ParseVocab accepted it", name)
		}
	}
	if _, err := BuildVocab(append(tokens, "a"), 9); err == nil {
		t.Error("BuildVocab accepted a duplicate token")
	}
	if _, err := BuildVocab(tokens, 8); err == nil {
		t.Error("BuildVocab accepted more tokens than slots")
	}
}

func TestParseClassesRejectsMalformedFiles(t *testing.T) {
	good := BuildClasses()
	if _, err := ParseClasses(string(good)); err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string]string{
		"empty":     "",
		"bad magic": "x" + string(good[1:]),
		"truncated": string(good[:len(good)-1]),
	} {
		if _, err := ParseClasses(file); err == nil {
			t.Errorf("%s: ParseClasses accepted it", name)
		}
	}
}
