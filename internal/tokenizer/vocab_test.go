package tokenizer

import (
	"bytes"
	"testing"
	"unicode"

	"github.com/aiquota/aiquota/internal/tokenizer/internal/table"
)

// TestEmbeddedTablesAreGenerated fails when the committed tables are not what
// `go generate` makes of the reference today (a new reference release, a
// changed format or hash, a Go release with new Unicode tables).
func TestEmbeddedTablesAreGenerated(t *testing.T) {
	for name, file := range map[string]string{O200kBase: o200kFile, Cl100kBase: cl100kFile} {
		vocab := referenceVocab(t, name)
		tokens := make([]string, len(vocab))
		for tok, r := range vocab {
			tokens[r] = tok
		}
		slotBits := int(file[len("aqbpe\x00\x00\x01")+4])
		want, err := table.BuildVocab(tokens, slotBits)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal([]byte(file), want) {
			t.Errorf("data/%s.bpe is stale: run go generate ./internal/tokenizer", name)
		}
	}
	if !bytes.Equal([]byte(classesFile), table.BuildClasses()) {
		t.Error("data/classes.bin is stale (Go's Unicode tables changed?): run go generate ./internal/tokenizer")
	}
}

// TestClasses checks the embedded class table against the unicode package
// for every character.
func TestClasses(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if got, want := classes.Of(r), table.ClassOf(r); got != want {
			t.Fatalf("classes of %U: %06b, want %06b", r, got, want)
		}
	}
}

// TestVocabularyLookups checks every token of both embedded vocabularies is
// found at its rank, and reports the index's probe lengths.
func TestVocabularyLookups(t *testing.T) {
	for _, name := range []string{O200kBase, Cl100kBase} {
		e := mustGet(t, name)
		vocab := referenceVocab(t, name)
		if e.vocab.Len() != len(vocab) {
			t.Fatalf("%s: %d tokens, the reference has %d", name, e.vocab.Len(), len(vocab))
		}
		for tok, r := range vocab {
			if got, ok := e.vocab.Rank(tok); !ok || got != r {
				t.Fatalf("%s: Rank(%q) = %d, %v, want %d", name, tok, got, ok, r)
			}
		}
		// Not a token: every byte string one longer than a token, or with
		// a byte changed, that is not itself a token.
		misses := 0
		for tok := range vocab {
			for _, s := range []string{tok + "\x00", tok[:len(tok)-1] + string(tok[len(tok)-1]^0x55)} {
				if _, real := vocab[s]; real {
					continue
				}
				if r, ok := e.vocab.Rank(s); ok {
					t.Fatalf("%s: Rank(%q) = %d, but it is not a token", name, s, r)
				}
				misses++
			}
		}
		for b := range 256 {
			if _, ok := e.vocab.Rank(string([]byte{byte(b)})); !ok {
				t.Fatalf("%s: byte %#x is not a token; counting assumes every byte is", name, b)
			}
		}
		longest, mean := e.vocab.Probes()
		t.Logf("%s: %d tokens, longest %d bytes; index probes: longest %d, mean %.2f; %d near misses not found", name, e.vocab.Len(), e.vocab.MaxLen(), longest, mean, misses)
	}
}
