package provider

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/aiquota/aiquota/internal/limiterconfig"
	"github.com/aiquota/aiquota/internal/tokenizer"
)

// Counter counts the tokens of a text. Implementations are safe for concurrent
// use. Count stops early with ctx's error once ctx is done (it looks every few
// kilobytes), so a request that goes away stops costing CPU.
type Counter interface {
	Count(ctx context.Context, text string) (int64, error)
}

// CounterFor returns the counter for a pool's tokenizer setting (one of the
// limiterconfig.Tokenizer* constants). "" picks by model name: GPT-4o, GPT-4.1,
// GPT-4.5, GPT-5, o1/o3/o4 and gpt-oss use o200k_base; GPT-4 and GPT-3.5 and the
// OpenAI embedding models use cl100k_base; everything else (Claude, Gemini,
// DeepSeek, unknown) gets the estimate. A BPE vocabulary is loaded the first
// time a counter for it is asked for, and counters of one vocabulary are
// equal (==), so callers can share a memo per vocabulary.
func CounterFor(tokenizerName, model string) Counter {
	name := ""
	switch tokenizerName {
	case limiterconfig.TokenizerO200kBase:
		name = tokenizer.O200kBase
	case limiterconfig.TokenizerCl100kBase:
		name = tokenizer.Cl100kBase
	case limiterconfig.TokenizerEstimate:
		return Estimate
	default:
		name = encodingForModel(model)
	}
	if name == "" {
		return Estimate
	}
	enc, err := tokenizer.Get(name)
	if err != nil {
		// Only a broken build gets here (the vocabularies are embedded and
		// checked by the tokenizer's tests); an estimate is better than
		// nothing.
		return Estimate
	}
	return bpeCounter{enc}
}

// encodingForModel follows OpenAI's model-to-encoding table (tiktoken's
// model.py); fine-tuned ("ft:") and dated or suffixed names use their base's.
// It returns "" for models without a public vocabulary.
func encodingForModel(model string) string {
	m := strings.ToLower(model)
	m = strings.TrimPrefix(m, "ft:")
	if i := strings.LastIndexByte(m, '/'); i >= 0 { // "openai/gpt-4o" from routers
		m = m[i+1:]
	}
	family := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if m == p || strings.HasPrefix(m, p+"-") || strings.HasPrefix(m, p+":") {
				return true
			}
		}
		return false
	}
	switch {
	case family("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "o1", "o3", "o4", "gpt-oss", "codex-mini", "omni-moderation"),
		strings.HasPrefix(m, "gpt-5"):
		return tokenizer.O200kBase
	case family("gpt-4", "gpt-3.5-turbo", "gpt-35-turbo", "gpt-3.5", "text-embedding-ada-002",
		"text-embedding-3-small", "text-embedding-3-large", "davinci-002", "babbage-002"):
		return tokenizer.Cl100kBase
	}
	return ""
}

// bpeCounter counts with a BPE vocabulary (internal/tokenizer: exact, linear in
// the text, allocation-free).
type bpeCounter struct{ enc *tokenizer.Encoding }

func (c bpeCounter) Count(ctx context.Context, text string) (int64, error) {
	n, err := c.enc.Count(ctx, text)
	return int64(n), err
}

// Estimate is the counter for models without a public tokenizer (Claude, Gemini,
// DeepSeek). It splits text the way every modern BPE pre-tokenizes it and charges
// each piece what such vocabularies typically spend on it:
//
//   - a run of ASCII letters (split where lower case turns upper, as in
//     camelCase) costs a token per 7 letters, rounded up, so common words cost
//     one; a single space before a word or punctuation is free, as BPEs merge it;
//   - a run of digits costs a token per 3 (current BPEs group digits in threes);
//   - punctuation a token per 3 characters; other whitespace (newlines,
//     indentation) a token per run;
//   - a long "word" that often switches between lower case, upper case, digits
//     and the symbols of base64 (as base64, hex, keys and hashes do) costs 0.7
//     tokens per character, as BPEs find few merges in random text;
//   - non-ASCII letters (Cyrillic, Greek, accented Latin) a token per 4; CJK
//     characters 0.8 each (DeepSeek documents ~0.6 per Chinese character,
//     api-docs.deepseek.com/quick_start/token_usage; BPEs trained on less
//     Chinese need more); other symbols (emoji) 1.5.
//
// The sum is raised by 10%. For scale: Google documents about 4 characters per
// token for Gemini (ai.google.dev/gemini-api/docs/tokens), and Anthropic's Claude
// Opus 4.7 tokenizer yields 1.0-1.35x the tokens of earlier Claude models. The
// estimate is checked against o200k_base on prose in four languages, code, JSON,
// numbers, base64, hex and emoji (TestEstimateTracksBPE): it comes out 1.0-1.6x
// the real count. It errs high by design: under-reserving causes provider 429s,
// over-reserving only holds capacity back until the response's usage settles it.
var Estimate Counter = estimator{}

type estimator struct{}

// charClass is what the estimator's run splitting looks at.
type charClass uint8

const (
	classNone charClass = iota
	classLower
	classUpper
	classDigit
	classSpace // a single ' '
	classWhitespace
	classPunct
	classWordSymbol // + / = - _ : punctuation, but part of base64 and identifiers
	classOtherLetter
)

