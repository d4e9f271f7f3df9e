package tokenizer

import (
	"context"
	"strings"
	"testing"
)

// FuzzO200k and FuzzCl100k check arbitrary text, valid UTF-8 or not, against
// the reference (see checkAgainstReference), and the bound on overlong pieces.
func FuzzO200k(f *testing.F)  { fuzzReference(f, O200kBase) }
func FuzzCl100k(f *testing.F) { fuzzReference(f, Cl100kBase) }

func fuzzReference(f *testing.F, name string) {
	for _, text := range cases {
		f.Add(text)
	}
	for _, text := range corpusValues(f) {
		f.Add(text)
	}
	e := mustGet(f, name)
	f.Fuzz(func(t *testing.T, text string) {
		checkAgainstReference(t, e, text)
		checkOverlong(t, e, text)
	})
}

// Linear work: counting is bounded by workPerByte units of work (characters
// examined by the scanner, vocabulary lookups, merge steps) per byte of text,
// and doubling the text does not much more than double the work. The bound:
// an invalid byte becomes three (U+FFFD) before merging; a piece of n <= 64
// merged bytes takes at most 3n lookups and n*n/2 steps of looking for the
// lowest rank, and a longer one about 6n lookups and heap operations (each
// O(log maxPiece), counted as one); the scanner examines a character at most
// four times. So at most 3*(32+3) + 4 per byte of text, under 128.
// (FuzzLinearWork found 48 exceeded by invalid bytes between punctuation.)
const (
	workPerByte = 128
	linearBase  = 6 << 10
)

// FuzzLinearWork repeats a fuzzed text to 6 KiB and to 24 KiB (under maxPiece), the shape of
// every known attack on a backtracking pre-tokenizer (runs of one class,
// alternations of two), and fails if the work is above the budget or grows
// faster than the text.
func FuzzLinearWork(f *testing.F) {
	for _, seed := range []string{" \n\t", " \n", "\n ", "a", "aB", "ªA", "1", "!", " !", "'s", "人", "🎉", "👨‍👩‍👧", "\xff", "\u0301", "a\u0301", " a", "\t\t\tx", "\r\n \r\n", "ǅ", "A'", "\u00a0\n"} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	o200k, cl100k := mustGet(f, O200kBase), mustGet(f, Cl100kBase)
	f.Fuzz(func(t *testing.T, unit string, useCl100k bool) {
		if unit == "" || len(unit) > 256 {
			return
		}
		e := o200k
		if useCl100k {
			e = cl100k
		}
		small := repeatTo(unit, linearBase)
		large := repeatTo(unit, 4*linearBase)
		ws, wl := work(e, small), work(e, large)
		if wl > workPerByte*len(large) {
			t.Fatalf("%s: %d bytes of %q repeated took %d units of work, above %d per byte", e.name, len(large), unit, wl, workPerByte)
		}
		// Four times the text: at most 4.5 times the work, plus slack for
		// work that does not grow with the text.
		if 2*wl > 9*ws+2048 {
			t.Fatalf("%s: %q repeated to %d bytes took %d units of work, to %d bytes %d: more than linear", e.name, unit, len(small), ws, len(large), wl)
		}
	})
}

func repeatTo(unit string, size int) string {
	return strings.Repeat(unit, (size+len(unit)-1)/len(unit))
}

// work counts text with e and returns the work it took.
func work(e *Encoding, text string) int {
	sc := new(scratch)
	if _, err := e.count(context.Background(), text, sc); err != nil {
		panic(err)
	}
	return sc.work
}
