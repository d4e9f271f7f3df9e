package tokenizer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cases are texts that exercise each alternative of the split patterns and
// each path of the merge.
var cases = []string{
	"",
	"hello world",
	"tiktoken is great!",
	"Hello, World! HTTPServer camelCase XMLHttpRequest",
	"I'm sure you'll see they've done it, he'd said; IT'S ſ 'S 'Re 'LL 'x",
	"don't 'tis rock'n'roll y'all 'll",
	"1234567890 3.14159 2024-01-15 12,345,678 ١٢٣٤ ⅷ ½",
	"  leading   spaces   \t\ttabs\t\n\n\nnewlines \r\n windows\r mac\n \n \n",
	" \n\t \n\t \n\t x",
	"x\n\n  \n  y",
	"end   ",
	"a\u00a0b\u2003c\u3000d\u0085e",
	"!!! ??? ... --- === ***\n/// //\n\n/\nfoo/bar\n",
	"<|endoftext|> <|fim_prefix|>",
	"人工智能正在改变我们的工作方式。许多公司已经开始使用大型语言模型。",
	"東京は日本の首都です。ひらがなとカタカナ",
	"한국어 텍스트도 있습니다",
	"Искусственный интеллект меняет то, как мы работаем.",
	"مرحبا بالعالم، هذا نص عربي",
	"שלום עולם",
	"नमस्ते दुनिया",
	"Ünïcödé àccénts ñ ß ǅ ǈ ʰ ˢ",
	"e\u0301 a\u0308\u0301 \u0301\u0301x \u0301A \u0301",
	"ªAAAA ªAªA ʰA ǅǅ ǅx",
	"Great job 🎉🚀👍 see you 😀 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️",
	"func main() {\n\tfmt.Println(\"hi\")\n}\n",
	`{"type":"object","properties":{"location":{"type":"string"}}}`,
	"\x00\x01\x1f\x7f\x80 a\x7fb \x7f\x7f",
	"\xff\xfe invalid \xc3 utf8 \xe2\x82 here\xf0\x9f",
	"\ufffd literal replacement",
	"\ufeffBOM",
	strings.Repeat("a", 200),
	strings.Repeat("ab", 150),
	strings.Repeat(" ", 300),
	strings.Repeat("\n", 100),
	strings.Repeat(" \n\t", 100),
	strings.Repeat("!", 200),
	strings.Repeat("9", 100),
	strings.Repeat("人", 150),
	strings.Repeat("🎉", 50),
	strings.Repeat("\xff", 70),
}

func TestMatchesReference(t *testing.T) {
	for _, name := range []string{O200kBase, Cl100kBase} {
		e := mustGet(t, name)
		agree := 0
		for _, text := range cases {
			if checkAgainstReference(t, e, text) {
				agree++
			}
		}
		t.Logf("%s: the reference's own count agrees on %d of %d texts", name, agree, len(cases))
	}
}

// corpus returns the real prompts in testdata/corpus, by file name.
func corpus(t testing.TB) map[string]string {
	t.Helper()
	files, err := filepath.Glob("testdata/corpus/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	texts := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[filepath.Base(f)] = string(b)
	}
	return texts
}

// TestCorpus checks real prompts in several scripts, and reports the counts.
func TestCorpus(t *testing.T) {
	texts := corpus(t)
	var all strings.Builder
	for _, name := range []string{O200kBase, Cl100kBase} {
		e := mustGet(t, name)
		for file, text := range texts {
			agrees := checkAgainstReference(t, e, text)
			n, _ := e.Count(context.Background(), text)
			ref, _ := referenceCodec(t, name).Count(text)
			t.Logf("%s %-16s %5d bytes: %4d tokens (reference %4d, agrees: %v)", name, file, len(text), n, ref, agrees)
			all.WriteString(text)
		}
		checkAgainstReference(t, e, all.String())
	}
}

func TestCountStopsWhenContextEnds(t *testing.T) {
	e := mustGet(t, O200kBase)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Count(ctx, strings.Repeat("hello ", 10000)); !errors.Is(err, context.Canceled) {
		t.Errorf("Count with a cancelled context: %v, want context.Canceled", err)
	}
	// Cancelled part way: the count stops at a check and says so.
	text := strings.Repeat("lorem ipsum dolor sit amet ", 20000)
	stop := &cancelAfter{Context: context.Background(), calls: 3}
	n, err := e.Count(stop, text)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Count cancelled part way: %v, want context.Canceled", err)
	}
	full, _ := e.Count(context.Background(), text)
	if n <= 0 || n >= full {
		t.Errorf("Count cancelled part way counted %d of %d tokens", n, full)
	}
}

