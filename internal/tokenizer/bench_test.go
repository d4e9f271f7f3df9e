package tokenizer

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	reference "github.com/tiktoken-go/tokenizer"
)

// Benchmarks, each beside the reference in the same run where it applies:
//
//	go test -run '^$' -bench . -benchmem ./internal/tokenizer/
//
// The reference's adversarial case takes seconds per operation; add
// -benchtime 1x for a quick look.

// BenchmarkPrompt counts 1 KB prompts: prose, JSON and Chinese.
func BenchmarkPrompt(b *testing.B) {
	texts := corpus(b)
	for _, file := range []string{"english.txt", "json.txt", "chinese.txt", "russian.txt"} {
		text := texts[file]
		for _, name := range []string{O200kBase, Cl100kBase} {
			e := mustGet(b, name)
			b.Run(fmt.Sprintf("%s/%s/ours", strings.TrimSuffix(file, ".txt"), name), func(b *testing.B) {
				benchCount(b, len(text), func() (int, error) { return e.Count(context.Background(), text) })
			})
			ref := referenceCodec(b, name)
			b.Run(fmt.Sprintf("%s/%s/reference", strings.TrimSuffix(file, ".txt"), name), func(b *testing.B) {
				benchCount(b, len(text), func() (int, error) { return ref.Count(text) })
			})
		}
	}
}

func benchCount(b *testing.B, size int, count func() (int, error)) {
	b.ReportAllocs()
	b.SetBytes(int64(size))
	var n int
	for b.Loop() {
		var err error
		if n, err = count(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "tokens")
}

// adversarial are texts an end user could send to burn the limiter's CPU,
// each a repeated unit, at two sizes: the time per byte should not grow.
var adversarial = []struct{ name, unit string }{
	{"whitespace", " \n\t"},
	{"spaces-then-letter", "    x"},
	{"one-letter", "a"},
	{"upper-lower", "aB"},
	{"digits", "7"},
	{"punctuation", "!?"},
	{"cjk", "人工智能"},
	{"emoji-zwj", "👨‍👩‍👧‍👦"},
	{"invalid-utf8", "\xff"},
	// Pieces just under maxPiece, merged exactly (the cases above are one
	// piece each, above it).
	{"long-words", strings.Repeat("x", maxPiece-1) + " "},
}

// BenchmarkAdversarial counts each adversarial text at 48 KiB and 195 KiB
// (issue 8's sizes): the time per byte should not grow. The reference is
// beside it on the whitespace case at 12 and 48 KiB, a quarter of the sizes
// (it takes seconds at 48 KiB and minutes at 195 on a shared machine); its
// other cases are linear.
func BenchmarkAdversarial(b *testing.B) {
	e := mustGet(b, O200kBase)
	for _, a := range adversarial {
		for _, size := range []int{48 << 10, 195 << 10} {
			text := repeatTo(a.unit, size)
			b.Run(fmt.Sprintf("%s/%dKiB/ours", a.name, size>>10), func(b *testing.B) {
				benchCount(b, len(text), func() (int, error) { return e.Count(context.Background(), text) })
			})
		}
	}
	ref := referenceCodec(b, O200kBase)
	for _, size := range []int{12 << 10, 48 << 10} {
		text := repeatTo(adversarial[0].unit, size)
		b.Run(fmt.Sprintf("%s/%dKiB/reference", adversarial[0].name, size>>10), func(b *testing.B) {
			benchCount(b, len(text), func() (int, error) { return ref.Count(text) })
		})
	}
}

// BenchmarkLoad is what loading a vocabulary costs: checking the embedded
// file's header. Its pages are touched later, by the lookups that need them
// (BenchmarkVocabularyMemory measures that).
func BenchmarkLoad(b *testing.B) {
	for _, name := range []string{O200kBase, Cl100kBase} {
		file := map[string]string{O200kBase: o200kFile, Cl100kBase: cl100kFile}[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := load(name, file, name == O200kBase); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVocabularyMemory runs a fresh process per vocabulary and
// tokenizer that loads it and counts the corpus once, and reports what that
// added: live heap, anonymous and file-backed resident memory
// (/proc/self/status), and the wall time of the load and first count.
func BenchmarkVocabularyMemory(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc/self/status")
	}
	for _, impl := range []string{"ours", "reference"} {
		for _, name := range []string{O200kBase, Cl100kBase} {
			b.Run(impl+"/"+name, func(b *testing.B) {
				var m map[string]float64
				for b.Loop() {
					m = memoryChild(b, impl, name)
				}
				for _, k := range []string{"heap-MB", "rss-anon-MB", "rss-file-MB", "load-and-first-count-ms"} {
					b.ReportMetric(m[k], k)
				}
			})
		}
	}
}

const memoryChildEnv = "AIQUOTA_TOKENIZER_MEMORY_CHILD"

func memoryChild(b *testing.B, impl, name string) map[string]float64 {
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryChild$", "-test.v")
	cmd.Env = append(os.Environ(), memoryChildEnv+"="+impl+","+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("memory child: %v\n%s", err, out)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if f, err := strconv.ParseFloat(v, 64); ok && err == nil {
			m[k] = f
		}
	}
	if len(m) < 4 {
		b.Fatalf("memory child printed no figures:\n%s", out)
	}
	return m
}

// TestMemoryChild is BenchmarkVocabularyMemory's child process; it does
// nothing in a normal test run.
func TestMemoryChild(t *testing.T) {
	spec := os.Getenv(memoryChildEnv)
	if spec == "" {
		t.Skip("run by BenchmarkVocabularyMemory")
	}
	impl, name, _ := strings.Cut(spec, ",")
	texts := corpusValues(t)
	runtime.GC()
	heap0, anon0, file0 := memory(t)
	start := time.Now()
	switch impl {
	case "ours":
		e := mustGet(t, name)
		for _, text := range texts {
			if _, err := e.Count(context.Background(), text); err != nil {
				t.Fatal(err)
			}
		}
	case "reference":
		c, err := reference.Get(reference.Encoding(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range texts {
			if _, err := c.Count(text); err != nil {
				t.Fatal(err)
			}
		}
		defer runtime.KeepAlive(c)
	}
	elapsed := time.Since(start)
	runtime.GC()
	heap1, anon1, file1 := memory(t)
	fmt.Printf("heap-MB=%.2f\nrss-anon-MB=%.2f\nrss-file-MB=%.2f\nload-and-first-count-ms=%.2f\n",
		float64(heap1-heap0)/1e6, float64(anon1-anon0)/1e6, float64(file1-file0)/1e6, float64(elapsed)/1e6)
}

// memory returns the live heap and the resident anonymous and file-backed
// memory, in bytes.
func memory(t *testing.T) (heap, anon, file int64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "RssAnon":
			anon = kb << 10
		case "RssFile":
			file = kb << 10
		}
	}
	return int64(ms.HeapAlloc), anon, file
}
