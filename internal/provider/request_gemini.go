package provider

// The Gemini dialect's request bodies: generate content, its stream and count tokens.

// Gemini's REST API is proto3 JSON, which accepts both lowerCamel and snake_case
// member names (protobuf.dev/programming-guides/json), and its own docs use both.
var geminiFields = []string{"contents", "systemInstruction", "system_instruction", "tools", "generationConfig", "generation_config", "generateContentRequest", "generate_content_request"}

func (p *parser) gemini(body []byte) error {
	var f [8][]byte
	collect(body, geminiFields, f[:])
	if p.r.Op == OpGeminiCountTokens {
		if inner := either(f[6], f[7]); kindOf(inner) == kindObject {
			collect(inner, geminiFields[:6], f[:6])
		}
	}
	sys := either(f[1], f[2])
	sf := root("systemInstruction")
	switch kindOf(sys) {
	case kindInvalid, kindNull:
	case kindObject:
		if err := p.geminiContent(sf, sys); err != nil {
			return err
		}
		p.r.PromptParts++
	default:
		return badField(sf, "must be an object, got %s", kindOf(sys))
	}
	if err := p.geminiContents(f[0]); err != nil {
		return err
	}
	if err := p.geminiTools(f[3]); err != nil {
		return err
	}
	return p.generationConfig(either(f[4], f[5]))
}

// either returns the camelCase spelling's value, else the snake_case one's.
func either(camel, snake []byte) []byte {
	if camel != nil {
		return camel
	}
	return snake
}

func (p *parser) geminiContents(v []byte) error {
	if k := kindOf(v); (k == kindInvalid || k == kindNull) && p.r.Op == OpGeminiCountTokens {
		return nil
	}
	n, err := p.eachMessage("contents", v, func(f field, c []byte) error {
		if kindOf(c) != kindObject {
			return badField(f, "must be an object, got %s", kindOf(c))
		}
		return p.geminiContent(f, c)
	})
	if err != nil {
		return err
	}
	if n == 0 && p.r.Op != OpGeminiCountTokens {
		return badRequest("contents", "contents must not be empty")
	}
	return nil
}

func (p *parser) geminiContent(f field, c []byte) error {
	var parts []byte
	eachMember(c, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "role"):
			p.addText(v)
		case keyIs(k, esc, "parts"):
			parts = v
		}
		return true
	})
	if kindOf(parts) == kindObject {
		// Some clients send a lone part where a list belongs; proto JSON
		// parsers tolerate it, so the limiter does too.
		p.geminiPart(parts)
		return nil
	}
	return objects(f.member("parts"), parts, p.geminiPart)
}

func (p *parser) geminiPart(part []byte) {
	eachMember(part, func(k []byte, esc bool, v []byte) bool {
		switch {
		case keyIs(k, esc, "text"):
			p.addText(v)
		case keyIs(k, esc, "inlineData"), keyIs(k, esc, "inline_data"), keyIs(k, esc, "fileData"), keyIs(k, esc, "file_data"):
			p.r.FixedPromptTokens += GeminiMediaTokens
		case keyIs(k, esc, "functionCall"), keyIs(k, esc, "function_call"),
			keyIs(k, esc, "functionResponse"), keyIs(k, esc, "function_response"),
			keyIs(k, esc, "executableCode"), keyIs(k, esc, "executable_code"),
			keyIs(k, esc, "codeExecutionResult"), keyIs(k, esc, "code_execution_result"):
			p.addRaw(v)
		}
		return true
	})
}

func (p *parser) geminiTools(v []byte) error {
	if ok, err := optional("tools", v, kindArray, "an array"); !ok {
		return err
	}
	eachElement(v, func(_ int, t []byte) bool {
		eachMember(t, func(k []byte, esc bool, decls []byte) bool {
			if keyIs(k, esc, "functionDeclarations") || keyIs(k, esc, "function_declarations") {
				eachElement(decls, func(_ int, d []byte) bool {
					eachMember(d, func(k []byte, esc bool, v []byte) bool {
						switch {
						case keyIs(k, esc, "name"), keyIs(k, esc, "description"):
							p.addText(v)
						case keyIs(k, esc, "parameters"), keyIs(k, esc, "parametersJsonSchema"), keyIs(k, esc, "parameters_json_schema"):
							p.addRaw(v)
						}
						return true
					})
					return true
				})
			}
			return true
		})
		return true
	})
	return nil
}

var generationConfigFields = []string{"maxOutputTokens", "max_output_tokens", "candidateCount", "candidate_count"}

func (p *parser) generationConfig(v []byte) error {
	if ok, err := optional("generationConfig", v, kindObject, "an object"); !ok {
		return err
	}
	var f [4][]byte
	collect(v, generationConfigFields, f[:])
	n, err := tokens("generationConfig.maxOutputTokens", either(f[0], f[1]))
	if err != nil {
		return err
	}
	p.r.MaxOutputTokens = n
	return p.choices("generationConfig.candidateCount", either(f[2], f[3]))
}
