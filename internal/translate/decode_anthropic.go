package translate

// Anthropic Messages as a source (docs.claude.com/en/api/messages).

func decodeAnthropic(body []byte) (*request, error) {
	d := newDecoder()
	r := d.r
	var messages, system []byte
	err := eachMember(body, func(k, v []byte) error {
		var err error
		switch key := string(k); key {
		case "model":
		case "messages":
			messages = v
		case "system":
			system = v
		case "max_tokens":
			r.maxTokens, err = d.count(key, v)
		case "temperature":
			r.temperature, err = d.number(key, v)
		case "top_p":
			r.topP, err = d.number(key, v)
		case "top_k":
			r.topK, err = d.number(key, v)
		case "stop_sequences":
			err = d.stops(key, v)
		case "stream":
			r.stream, err = d.boolean(key, v)
		case "tools":
			err = eachElement(v, func(_ int, t []byte) error { return d.anthropicTool(t) })
		case "tool_choice":
			err = d.anthropicToolChoice(v)
		case "metadata":
			err = eachMember(v, func(k, v []byte) error {
				if string(k) == "user_id" && kindOf(v) == kindString {
					r.user = param{v: v, name: "metadata.user_id"}
				} else {
					d.unknown("metadata.", k, v)
				}
				return nil
			})
		case "thinking":
			typ := pick(v, "type")[0]
			if !jstr(typ).is("disabled") {
				// Thinking budgets do not map onto other providers' knobs; the
				// answer comes without thinking blocks.
				d.dropIf(key, v)
			}
		case "output_config":
			err = d.anthropicOutputConfig(v)
		case "container", "mcp_servers", "context_management":
			if !absent(v) {
				err = unsupported(key, "it is an Anthropic feature")
			}
		default:
			// service_tier, inference_geo, cache_control, and what is not known.
			d.unknown("", k, v)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := d.anthropicSystem(system); err != nil {
		return nil, err
	}
	if kindOf(messages) != kindArray {
		return nil, malformed("messages", "messages must be an array")
	}
	err = eachElement(messages, func(_ int, m []byte) error { return d.anthropicMessage(m) })
	return r, err
}

// anthropicOutputConfig reads output_config: a JSON schema format is translated,
// the rest (effort) is dropped as unknown.
func (d *decoder) anthropicOutputConfig(v []byte) error {
	r := d.r
	return eachMember(v, func(k, v []byte) error {
		if string(k) != "format" {
			d.unknown("output_config.", k, v) // effort
			return nil
		}
		fs := pick(v, "type", "schema")
		typ, schema := fs[0], fs[1]
		if !jstr(typ).is("json_schema") {
			return unsupported("output_config.format.type", "output format %s is not translated", jstr(typ).String())
		}
		r.format.kind = formatJSONSchema
		var err error
		r.format.schema, err = schemaValue("output_config.format.schema", schema)
		return err
	})
}

// anthropicSystem reads the system prompt: a string or text blocks.
func (d *decoder) anthropicSystem(system []byte) error {
	r := d.r
	switch kindOf(system) {
	case kindMissing, kindNull:
	case kindString:
		if !jstr(system).empty() {
			r.system = append(r.system, jstr(system))
		}
	case kindArray:
		parts, err := d.anthropicBlocks("system", system, false)
		if err != nil {
			return err
		}
		for _, p := range parts {
			if p.kind != partText {
				return malformed("system", "system blocks must be text")
			}
			r.system = append(r.system, p.text)
		}
	default:
		return malformed("system", "system must be a string or an array of text blocks")
	}
	return nil
}

// anthropicMessage reads one of messages: a user or assistant turn whose content
// is a string or blocks.
func (d *decoder) anthropicMessage(m []byte) error {
	fs, _ := d.known("messages[].", m, "role", "content")
	ro, content := fs[0], fs[1]
	var rl role
	switch {
	case jstr(ro).is("user"):
		rl = roleUser
	case jstr(ro).is("assistant"):
		rl = roleAssistant
	default:
		return malformed("messages[].role", "role must be user or assistant")
	}
	var parts []part
	switch kindOf(content) {
	case kindString:
		parts = textPart(nil, jstr(content))
	case kindArray:
		var err error
		if parts, err = d.anthropicBlocks("messages[].content", content, true); err != nil {
			return err
		}
	default:
		return malformed("messages[].content", "content must be a string or an array of blocks")
	}
	d.addMessage(rl, parts)
	return nil
}

// anthropicBlocks reads content blocks; tool results hold blocks of their own
// (text and images), read with nested false.
func (d *decoder) anthropicBlocks(name string, v []byte, nested bool) ([]part, error) {
	var parts []part
	err := eachElement(v, func(_ int, b []byte) error {
		if kindOf(b) != kindObject {
			return malformed(name+"[]", "each content block must be an object")
		}
		var typ, text, source, id, toolName, input, toolUseID, content, isError []byte
		_ = eachMember(b, func(k, v []byte) error {
			switch string(k) {
			case "type":
				typ = v
			case "text":
				text = v
			case "source":
				source = v
			case "id":
				id = v
			case "name":
				toolName = v
			case "input":
				input = v
			case "tool_use_id":
				toolUseID = v
			case "content":
				content = v
			case "is_error":
				isError = v
			case "cache_control", "citations":
				// Prompt-cache breakpoints and citations are Anthropic's own; the
				// content is the same without them.
				d.dropIf(name+"[]."+string(k), v)
			case "signature", "thinking", "data":
			default:
				d.unknown(name+"[].", k, v)
			}
			return nil
		})
		var err error
		switch t := jstr(typ); {
		case t.is("text"):
			var tok jstr
			tok, err = stringTok(name+"[].text", text)
			parts = textPart(parts, tok)
		case t.is("image"):
			var p part
			p, err = d.anthropicImage(name+"[].source", source)
			parts = append(parts, p)
		case t.is("tool_use") && nested:
			p := part{kind: partToolCall}
			if p.id, err = stringTok(name+"[].id", id); err != nil {
				return err
			}
			if p.name, err = stringTok(name+"[].name", toolName); err != nil {
				return err
			}
			if kindOf(input) != kindObject {
				return malformed(name+"[].input", "tool_use input must be an object")
			}
			p.argsValue = input
			parts = append(parts, p)
		case t.is("tool_result") && nested:
			p := part{kind: partToolResult, isError: isTrue(isError)}
			if p.id, err = stringTok(name+"[].tool_use_id", toolUseID); err != nil {
				return err
			}
			switch kindOf(content) {
			case kindMissing, kindNull:
			case kindString:
				p.content = textPart(nil, jstr(content))
			case kindArray:
				if p.content, err = d.anthropicBlocks(name+"[].content", content, false); err != nil {
					return err
				}
			default:
				return malformed(name+"[].content", "tool_result content must be a string or an array of blocks")
			}
			parts = append(parts, p)
		case t.is("thinking"), t.is("redacted_thinking"):
			// Signed thinking only Anthropic can verify; other models do not
			// take it back.
			d.drop(name + "[].thinking")
		default:
			err = unsupported(name+"[].type", "content blocks of type %s are not translated", t.String())
		}
		return err
	})
	return parts, err
}

func (d *decoder) anthropicImage(name string, source []byte) (part, error) {
	fs := pick(source, "type", "media_type", "data", "url")
	typ, mediaType, data, url := fs[0], fs[1], fs[2], fs[3]
	switch t := jstr(typ); {
	case t.is("base64"):
		mt, err := stringTok(name+".media_type", mediaType)
		if err != nil {
			return part{}, err
		}
		tok, err := stringTok(name+".data", data)
		return part{kind: partImage, mediaType: mt.String(), data: tok.interior()}, err
	case t.is("url"):
		tok, err := stringTok(name+".url", url)
		if err != nil {
			return part{}, err
		}
		return imageURL(name+".url", tok)
	}
	return part{}, unsupported(name+".type", "image sources of type %s are not translated", jstr(typ).String())
}

func (d *decoder) anthropicTool(t []byte) error {
	var tl tool
	var typ, name []byte
	err := eachMember(t, func(k, v []byte) error {
		var err error
		switch key := string(k); key {
		case "type":
			typ = v
		case "name":
			name = v
		case "description":
			tl.description, err = optString("tools[].description", v)
		case "input_schema":
			tl.schema, err = schemaValue("tools[].input_schema", v)
		case "cache_control":
			d.dropIf("tools[].cache_control", v)
		default:
			d.unknown("tools[].", k, v)
		}
		return err
	})
	if err != nil {
		return err
	}
	if !absent(typ) && !jstr(typ).is("custom") {
		return unsupported("tools[].type", "%s is an Anthropic tool", jstr(typ).String())
	}
	if tl.name, err = stringTok("tools[].name", name); err != nil {
		return err
	}
	d.r.tools = append(d.r.tools, tl)
	return nil
}

func (d *decoder) anthropicToolChoice(v []byte) error {
	if absent(v) {
		return nil
	}
	r := d.r
	fs := pick(v, "type", "name", "disable_parallel_tool_use")
	typ, name, disable := fs[0], fs[1], fs[2]
	switch t := jstr(typ); {
	case t.is("auto"):
		r.toolChoice = choiceAuto
	case t.is("any"):
		r.toolChoice = choiceRequired
	case t.is("none"):
		r.toolChoice = choiceNone
	case t.is("tool"):
		tok, err := stringTok("tool_choice.name", name)
		if err != nil {
			return err
		}
		r.toolChoice, r.toolChoiceName = choiceNamed, tok
	default:
		return malformed("tool_choice.type", "tool_choice.type must be auto, any, tool or none")
	}
	if isTrue(disable) {
		r.oneToolCall = param{v: disable, name: "tool_choice.disable_parallel_tool_use"}
	}
	return nil
}
