package limiterconfig

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

// The model catalogue: the context windows and maximum output tokens the
// providers document, shipped with the limiter as data (models.json), so that a
// pool that does not state a window still gets the model's own. A model the
// catalogue does not list has no window at all (0): the limiter then leaves the
// context decision to the provider, since a guessed window refuses requests the
// provider would take (a 140K-token prompt to a 1M-window model, under the 128K
// that was once assumed).

//go:embed models.json
var modelsJSON []byte

// ModelInfo is what the catalogue knows of one model; a zero field is unknown.
type ModelInfo struct {
	Name            string `json:"name"`
	ContextWindow   int64  `json:"contextWindow"`
	MaxOutputTokens int64  `json:"maxOutputTokens,omitempty"`
}

// Catalogue is the model catalogue document.
type Catalogue struct {
	// Version is the date of the figures.
	Version string `json:"version"`
	// Source says where they come from.
	Source string      `json:"source"`
	Models []ModelInfo `json:"models"`
}

var catalogue, catalogueIndex = mustParseCatalogue(modelsJSON)

func mustParseCatalogue(data []byte) (*Catalogue, map[string]ModelInfo) {
	c := &Catalogue{}
	if err := json.Unmarshal(data, c); err != nil {
		panic(fmt.Sprintf("limiterconfig: embedded models.json does not parse: %v", err))
	}
	index := make(map[string]ModelInfo, len(c.Models))
	for _, m := range c.Models {
		index[m.Name] = m
	}
	return c, index
}

// ModelCatalogue is the embedded catalogue. Callers must not modify it.
func ModelCatalogue() *Catalogue { return catalogue }

// LookupModel finds a model in the catalogue: by its name, or by the name of the
// model it is a dated snapshot or numbered version of (a suffix -YYYYMMDD,
// -YYYY-MM-DD or -NNN, as in claude-sonnet-4-20250514, gpt-4o-2024-08-06,
// gemini-2.0-flash-001). Nothing else is stripped: claude-opus-4-8 is not
// claude-opus-4, and gets no window.
func LookupModel(model string) (ModelInfo, bool) {
	if m, ok := catalogueIndex[model]; ok {
		return m, true
	}
	if base, ok := withoutVersionSuffix(model); ok {
		m, ok := catalogueIndex[base]
		return m, ok
	}
	return ModelInfo{}, false
}

// withoutVersionSuffix strips one snapshot suffix.
func withoutVersionSuffix(model string) (string, bool) {
	for _, shape := range []string{"-dddddddd", "-dddd-dd-dd", "-ddd"} {
		n := len(model) - len(shape)
		if n > 0 && matchesShape(model[n:], shape) {
			return model[:n], true
		}
	}
	return "", false
}

// matchesShape reports whether s has shape's length, a digit wherever shape has
// 'd' and shape's byte elsewhere.
func matchesShape(s, shape string) bool {
	for i := range len(shape) {
		if shape[i] == 'd' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		} else if s[i] != shape[i] {
			return false
		}
	}
	return true
}