// cancelAfter is a context whose Err turns to Canceled after calls calls.
type cancelAfter struct {
	context.Context
	calls int
}

func (c *cancelAfter) Err() error {
	if c.calls--; c.calls < 0 {
		return context.Canceled
	}
	return nil
}

func TestGet(t *testing.T) {
	o, err := Get(O200kBase)
	if err != nil || o.Name() != O200kBase {
		t.Fatalf("Get(o200k_base) = %v, %v", o, err)
	}
	if again, _ := Get(O200kBase); again != o {
		t.Error("Get loads o200k_base twice")
	}
	if _, err := Get("p50k_base"); err == nil || !strings.Contains(err.Error(), "o200k_base") {
		t.Errorf("Get(p50k_base) = %v, want an error naming the known encodings", err)
	}
}

// TestOverlongPieces checks the count of a piece above maxPiece is never
// below its exact count, and shows why cutting it into stretches and merging
// each exactly would not do.
func TestOverlongPieces(t *testing.T) {
	for _, name := range []string{O200kBase, Cl100kBase} {
		e := mustGet(t, name)
		for _, text := range append(cases, corpusValues(t)...) {
			checkOverlong(t, e, text)
		}
	}
	// "AAAofterefix" is one piece of 5 tokens; its stretches "AAAofte" and
	// "refix" are 2 and 1 (found by FuzzO200k when long pieces were cut).
	e := mustGet(t, O200kBase)
	whole, _ := e.Count(context.Background(), "AAAofterefix")
	a, _ := e.Count(context.Background(), "AAAofte")
	b, _ := e.Count(context.Background(), "refix")
	if whole <= a+b+1 {
		t.Errorf("AAAofterefix: %d tokens, its stretches %d and %d: the example no longer shows cutting undercounts", whole, a, b)
	}
}

func corpusValues(t testing.TB) []string {
	var out []string
	for _, text := range corpus(t) {
		out = append(out, text)
	}
	return out
}

// checkOverlong fails t if counting text with small pieces treated as
// overlong gives fewer tokens than counting it exactly.
func checkOverlong(t *testing.T, e *Encoding, text string) {
	t.Helper()
	want, _ := exact(e).Count(context.Background(), text)
	for _, size := range []int{1, 4, 7, 33} {
		short := *e
		short.maxPiece = size
		if got, _ := short.Count(context.Background(), text); got < want {
			t.Fatalf("%s: with pieces above %d bytes bounded, %q counts %d tokens, below its exact %d", e.name, size, clip(text), got, want)
		}
	}
}

// TestAdversarialTextIsLinear counts issue 8's attack sizes, 48 KiB and 195
// KiB, of each adversarial text: the work (characters examined, lookups, merge
// steps) grows with the text, not faster, and stays within the budget.
func TestAdversarialTextIsLinear(t *testing.T) {
	for _, name := range []string{O200kBase, Cl100kBase} {
		e := mustGet(t, name)
		for _, a := range adversarial {
			small, large := repeatTo(a.unit, 48<<10), repeatTo(a.unit, 195<<10)
			ws, wl := work(e, small), work(e, large)
			ratio := float64(wl) / float64(ws)
			sizes := float64(len(large)) / float64(len(small))
			t.Logf("%s %-18s %7d units at 48 KiB, %8d at 195 KiB: x%.2f for x%.2f the text", name, a.name, ws, wl, ratio, sizes)
			if ratio > 1.1*sizes || wl > workPerByte*len(large) {
				t.Errorf("%s %s: work %d at %d bytes, %d at %d bytes: not linear", name, a.name, ws, len(small), wl, len(large))
			}
		}
	}
}

// TestWorkAddsUpEveryCount: Count adds each count's work to the process's total,
// which the limiter exports (test/adversarial reads it for issue 8's prompt).
func TestWorkAddsUpEveryCount(t *testing.T) {
	e := mustGet(t, O200kBase)
	text := repeatTo(" \n\t", 48<<10)
	before := Work()
	if _, err := e.Count(context.Background(), text); err != nil {
		t.Fatal(err)
	}
	// Other tests may count in parallel: at least this count's work was added.
	if got, want := Work()-before, uint64(work(e, text)); got < want {
		t.Errorf("Work grew by %d over a count that took %d units", got, want)
	}
}
