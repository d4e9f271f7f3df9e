package provider

// The Anthropic dialect's request bodies: messages and count tokens.

var anthropicFields = []string{"model", "messages", "system", "max_tokens", "stream", "tools"}

func (p *parser) anthropic(body []byte) error {
	var f [6][]byte
	collect(body, anthropicFields, f[:])
	if err := p.model(f[0]); err != nil {
		return err
	}
	if p.r.Op == OpMessages {
		if f[3] == nil || kindOf(f[3]) == kindNull {
			return badRequest("max_tokens", "max_tokens is required")
		}
		if err := p.maxTokens(anthropicFields[3:4], f[3:4]); err != nil {
			return err
		}
		s, err := boolean("stream", f[4])
		if err != nil {
			return err
		}
		p.r.Stream, p.r.StreamUsageRequested = s, s
	}
	system := root("system")
	switch kindOf(f[2]) {
	case kindInvalid, kindNull:
	case kindString:
		p.addText(f[2])
		p.r.PromptParts++
	case kindArray:
		if err := p.anthropicBlocks(system, f[2], 0); err != nil {
			return err
		}
		p.r.PromptParts++
	default:
		return badField(system, "must be a string or an array of text blocks, got %s", kindOf(f[2]))
	}
	if err := p.anthropicMessages(f[1]); err != nil {
		return err
	}
	return p.tools(root("tools"), f[5])
}

func (p *parser) anthropicMessages(v []byte) error {
	n, err := p.eachMessage("messages", v, p.anthropicMessage)
	if err != nil {
		return err
	}
	if n == 0 && p.r.Op == OpMessages {
		return badRequest("messages", "messages must not be empty")
	}
	return nil
}

var anthropicMessageFields = []string{"role", "content"}

func (p *parser) anthropicMessage(f field, m []byte) error {
	if kindOf(m) != kindObject {
		return badField(f, "must be an object, got %s", kindOf(m))
	}
	var mf [2][]byte
	collect(m, anthropicMessageFields, mf[:])
	role, content := mf[0], mf[1]
	if err := p.role(f, role); err != nil {
		return err
	}
	c := f.member("content")
	switch kindOf(content) {
	case kindString:
		p.addText(content)
		return nil
	case kindArray:
		return p.anthropicBlocks(c, content, 0)
	case kindInvalid:
		return badField(c, "is required")
	}
	return badField(c, "must be a string or an array of content blocks, got %s", kindOf(content))
}

// anthropicBlocks reads content blocks: text, image, document, tool_use,
// tool_result (which holds blocks of its own), thinking, search results.
func (p *parser) anthropicBlocks(f field, v []byte, depth int) error {
	return eachNested(f, v, depth, p.anthropicBlock)
}

func (p *parser) anthropicBlock(f field, b []byte, depth int) error {
	if kindOf(b) != kindObject {
		return badField(f, "must be an object, got %s", kindOf(b))
	}
	var typ, content, source []byte
	eachMember(b, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "type"):
			typ = v
		case keyIs(k, esc, "text"), keyIs(k, esc, "thinking"), keyIs(k, esc, "name"), keyIs(k, esc, "title"):
			p.addText(v)
		case keyIs(k, esc, "input"):
			p.addRaw(v)
		case keyIs(k, esc, "content"):
			content = v
		case keyIs(k, esc, "source"):
			source = v
		}
		return true
	})
	switch string(str(typ)) {
	case "image":
		p.r.FixedPromptTokens += AnthropicMediaTokens
	case "document":
		p.anthropicDocument(source)
	}
	switch kindOf(content) {
	case kindString:
		p.addText(content)
	case kindArray:
		c := f.member("content")
		return p.anthropicBlocks(c, content, depth+1)
	}
	return nil
}

// anthropicDocument counts a document's text when it is plain text, else charges
// the media estimate (a PDF's cost is not knowable from its bytes here).
func (p *parser) anthropicDocument(source []byte) {
	var typ, data []byte
	eachMember(source, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "type"):
			typ = v
		case keyIs(k, esc, "data"):
			data = v
		}
		return true
	})
	if string(str(typ)) == "text" {
		p.addText(data)
		return
	}
	p.r.FixedPromptTokens += AnthropicMediaTokens
}
