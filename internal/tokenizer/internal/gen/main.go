// Command gen writes the tokenizer's embedded tables: the o200k_base and
// cl100k_base vocabularies, taken from the reference tokenizer
// (github.com/tiktoken-go/tokenizer, which is only this program's input and the
// tests' oracle, never linked into the limiter), and the character class table
// of the Go release that runs it. `go generate ./internal/tokenizer` runs it;
// TestEmbeddedTablesAreGenerated fails when its output and the committed files
// differ.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tiktoken-go/tokenizer"

	"github.com/aiquota/aiquota/internal/tokenizer/internal/table"
)

// encodings lists the vocabularies with the size of their hash index: the
// smallest power of two above the token count, so the index is about 76% full
// and each file stays under 4 MB.
var encodings = []struct {
	name     tokenizer.Encoding
	tokens   int // what the reference holds; a new release that differs is looked at before it is embedded
	slotBits int
}{
	{tokenizer.O200kBase, 199998, 18},
	{tokenizer.Cl100kBase, 100256, 17},
}

func main() {
	out := flag.String("out", "data", "directory to write the tables to")
	flag.Parse()
	if err := run(*out); err != nil {
		log.Fatal(err)
	}
}

func run(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, e := range encodings {
		tokens, err := vocabulary(e.name)
		if err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		if len(tokens) != e.tokens {
			return fmt.Errorf("%s: the reference has %d tokens, expected %d", e.name, len(tokens), e.tokens)
		}
		file, err := table.BuildVocab(tokens, e.slotBits)
		if err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, string(e.name)+".bpe"), file, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "classes.bin"), table.BuildClasses(), 0o644)
}

// vocabulary returns the reference's tokens by rank. Its codec exposes them
// only through Decode; ranks are dense from 0, and the special tokens (which
// the limiter never produces from user text) are not among them.
func vocabulary(name tokenizer.Encoding) ([]string, error) {
	codec, err := tokenizer.Get(name)
	if err != nil {
		return nil, err
	}
	var tokens []string
	for r := 0; r <= table.MaxTokens; r++ {
		tok, err := codec.Decode([]uint{uint(r)})
		if err != nil {
			break
		}
		tokens = append(tokens, tok)
	}
	// No rank above the first gap decodes either: the ranks really are dense.
	for r := len(tokens); r <= table.MaxTokens; r++ {
		if _, err := codec.Decode([]uint{uint(r)}); err == nil {
			return nil, fmt.Errorf("rank %d decodes but rank %d does not", r, len(tokens))
		}
	}
	for b := range 256 {
		found := false
		for _, tok := range tokens[:min(len(tokens), 2000)] {
			if tok == string([]byte{byte(b)}) {
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("byte %#x is not a token: BPE could not encode every input", b)
		}
	}
	return tokens, nil
}
