package tokenizer

import (
	"unicode/utf8"

	"github.com/aiquota/aiquota/internal/tokenizer/internal/table"
)

// The pre-tokenizers: hand-written scanners equivalent to the reference's
// split patterns, matched as its regular expression engine matches them (the
// first alternative that matches at a position wins; within one, greedy runs
// give back a character at a time until the rest matches). Each returns where
// the piece starting at i ends; every character starts some piece.
//
// o200k_base:
//
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// cl100k_base:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// Where a backtracking engine would retry a run from every position, these
// scanners remember what the first pass saw (the last character a run could
// give back to, the last newline in a run of whitespace), so each alternative
// costs at most one pass over the run it matches, and a run that an
// alternative scanned and did not take is taken by the next one: every
// character is examined a bounded number of times (FuzzLinearWork).
//
// Invalid UTF-8 bytes are read as U+FFFD, one per byte, as the reference's
// engine reads them (it converts the text to runes first).
//
// Where the reference's compiled patterns depart from the patterns as written,
// these scanners follow the patterns, as OpenAI's tiktoken does:
//
//   - its generated code leaves DEL (U+007F) out of [^\r\n\p{L}\p{N}] and
//     [^\s\p{L}\p{N}] (a bug in the ASCII sets its regular expression compiler
//     writes), so it drops DEL from the text and counts nothing for it; here DEL
//     is a symbol like any other;
//   - in \s*[\r\n]+ its \s* gives back to the first newline of the run instead
//     of the last, so "\n \n" is two pieces there and one here (and each of its
//     pieces rescans the rest of the run: its quadratic time on whitespace).

// scanner reads the text being split, counting characters examined as work.
type scanner struct {
	s    string
	work int
}

// at returns the classes and byte width of the character at i.
func (sc *scanner) at(i int) (uint8, int) {
	sc.work++
	if c := sc.s[i]; c < utf8.RuneSelf {
		return classes.Latin1(c), 1
	}
	r, w := utf8.DecodeRuneInString(sc.s[i:]) // an invalid byte is U+FFFD, width 1
	return classes.Of(r), w
}

// Derived classes.
const (
	notPrefix = table.Letter | table.Number | table.Newline // [^\r\n\p{L}\p{N}] is what has none of these
	notSymbol = table.Letter | table.Number | table.Space   // [^\s\p{L}\p{N}] likewise
)

// runEnd returns the end of the run of characters with any of the classes in
// want that starts at i (i itself when there is none).
func (sc *scanner) runEnd(i int, want uint8) int {
	for i < len(sc.s) {
		c, w := sc.at(i)
		if c&want == 0 {
			break
		}
		i += w
	}
	return i
}

// nextO200k returns the end of the o200k_base piece starting at i.
func (sc *scanner) nextO200k(i int) int {
	c, w := sc.at(i)
	if c&(table.Letter|table.Upper|table.Lower) != 0 || c&notPrefix == 0 {
		// Alternative 1, with then without the optional prefix.
		if c&notPrefix == 0 {
			if e := sc.upperThenLower(i + w); e >= 0 {
				return sc.contraction(e)
			}
		}
		if e := sc.upperThenLower(i); e >= 0 {
			return sc.contraction(e)
		}
		// Alternative 2, likewise.
		if c&notPrefix == 0 {
			if e := sc.upperRun(i + w); e >= 0 {
				return sc.contraction(e)
			}
		}
		if e := sc.upperRun(i); e >= 0 {
			return sc.contraction(e)
		}
	}
	if e, ok := sc.digits(i, c, w); ok {
		return e
	}
	if e, ok := sc.symbols(i, true); ok {
		return e
	}
	return sc.whitespace(i, c)
}

// upperThenLower matches [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+
// at j and returns its end, or -1. The upper run is greedy: when no lower
// character follows it, it gives back characters from its end until one it
// gave back is also lower (\p{Lm}, \p{Lo} and \p{M} are in both), which starts
// the lower run.
func (sc *scanner) upperThenLower(j int) int {
	k, lastLower := j, -1
	for k < len(sc.s) {
		c, w := sc.at(k)
		if c&table.Upper == 0 {
			if c&table.Lower != 0 {
				return sc.runEnd(k, table.Lower)
			}
			break
		}
		if c&table.Lower != 0 {
			lastLower = k
		}
		k += w
	}
	if lastLower < 0 {
		return -1
	}
	// What follows lastLower up to k is upper and not lower, so the lower run
	// is the one character.
	_, w := sc.at(lastLower)
	return lastLower + w
}

