package provider

import (
	"math"
)

// The OpenAI dialect's request bodies: chat completions, the legacy completions and
// embeddings, and responses.

var openAIChatFields = []string{"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options", "n", "tools", "functions", "response_format"}

func (p *parser) openAIChat(body []byte) error {
	var f [10][]byte
	collect(body, openAIChatFields, f[:])
	if err := p.model(f[0]); err != nil {
		return err
	}
	if err := p.maxTokens(openAIChatFields[2:4], f[2:4]); err != nil {
		return err
	}
	if err := p.openAIStream(f[4], f[5]); err != nil {
		return err
	}
	if err := p.choices("n", f[6]); err != nil {
		return err
	}
	if err := p.openAIMessages(f[1]); err != nil {
		return err
	}
	if err := p.tools(root("tools"), f[7]); err != nil {
		return err
	}
	if err := p.tools(root("functions"), f[8]); err != nil {
		return err
	}
	p.responseFormat(f[9])
	return nil
}

func (p *parser) openAIStream(stream, options []byte) error {
	s, err := boolean("stream", stream)
	if err != nil {
		return err
	}
	p.r.Stream = s
	if ok, err := optional("stream_options", options, kindObject, "an object"); !ok {
		return err
	}
	var include []byte
	eachMember(options, func(k []byte, esc bool, v []byte) bool {
		if keyIs(k, esc, "include_usage") {
			include = v
		}
		return true
	})
	inc, err := boolean("stream_options.include_usage", include)
	if err != nil {
		return err
	}
	p.r.StreamUsageRequested = s && inc
	return nil
}

func (p *parser) openAIMessages(v []byte) error {
	if _, err := p.eachMessage("messages", v, p.openAIMessage); err != nil {
		return err
	}
	if p.r.PromptParts == 0 {
		return badRequest("messages", "messages must not be empty")
	}
	return nil
}

var openAIMessageFields = []string{"role", "content", "name", "tool_calls", "function_call", "refusal"}

func (p *parser) openAIMessage(f field, m []byte) error {
	if kindOf(m) != kindObject {
		return badField(f, "must be an object, got %s", kindOf(m))
	}
	var mf [6][]byte
	collect(m, openAIMessageFields, mf[:])
	role, content, name, toolCalls, functionCall, refusal := mf[0], mf[1], mf[2], mf[3], mf[4], mf[5]
	if err := p.role(f, role); err != nil {
		return err
	}
	p.addText(name)
	p.addText(refusal)
	c := f.member("content")
	if err := p.openAIContent(c, content, 0); err != nil {
		return err
	}
	eachElement(toolCalls, func(_ int, call []byte) bool {
		p.toolCall(call)
		return true
	})
	p.toolCall(functionCall)
	return nil
}

// toolCall adds a call's function name and arguments; it accepts both the chat
// shape {function:{name, arguments}} and the flat {name, arguments}.
func (p *parser) toolCall(c []byte) {
	eachMember(c, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "function"):
			p.addStringMembers(v, "name", "arguments")
		case keyIs(k, esc, "name"), keyIs(k, esc, "arguments"):
			p.addText(v)
		}
		return true
	})
}

// openAIContent reads message content: a string, null, or an array of parts.
func (p *parser) openAIContent(f field, v []byte, depth int) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return nil
	case kindString:
		p.addText(v)
		return nil
	case kindArray:
	default:
		return badField(f, "must be a string, an array of content parts, or null; got %s", kindOf(v))
	}
	return eachNested(f, v, depth, p.openAIPart)
}

// openAIPart reads one content part of either OpenAI API: chat (text, image_url,
// input_audio, file, refusal) or Responses (input_text, output_text, input_image,
// input_file, and tool outputs that hold content of their own).
func (p *parser) openAIPart(f field, part []byte, depth int) error {
	if kindOf(part) != kindObject {
		return badField(f, "must be an object, got %s", kindOf(part))
	}
	var typ, text, detail, imageURL, output []byte
	eachMember(part, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "type"):
			typ = v
		case keyIs(k, esc, "text"), keyIs(k, esc, "refusal"):
			text = v
		case keyIs(k, esc, "image_url"):
			imageURL = v
		case keyIs(k, esc, "detail"):
			detail = v
		case keyIs(k, esc, "output"):
			output = v
		}
		return true
	})
	switch string(str(typ)) {
	case "image_url", "input_image":
		// Chat nests detail inside image_url; Responses puts it beside.
		if detail == nil {
			eachMember(imageURL, func(k []byte, esc bool, v []byte) bool {
				if keyIs(k, esc, "detail") {
					detail = v
				}
				return true
			})
		}
		if string(str(detail)) == "low" {
			p.r.FixedPromptTokens += OpenAILowDetailImageTokens
		} else {
			p.r.FixedPromptTokens += OpenAIMediaTokens
		}
	case "input_audio", "file", "input_file":
		p.r.FixedPromptTokens += OpenAIMediaTokens
	default:
		p.addText(text)
		if output != nil {
			o := f.member("output")
			return p.openAIContent(o, output, depth+1)
		}
	}
	return nil
}

