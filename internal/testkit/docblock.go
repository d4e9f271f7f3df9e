package testkit

import (
	"os"
	"strings"
	"testing"
)

// DocBlock keeps a generated part of a document true: the text between the lines
// "<!-- name:begin -->" and "<!-- name:end -->" of the file at path must equal
// want, or t fails; under -update, the file is rewritten with want there instead.
// The prose around the block stays hand-written.
func DocBlock(t testing.TB, path, name, want string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	begin, end := "<!-- "+name+":begin -->\n", "<!-- "+name+":end -->"
	doc := string(data)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q block", path, strings.TrimSpace(begin), end)
	}
	got := doc[i+len(begin) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(doc[:i+len(begin)]+want+doc[j:]), 0o600); err != nil {
			t.Fatalf("update %s: %v", path, err)
		}
		return
	}
	t.Errorf("the %s block of %s is out of date (run the test with -update to rewrite it); want:\n%s", name, path, want)
}