// upperRun matches [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*
// at j and returns its end, or -1.
func (sc *scanner) upperRun(j int) int {
	k := sc.runEnd(j, table.Upper)
	if k == j {
		return -1
	}
	return sc.runEnd(k, table.Lower)
}

// contraction matches (?i:'s|'t|'re|'ve|'m|'ll|'d)? at i and returns its end.
// The reference's engine folds case by Unicode's rules, so 's also matches
// ſ (U+017F, long s).
func (sc *scanner) contraction(i int) int {
	s := sc.s
	if i+1 >= len(s) || s[i] != '\'' {
		return i
	}
	sc.work += 2
	switch s[i+1] | 0x20 {
	case 's', 't', 'm', 'd':
		return i + 2
	case 'r', 'v':
		if i+2 < len(s) && s[i+2]|0x20 == 'e' {
			return i + 3
		}
	case 'l':
		if i+2 < len(s) && s[i+2]|0x20 == 'l' {
			return i + 3
		}
	case 0xc5 | 0x20: // ſ is C5 BF
		if s[i+1] == 0xc5 && i+2 < len(s) && s[i+2] == 0xbf {
			return i + 3
		}
	}
	return i
}

// digits matches \p{N}{1,3} at i.
func (sc *scanner) digits(i int, c uint8, w int) (int, bool) {
	if c&table.Number == 0 {
		return 0, false
	}
	e := i + w
	for range 2 {
		if e >= len(sc.s) {
			break
		}
		c, w := sc.at(e)
		if c&table.Number == 0 {
			break
		}
		e += w
	}
	return e, true
}

// symbols matches ` ?[^\s\p{L}\p{N}]+[\r\n/]*` (o200k_base, slash true) or
// ` ?[^\s\p{L}\p{N}]+[\r\n]*` (cl100k_base) at i. All three parts are
// possessive in the reference's compiled pattern.
func (sc *scanner) symbols(i int, slash bool) (int, bool) {
	j := i
	if sc.s[j] == ' ' {
		j++
	}
	e := j
	for e < len(sc.s) {
		c, w := sc.at(e)
		if c&notSymbol != 0 {
			break
		}
		e += w
	}
	if e == j {
		return 0, false
	}
	for e < len(sc.s) && (sc.s[e] == '\r' || sc.s[e] == '\n' || slash && sc.s[e] == '/') {
		sc.work++
		e++
	}
	return e, true
}

// whitespace matches `\s*[\r\n]+|\s+(?!\S)|\s+` at i, where c is the class
// of the character at i. Every other character is matched by an earlier
// alternative.
func (sc *scanner) whitespace(i int, c uint8) int {
	if c&table.Space == 0 {
		// Unreachable: a character is a letter, a number, whitespace or a
		// symbol. Take it alone rather than loop.
		_, w := sc.at(i)
		return i + w
	}
	e, last, lastNewline := i, i, -1
	for e < len(sc.s) {
		c, w := sc.at(e)
		if c&table.Space == 0 {
			break
		}
		if c&table.Newline != 0 {
			lastNewline = e
		}
		last = e
		e += w
	}
	switch {
	case lastNewline >= 0: // \s*[\r\n]+ ends at the run's last newline
		return lastNewline + 1
	case e == len(sc.s) || last == i: // \s+ to the end of the text, or a single character
		return e
	default: // \s+(?!\S) leaves the last character to join what follows
		return last
	}
}

// nextCl100k returns the end of the cl100k_base piece starting at i.
func (sc *scanner) nextCl100k(i int) int {
	if sc.s[i] == '\'' {
		if e := sc.contraction(i); e > i {
			return e
		}
	}
	c, w := sc.at(i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c&notPrefix == 0 {
		if e := sc.runEnd(i+w, table.Letter); e > i+w {
			return e
		}
	} else if c&table.Letter != 0 {
		return sc.runEnd(i+w, table.Letter)
	}
	if e, ok := sc.digits(i, c, w); ok {
		return e
	}
	if e, ok := sc.symbols(i, false); ok {
		return e
	}
	return sc.whitespace(i, c)
}