// responseFormat adds a structured-output schema, which the model is shown.
func (p *parser) responseFormat(v []byte) {
	eachMember(v, func(k []byte, esc bool, s []byte) bool {
		if keyIs(k, esc, "json_schema") || keyIs(k, esc, "schema") {
			p.addRaw(s)
		}
		return true
	})
}

var openAILegacyFields = []string{"model", "prompt", "input", "max_tokens", "stream", "stream_options", "n", "best_of", "suffix"}

// openAILegacy reads /v1/completions and /v1/embeddings, whose input is a string,
// an array of strings, an array of token IDs, or an array of such arrays.
func (p *parser) openAILegacy(body []byte) error {
	var f [9][]byte
	collect(body, openAILegacyFields, f[:])
	if err := p.model(f[0]); err != nil {
		return err
	}
	param, input := "prompt", f[1]
	if p.r.Op == OpEmbeddings {
		param, input = "input", f[2]
	} else {
		if err := p.maxTokens(openAILegacyFields[3:4], f[3:4]); err != nil {
			return err
		}
		if err := p.openAIStream(f[4], f[5]); err != nil {
			return err
		}
		if err := p.choices("n", f[6]); err != nil {
			return err
		}
		if err := p.choices("best_of", f[7]); err != nil {
			return err
		}
		p.addText(f[8])
	}
	if input == nil || kindOf(input) == kindNull {
		if p.r.Op == OpEmbeddings {
			return badRequest(param, "input is required")
		}
		return nil // completions default to the empty prompt
	}
	return p.legacyInput(root(param), input, 0)
}

func (p *parser) legacyInput(f field, v []byte, depth int) error {
	switch kindOf(v) {
	case kindString:
		p.addText(v)
		return nil
	case kindNumber:
		if depth == 0 {
			break
		}
		if _, neg, big, ok := intValue(v, math.MaxInt32); !ok || neg || big {
			return badField(f, "holds %s, which is not a token ID", truncateForMessage(v))
		}
		p.r.FixedPromptTokens++
		return nil
	case kindArray:
		if depth >= 2 {
			break
		}
		var err error
		eachElement(v, func(i int, e []byte) bool {
			err = p.legacyInput(f.at(i), e, depth+1)
			return err == nil
		})
		return err
	}
	return badField(f, "must be a string, an array of strings, or an array of token IDs; got %s", kindOf(v))
}

var openAIResponsesFields = []string{"model", "input", "instructions", "max_output_tokens", "stream", "tools", "text"}

func (p *parser) openAIResponses(body []byte) error {
	var f [7][]byte
	collect(body, openAIResponsesFields, f[:])
	if err := p.model(f[0]); err != nil {
		return err
	}
	if err := p.maxTokens(openAIResponsesFields[3:4], f[3:4]); err != nil {
		return err
	}
	s, err := boolean("stream", f[4])
	if err != nil {
		return err
	}
	p.r.Stream, p.r.StreamUsageRequested = s, s
	switch kindOf(f[2]) {
	case kindInvalid, kindNull:
	case kindString:
		p.addText(f[2])
		p.r.PromptParts++
	default:
		return badRequest("instructions", "instructions must be a string, got %s", kindOf(f[2]))
	}
	if err := p.responsesInput(f[1]); err != nil {
		return err
	}
	if err := p.tools(root("tools"), f[5]); err != nil {
		return err
	}
	eachMember(f[6], func(k []byte, esc bool, v []byte) bool {
		if keyIs(k, esc, "format") {
			p.responseFormat(v)
		}
		return true
	})
	return nil
}

func (p *parser) responsesInput(v []byte) error {
	switch kindOf(v) {
	case kindInvalid, kindNull:
		return nil // a request may continue a stored conversation with no new input
	case kindString:
		p.addText(v)
		p.r.PromptParts++
		return nil
	case kindArray:
	default:
		return badRequest("input", "input must be a string or an array of input items, got %s", kindOf(v))
	}
	var err error
	input := root("input")
	eachElement(v, func(i int, item []byte) bool {
		p.r.PromptParts++
		f := input.at(i)
		err = p.responsesItem(f, item)
		return err == nil
	})
	return err
}

// responsesItem reads one Responses input item: a message {role, content}, a
// function call {name, arguments}, a tool output {output}, or a reasoning summary.
func (p *parser) responsesItem(f field, item []byte) error {
	if kindOf(item) != kindObject {
		return badField(f, "must be an object, got %s", kindOf(item))
	}
	var content, output, summary []byte
	eachMember(item, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "role"), keyIs(k, esc, "name"), keyIs(k, esc, "arguments"), keyIs(k, esc, "input"):
			p.addText(v)
		case keyIs(k, esc, "content"):
			content = v
		case keyIs(k, esc, "output"):
			output = v
		case keyIs(k, esc, "summary"):
			summary = v
		}
		return true
	})
	c := f.member("content")
	if err := p.openAIContent(c, content, 0); err != nil {
		return err
	}
	o := f.member("output")
	if err := p.openAIContent(o, output, 0); err != nil {
		return err
	}
	eachElement(summary, func(_ int, s []byte) bool {
		p.addStringMembers(s, "text")
		return true
	})
	return nil
}
