package provider

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/tiktoken-go/tokenizer"

	"github.com/aiquota/aiquota/internal/limiterconfig"
)

// Counter counts the tokens of a text. Implementations are safe for concurrent use.
type Counter interface {
	Count(text string) int64
}

// CounterFor returns the counter for a pool's tokenizer setting (one of the
// limiterconfig.Tokenizer* constants). "" picks by model name: GPT-4o, GPT-4.1,
// GPT-4.5, GPT-5, o1/o3/o4 and gpt-oss use o200k_base; GPT-4 and GPT-3.5 and the
// OpenAI embedding models use cl100k_base; everything else (Claude, Gemini,
// DeepSeek, unknown) gets the estimate. BPE counters are built once per encoding
// and shared; they are exact but slow (see the package benchmarks), so wrap them in
// a MemoCounter on hot paths.
func CounterFor(tokenizerName, model string) Counter {
	switch tokenizerName {
	case limiterconfig.TokenizerO200kBase:
		return o200k()
	case limiterconfig.TokenizerCl100kBase:
		return cl100k()
	case limiterconfig.TokenizerEstimate:
		return Estimate
	}
	switch encodingForModel(model) {
	case tokenizer.O200kBase:
		return o200k()
	case tokenizer.Cl100kBase:
		return cl100k()
	}
	return Estimate
}

// encodingForModel follows OpenAI's model-to-encoding table (tiktoken's
// model.py); fine-tuned ("ft:") and dated or suffixed names use their base's.
func encodingForModel(model string) tokenizer.Encoding {
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

// bpeCounter counts with a real BPE vocabulary. The codec is read-only after
// construction, so one instance serves every goroutine.
type bpeCounter struct{ codec tokenizer.Codec }

func (c bpeCounter) Count(text string) int64 {
	n, err := c.codec.Count(text)
	if err != nil {
		// The codec only fails when its split pattern does (a regexp timeout,
		// which is unset); an estimate is better than charging nothing.
		return Estimate.Count(text)
	}
	return int64(n)
}

var (
	o200k  = sync.OnceValue(func() Counter { return newBPE(tokenizer.O200kBase) })
	cl100k = sync.OnceValue(func() Counter { return newBPE(tokenizer.Cl100kBase) })
)

func newBPE(enc tokenizer.Encoding) Counter {
	c, err := tokenizer.Get(enc)
	if err != nil {
		// Get only fails for encodings the module does not embed; both of ours
		// are embedded, so this is unreachable short of a broken dependency.
		return Estimate
	}
	return bpeCounter{c}
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

func (estimator) Count(text string) int64 {
	var e estimate
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			e.add(asciiClasses[c])
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			e.addFixed(100) // a stray byte is a byte-token
		case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul):
			e.addFixed(80)
		case unicode.IsLetter(r) || unicode.IsMark(r):
			e.add(classOtherLetter)
		case unicode.IsSpace(r):
			e.add(classWhitespace)
		default:
			e.addFixed(150)
		}
	}
	return e.total()
}

// estimate is the estimator's state while it walks a text. Costs are kept in
// hundredths of a token.
type estimate struct {
	hundredths int64
	class      charClass // class of the current run
	run        int64     // length of the current run
	spaces     int64     // length of the pending run of ' '
	// The current "word": letters, digits and the symbols of base64 and hex
	// identifiers, across runs. BPEs find few merges in random strings (keys,
	// hashes, base64), which cost 0.6-0.7 tokens per character.
	wordLen, wordSwitches, wordStart int64
	wordLast                         charClass
}

func (e *estimate) endRun() {
	switch e.class {
	case classLower, classUpper:
		e.hundredths += 100 * ceilDiv(e.run, 7)
	case classDigit:
		e.hundredths += 100 * ceilDiv(e.run, 3)
	case classPunct, classWordSymbol:
		e.hundredths += 100 * ceilDiv(e.run, 3)
	case classWhitespace:
		e.hundredths += 100
	case classOtherLetter:
		e.hundredths += 100 * ceilDiv(e.run, 4)
	}
	e.run, e.class = 0, classNone
}

// endWord charges a long word that switches character class often (most random
// strings do, most words and identifiers do not) at 0.7 tokens per character.
func (e *estimate) endWord() {
	if e.wordLen >= 16 && e.wordSwitches*10 >= e.wordLen*3 {
		e.endRun()
		e.hundredths = max(e.hundredths, e.wordStart+70*e.wordLen)
	}
	e.wordLen, e.wordSwitches, e.wordLast = 0, 0, classNone
}

func (e *estimate) addFixed(hundredths int64) {
	e.flushSpaces(classNone)
	e.endRun()
	e.endWord()
	e.hundredths += hundredths
}

func (e *estimate) flushSpaces(next charClass) {
	if e.spaces == 0 {
		return
	}
	// One space joins the next word or punctuation; more, or one before a
	// number, a newline or a symbol, form a token of their own.
	e.endRun()
	if e.spaces > 1 || next == classDigit || next == classWhitespace || next == classNone {
		e.hundredths += 100
	}
	e.spaces = 0
}

func (e *estimate) add(k charClass) {
	if k == classSpace {
		e.endWord()
		e.spaces++
		return
	}
	e.flushSpaces(k)
	if inWord(k) {
		if e.wordLen == 0 {
			e.endRun()
			e.wordStart = e.hundredths
		} else if k != e.wordLast {
			e.wordSwitches++
		}
		e.wordLen++
		e.wordLast = k
	} else {
		e.endWord()
	}
	switch {
	case k == e.class,
		k == classLower && e.class == classUpper, // "The", "HTTPServer"
		k == classOtherLetter && (e.class == classLower || e.class == classUpper):
		e.run++
		e.class = max(e.class, k) // a word with an accent counts as non-ASCII
		return
	case (k == classLower || k == classUpper) && e.class == classOtherLetter:
		e.run++
		return
	}
	e.endRun()
	e.class, e.run = k, 1
}

func inWord(k charClass) bool {
	return k == classLower || k == classUpper || k == classDigit || k == classWordSymbol
}

func (e *estimate) total() int64 {
	e.flushSpaces(classNone)
	e.endWord()
	e.endRun()
	return ceilDiv(e.hundredths*110, 100*100)
}

// PromptTokens is the input a request will be charged for: the prompt text's
// tokens, the fixed cost of its non-text parts, and the chat format's framing,
// which OpenAI documents as 3 tokens per message plus 3 to prime the reply
// (cookbook.openai.com "How to count tokens with tiktoken"). Other providers'
// framing is not published; the same allowance is used for them.
func PromptTokens(c Counter, r *Request) int64 {
	if r == nil {
		return 0
	}
	if c == nil {
		c = Estimate
	}
	n := r.FixedPromptTokens
	if r.PromptText != "" {
		n += c.Count(r.PromptText)
	}
	if r.PromptParts > 0 {
		n += 3*int64(r.PromptParts) + 3
	}
	return n
}
