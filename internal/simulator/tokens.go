package simulator

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
)

// The simulator's token counting rule. It is deliberately simple and independent of
// any real tokenizer: the usage it reports is the ground truth that the limiter's
// estimate (a real tokenizer) is settled against, and the difference between the two
// is exactly what settlement exists for.
//
//   - text (a message's string content, a text part, a prompt, an input string, a
//     system prompt): ceil(UTF-8 bytes / 4);
//   - an image part (a part whose type mentions "image", or Gemini inlineData /
//     fileData): 85;
//   - any other structured part (tool calls, tool results, ...) and tool or function
//     definitions: ceil(JSON bytes / 4);
//   - token arrays (OpenAI prompts and embedding inputs given as integers): their length;
//   - each message (or Gemini content, or Responses input item) adds 4, and each
//     conversation-style request (chat, messages, responses, generateContent) adds 3.
//
// Generated text is one vocabulary word per output token.
const (
	bytesPerToken   = 4
	imageTokens     = 85
	messageOverhead = 4
	requestOverhead = 3
)

func textTokens(s string) int64 { return int64((len(s) + bytesPerToken - 1) / bytesPerToken) }

func rawTokens(raw json.RawMessage) int64 {
	return int64((len(raw) + bytesPerToken - 1) / bytesPerToken)
}

// definitionTokens counts tool or function definitions; null or absent is 0.
func definitionTokens(raw json.RawMessage) int64 {
	if isNull(raw) {
		return 0
	}
	return rawTokens(raw)
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// contentTokens counts a message's content: null, a string, or an array of parts.
// ok is false when the content is of another JSON type.
func contentTokens(raw json.RawMessage) (n int64, ok bool) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return 0, true
	case raw[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		return textTokens(s), true
	case raw[0] == '[':
		var parts []json.RawMessage
		if json.Unmarshal(raw, &parts) != nil {
			return 0, false
		}
		for _, p := range parts {
			t, ok := partTokens(p)
			if !ok {
				return 0, false
			}
			n += t
		}
		return n, true
	}
	return 0, false
}

// partTokens counts one content part; ok is false when the part is not an object
// (a bare string counts as text, as the Responses API allows).
func partTokens(raw json.RawMessage) (int64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		return textTokens(s), true
	}
	if len(raw) == 0 || raw[0] != '{' {
		return 0, false
	}
	var p struct {
		Type       string          `json:"type"`
		Text       json.RawMessage `json:"text"`
		InlineData json.RawMessage `json:"inlineData"`
		FileData   json.RawMessage `json:"fileData"`
	}
	if json.Unmarshal(raw, &p) != nil {
		return 0, false
	}
	var text string
	switch {
	case len(p.Text) > 0 && p.Text[0] == '"' && json.Unmarshal(p.Text, &text) == nil:
		return textTokens(text), true
	case strings.Contains(p.Type, "image") || p.InlineData != nil || p.FileData != nil:
		return imageTokens, true
	}
	return rawTokens(raw), true
}

// Randomness. Every request gets generators seeded by (Config.Seed, account index,
// request sequence number, purpose), so one purpose's draws never shift another's:
// whether a fault was drawn does not change the generated text.
const (
	purposeFault uint64 = iota + 1
	purposeText
	purposeID      // the request-id header
	purposeBodyIDs // ids inside the body
)

func requestRNG(seed int64, account int, seq uint64, purpose uint64) rand.PCG {
	var p rand.PCG
	p.Seed(uint64(seed), splitmix(splitmix(uint64(account)<<32^purpose)^seq))
	return p
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// unit draws a float64 in [0, 1).
func unit(p *rand.PCG) float64 { return float64(p.Uint64()>>11) / (1 << 53) }

func intn(p *rand.PCG, n int) int { return int(p.Uint64() % uint64(n)) }

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newID is prefix followed by 24 characters drawn from p.
func newID(p *rand.PCG, prefix string) string {
	b := make([]byte, len(prefix), len(prefix)+24)
	copy(b, prefix)
	for range 24 {
		b = append(b, idAlphabet[intn(p, len(idAlphabet))])
	}
	return string(b)
}

var vocabulary = strings.Fields(`the a quota limit token bucket request response model
	window minute rate burst refill queue priority retry backoff jitter circuit breaker
	fallback provider account key lease share demand usage headers stream chunk latency
	budget capacity margin tier pool sidecar manager steady fair weighted reserve settle
	refund estimate prompt output input context cache reset daily concurrency signal
	health probe metric alert status event watch apply`)

var spacedVocabulary = func() []string {
	s := make([]string, len(vocabulary))
	for i, w := range vocabulary {
		s[i] = " " + w
	}
	return s
}()

// generateText draws n output tokens, one word each; every piece but the first
// starts with a space, so the pieces concatenate into the text.
func generateText(p *rand.PCG, n int64) []string {
	pieces := make([]string, n)
	for i := range pieces {
		w := intn(p, len(vocabulary))
		if i == 0 {
			pieces[i] = vocabulary[w]
		} else {
			pieces[i] = spacedVocabulary[w]
		}
	}
	return pieces
}

// embedding is a unit vector determined by the seed and the text, so the same text
// always embeds the same way within a run.
func embedding(seed int64, text string, dims int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(text))
	var p rand.PCG
	p.Seed(uint64(seed), h.Sum64())
	v := make([]float32, dims)
	var norm float64
	for i := range v {
		x := unit(&p)*2 - 1
		v[i] = float32(x)
		norm += x * x
	}
	if norm = math.Sqrt(norm); norm > 0 {
		for i := range v {
			v[i] = float32(float64(v[i]) / norm)
		}
	}
	return v
}