var asciiClasses = func() (t [128]charClass) {
	for c := range 128 {
		switch {
		case 'a' <= c && c <= 'z':
			t[c] = classLower
		case 'A' <= c && c <= 'Z':
			t[c] = classUpper
		case '0' <= c && c <= '9':
			t[c] = classDigit
		case c == ' ':
			t[c] = classSpace
		case c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			t[c] = classWhitespace
		case c == '+' || c == '/' || c == '=' || c == '-' || c == '_':
			t[c] = classWordSymbol
		default:
			t[c] = classPunct
		}
	}
	return t
}()

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// estimateCheckEvery is how many bytes the estimate reads between looks at
// the context.
const estimateCheckEvery = 64 << 10

func (estimator) Count(ctx context.Context, text string) (int64, error) {
	var h int64 // hundredths of a token
	n := len(text)
	check := estimateCheckEvery
	for i := 0; i < n; {
		if i >= check {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			check = i + estimateCheckEvery
		}
		c := text[i]
		if c >= utf8.RuneSelf {
			var cost int64
			cost, i = nonASCII(text, i)
			h += cost
			continue
		}
		switch asciiClasses[c] {
		case classSpace:
			j := i + 1
			for j < n && text[j] == ' ' {
				j++
			}
			// One space joins the next word or punctuation; more, or one
			// before a number, a newline or a symbol, are a token of their own.
			if j-i > 1 || j == n || !joinsSpace(text, j) {
				h += 100
			}
			i = j
		case classWhitespace:
			i = runEnd(text, i, classWhitespace)
			h += 100
		case classPunct:
			j := runEnd(text, i, classPunct)
			h += 100 * ceilDiv(int64(j-i), 3)
			i = j
		default:
			var cost int64
			cost, i = word(text, i)
			h += cost
		}
	}
	return ceilDiv(h*110, 100*100), nil
}

// runEnd is where the run of ASCII characters of class that starts at i ends.
func runEnd(text string, i int, class charClass) int {
	j := i + 1
	for j < len(text) && text[j] < utf8.RuneSelf && asciiClasses[text[j]] == class {
		j++
	}
	return j
}

// word charges the word of letters, digits and base64 symbols starting at i, run
// by run; a long word that often switches class (most random strings do, most
// words and identifiers do not) costs at least 0.7 tokens per character.
func word(text string, i int) (hundredths int64, end int) {
	start, runStart := i, i
	runClass, last := classNone, classNone
	var switches int64
	for ; i < len(text) && text[i] < utf8.RuneSelf; i++ {
		k := asciiClasses[text[i]]
		if k != classLower && k != classUpper && k != classDigit && k != classWordSymbol {
			break
		}
		if k != runClass && (k != classLower || runClass != classUpper) { // "The", "HTTPServer"
			hundredths += runCost(runClass, int64(i-runStart))
			runStart, runClass = i, k
		}
		if k != last && i > start {
			switches++
		}
		last = k
	}
	hundredths += runCost(runClass, int64(i-runStart))
	if n := int64(i - start); n >= 16 && switches*10 >= n*3 {
		hundredths = max(hundredths, 70*n)
	}
	return hundredths, i
}

func runCost(k charClass, n int64) int64 {
	switch k {
	case classLower, classUpper:
		return 100 * ceilDiv(n, 7)
	case classDigit, classWordSymbol:
		return 100 * ceilDiv(n, 3)
	}
	return 0
}

// nonASCII charges the non-ASCII text starting at i: a run of letters a token
// per 4 characters, CJK 0.8 per character, whitespace a token per run, anything
// else 1.5 per character, a stray byte 1.
func nonASCII(text string, i int) (hundredths int64, end int) {
	r, size := utf8.DecodeRuneInString(text[i:])
	switch {
	case r == utf8.RuneError && size == 1:
		return 100, i + 1
	case isCJK(r):
		return 80, i + size
	case unicode.IsLetter(r) || unicode.IsMark(r):
		var n int64
		for i < len(text) {
			r, size := utf8.DecodeRuneInString(text[i:])
			if !unicode.IsLetter(r) && !unicode.IsMark(r) || isCJK(r) {
				break
			}
			n++
			i += size
		}
		return 100 * ceilDiv(n, 4), i
	case unicode.IsSpace(r):
		for i < len(text) {
			r, size := utf8.DecodeRuneInString(text[i:])
			if !unicode.IsSpace(r) {
				break
			}
			i += size
		}
		return 100, i
	}
	return 150, i + size
}

func isCJK(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul)
}

// joinsSpace reports whether the character at j absorbs a single space before
// it, as BPE pre-tokenizers let letters and punctuation do.
func joinsSpace(text string, j int) bool {
	if c := text[j]; c < utf8.RuneSelf {
		k := asciiClasses[c]
		return k != classDigit && k != classWhitespace && k != classSpace
	}
	r, _ := utf8.DecodeRuneInString(text[j:])
	return (unicode.IsLetter(r) || unicode.IsMark(r)) && !isCJK(r)
}

// PromptTokens is the input a request will be charged for: the prompt text's
// tokens, the fixed cost of its non-text parts, and the chat format's framing,
// which OpenAI documents as 3 tokens per message plus 3 to prime the reply
// (cookbook.openai.com "How to count tokens with tiktoken"). Other providers'
// framing is not published; the same allowance is used for them. It returns
// ctx's error, and no count, when ctx ends first: the request has gone and
// will not be admitted.
func PromptTokens(ctx context.Context, c Counter, r *Request) (int64, error) {
	if r == nil {
		return 0, nil
	}
	if c == nil {
		c = Estimate
	}
	n := r.FixedPromptTokens
	if r.PromptText != "" {
		k, err := c.Count(ctx, r.PromptText)
		if err != nil {
			return 0, err
		}
		n += k
	}
	if r.PromptParts > 0 {
		n += 3*int64(r.PromptParts) + 3
	}
	return n, nil
}
