package simulator

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// geminiRequest is a GenerateContentRequest. The REST API reads proto JSON, which
// accepts both lowerCamel and snake_case field names, so both are decoded.
type geminiRequest struct {
	Contents                []geminiContent  `json:"contents"`
	SystemInstruction       *geminiContent   `json:"systemInstruction"`
	SystemInstructionSnake  *geminiContent   `json:"system_instruction"`
	Tools                   json.RawMessage  `json:"tools"`
	GenerationConfig        *geminiGenConfig `json:"generationConfig"`
	GenerationConfigSnake   *geminiGenConfig `json:"generation_config"`
	GenerateContentRequest  *geminiRequest   `json:"generateContentRequest"` // countTokens may wrap the request
	GenerateContentReqSnake *geminiRequest   `json:"generate_content_request"`
}

type geminiContent struct {
	Role  string            `json:"role"`
	Parts []json.RawMessage `json:"parts"`
}

type geminiGenConfig struct {
	MaxOutputTokens      *int64 `json:"maxOutputTokens"`
	MaxOutputTokensSnake *int64 `json:"max_output_tokens"`
}

func handleGemini(c *reqCtx) {
	var req geminiRequest
	if !c.decode(&req) {
		return
	}
	model := c.model // from the path: /v1beta/models/{model}:{action}
	pl, ok := c.pool(model)
	if !ok {
		return
	}
	if c.action == "countTokens" {
		inner := &req
		if req.GenerateContentRequest != nil {
			inner = req.GenerateContentRequest
		} else if req.GenerateContentReqSnake != nil {
			inner = req.GenerateContentReqSnake
		}
		input, e := inner.inputTokens()
		c.countTokens(pl, "totalTokens", input, e)
		return
	}
	input, e := req.inputTokens()
	var maxOut *int64
	if cfg := firstNonNil(req.GenerationConfig, req.GenerationConfigSnake); cfg != nil {
		maxOut = firstNonNil(cfg.MaxOutputTokens, cfg.MaxOutputTokensSnake)
	}
	if e == nil && maxOut != nil && *maxOut < 1 {
		e = invalidParam("generationConfig.maxOutputTokens", "* GenerateContentRequest.generation_config.max_output_tokens: max_output_tokens must be positive.")
	}
	if e != nil {
		c.failPool(pl, ReasonBadRequest, e)
		return
	}
	mc := &modelCall{model: model, input: input, stream: c.action == "streamGenerateContent", render: &geminiResponder{}}
	if maxOut != nil {
		mc.statedMax = *maxOut
	}
	c.serve(pl, mc)
}

func firstNonNil[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

func (req *geminiRequest) inputTokens() (int64, *apiError) {
	if len(req.Contents) == 0 {
		return 0, invalidParam("contents", "* GenerateContentRequest.contents: contents is not specified")
	}
	n := requestOverhead + definitionTokens(req.Tools)
	if sys := firstNonNil(req.SystemInstruction, req.SystemInstructionSnake); sys != nil {
		t, e := sys.tokens("system_instruction")
		if e != nil {
			return 0, e
		}
		n += t
	}
	for i := range req.Contents {
		c := &req.Contents[i]
		if c.Role != "" && c.Role != "user" && c.Role != "model" && c.Role != "function" {
			return 0, invalidParam(fmt.Sprintf("contents[%d].role", i), "Please use a valid role: user, model.")
		}
		t, e := c.tokens(fmt.Sprintf("contents[%d]", i))
		if e != nil {
			return 0, e
		}
		n += t
	}
	return n, nil
}

func (c *geminiContent) tokens(path string) (int64, *apiError) {
	if len(c.Parts) == 0 {
		return 0, invalidParam(path+".parts", "* GenerateContentRequest.%s.parts: contents.parts must not be empty.", path)
	}
	n := int64(messageOverhead)
	for j, p := range c.Parts {
		t, ok := partTokens(p)
		if !ok {
			return 0, invalidParam(fmt.Sprintf("%s.parts[%d]", path, j), "Invalid JSON payload received. Unknown name or invalid value at '%s.parts[%d]'.", path, j)
		}
		n += t
	}
	return n, nil
}

type geminiResponse struct {
	Candidates    []geminiCandidate `json:"candidates"`
	UsageMetadata geminiUsage       `json:"usageMetadata"`
	ModelVersion  string            `json:"modelVersion"`
	ResponseID    string            `json:"responseId"`
}

type geminiCandidate struct {
	Content      geminiContentOut `json:"content"`
	FinishReason string           `json:"finishReason,omitempty"`
	Index        int              `json:"index"`
}

type geminiContentOut struct {
	Parts []geminiTextPart `json:"parts"`
	Role  string           `json:"role"`
}

type geminiTextPart struct {
	Text string `json:"text"`
}

type geminiUsage struct {
	PromptTokenCount     int64 `json:"promptTokenCount"`
	CandidatesTokenCount int64 `json:"candidatesTokenCount"`
	TotalTokenCount      int64 `json:"totalTokenCount"`
}

func geminiFinish(truncated bool) string {
	if truncated {
		return "MAX_TOKENS"
	}
	return "STOP"
}

type geminiResponder struct{ id string }

// chunk is a response carrying text, with usage counting output so far.
func (r *geminiResponder) chunk(g *generation, text string, output int64, finish string) geminiResponse {
	if r.id == "" {
		r.id = g.idr("")
	}
	return geminiResponse{
		Candidates:    []geminiCandidate{{Content: geminiContentOut{Parts: []geminiTextPart{{Text: text}}, Role: "model"}, FinishReason: finish}},
		UsageMetadata: geminiUsage{PromptTokenCount: g.input, CandidatesTokenCount: output, TotalTokenCount: g.input + output},
		ModelVersion:  g.model,
		ResponseID:    r.id,
	}
}

func (r *geminiResponder) body(g *generation) any {
	return r.chunk(g, g.text(), g.output(), geminiFinish(g.truncated))
}

// open: Gemini streams start with the first text chunk.
func (r *geminiResponder) open(*streamWriter, *generation) {}

func (r *geminiResponder) delta(sw *streamWriter, g *generation, i int) {
	sw.event("", r.chunk(g, g.pieces[i], int64(i+1), ""))
}

func (r *geminiResponder) close(sw *streamWriter, g *generation) {
	sw.event("", r.chunk(g, "", g.output(), geminiFinish(g.truncated)))
	sw.end()
}

func (r *geminiResponder) fail(sw *streamWriter, _ *generation) {
	sw.event("", geminiErrorBody{Error: geminiError{Code: http.StatusInternalServerError, Status: "INTERNAL",
		Message: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"}})
	sw.end()
}

type geminiModelList struct {
	Models []geminiModel `json:"models"`
}

type geminiModel struct {
	Name                       string   `json:"name"`
	Version                    string   `json:"version"`
	DisplayName                string   `json:"displayName"`
	InputTokenLimit            int64    `json:"inputTokenLimit"`
	OutputTokenLimit           int64    `json:"outputTokenLimit"`
	SupportedGenerationMethods []string `json:"supportedGenerationMethods"`
}

// geminiOutputTokenLimit is what the listing shows as every model's output limit.
const geminiOutputTokenLimit = 65_536

func (c *reqCtx) geminiModelInfo(name string) geminiModel {
	window := int64(DefaultContextWindow)
	if p, ok := c.acct.listed[name]; ok {
		window = p.window
	}
	return geminiModel{Name: "models/" + name, Version: "001", DisplayName: name, InputTokenLimit: window, OutputTokenLimit: geminiOutputTokenLimit,
		SupportedGenerationMethods: []string{"generateContent", "countTokens"}}
}
