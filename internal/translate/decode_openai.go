package translate

// OpenAI sources: Chat Completions (platform.openai.com/docs/api-reference/chat/create)
// and Responses (platform.openai.com/docs/api-reference/responses/create).

func decodeChat(body []byte) (*request, error) {
	d := newDecoder()
	r := d.r
	var messages []byte
	var maxTokens, maxCompletion int64
	err := eachMember(body, func(k, v []byte) error {
		var err error
		switch key := string(k); key {
		case "model":
		case "messages":
			messages = v
		case "max_tokens":
			maxTokens, err = d.count(key, v)
		case "max_completion_tokens":
			maxCompletion, err = d.count(key, v)
		case "temperature":
			r.temperature, err = d.number(key, v)
		case "top_p":
			r.topP, err = d.number(key, v)
		case "presence_penalty":
			r.presencePenalty, err = d.number(key, v)
		case "frequency_penalty":
			r.frequencyPenalty, err = d.number(key, v)
		case "seed":
			r.seed, err = d.number(key, v)
		case "n":
			r.n, err = d.count(key, v)
			r.nName = key
		case "stop":
			err = d.stops(key, v)
		case "stream":
			r.stream, err = d.boolean(key, v)
		case "stream_options":
			err = eachMember(v, func(k, v []byte) error {
				if string(k) == "include_usage" {
					r.includeUsage = isTrue(v)
				}
				return nil
			})
		case "tools":
			err = d.chatTools(v)
		case "tool_choice":
			err = d.chatToolChoice(v)
		case "parallel_tool_calls":
			if string(v) == "false" {
				r.oneToolCall = param{v: v, name: key}
			}
		case "response_format":
			err = d.chatFormat(v)
		case "user":
			var tok jstr
			tok, err = optString(key, v)
			if tok != nil {
				r.user = param{v: tok, name: key}
			}
		case "logprobs":
			if isTrue(v) {
				err = unsupported(key, "the target returns no log probabilities")
			}
		case "top_logprobs":
			if n, _ := d.count(key, v); n > 0 {
				err = unsupported(key, "the target returns no log probabilities")
			}
		case "logit_bias":
			if kindOf(v) == kindObject && string(v) != "{}" {
				err = unsupported(key, "the target has no token biases")
			}
		case "modalities":
			err = eachElement(v, func(_ int, m []byte) error {
				if !jstr(m).is("text") {
					return unsupported(key, "only text output can be translated")
				}
				return nil
			})
		case "audio":
			if !absent(v) {
				err = unsupported(key, "only text output can be translated")
			}
		case "functions", "function_call":
			if !absent(v) {
				err = unsupported(key, "the deprecated functions API is not translated; use tools")
			}
		case "web_search_options":
			if !absent(v) {
				err = unsupported(key, "web search is an OpenAI tool")
			}
		case "store":
			if isTrue(v) {
				d.drop(key)
			}
		default:
			// metadata, service_tier, reasoning_effort, verbosity, prediction,
			// prompt_cache_key, safety_identifier, and what is not known here.
			d.unknown("", k, v)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	r.maxTokens = max(maxTokens, maxCompletion)
	if kindOf(messages) != kindArray {
		return nil, malformed("messages", "messages must be an array")
	}
	err = eachElement(messages, func(_ int, m []byte) error { return d.chatMessage(m) })
	return r, err
}

func (d *decoder) chatMessage(m []byte) error {
	if kindOf(m) != kindObject {
		return malformed("messages[]", "each message must be an object")
	}
	var ro, content, toolCalls, toolCallID, refusal []byte
	err := eachMember(m, func(k, v []byte) error {
		switch key := string(k); key {
		case "role":
			ro = v
		case "content":
			content = v
		case "tool_calls":
			toolCalls = v
		case "tool_call_id":
			toolCallID = v
		case "refusal":
			refusal = v
		case "function_call":
			if !absent(v) {
				return unsupported("messages[].function_call", "the deprecated functions API is not translated; use tools")
			}
		case "audio":
			if !absent(v) {
				return unsupported("messages[].audio", "audio is not translated")
			}
		default:
			// name (the participant's), and what is not known here.
			d.unknown("messages[].", k, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case jstr(ro).is("system"), jstr(ro).is("developer"):
		// Every target takes instructions apart from the conversation: they are
		// gathered at the top, in order, wherever they appear.
		parts, err := d.chatContent(content, false)
		if err != nil {
			return err
		}
		for _, p := range parts {
			d.r.system = append(d.r.system, p.text)
		}
	case jstr(ro).is("user"):
		parts, err := d.chatContent(content, true)
		if err != nil {
			return err
		}
		d.addMessage(roleUser, parts)
	case jstr(ro).is("assistant"):
		parts, err := d.chatContent(content, false)
		if err != nil {
			return err
		}
		if kindOf(refusal) == kindString {
			parts = textPart(parts, jstr(refusal))
		}
		err = eachElement(toolCalls, func(_ int, c []byte) error {
			p, err := chatToolCall(c)
			parts = append(parts, p)
			return err
		})
		if err != nil {
			return err
		}
		d.addMessage(roleAssistant, parts)
	case jstr(ro).is("tool"):
		id, err := stringTok("messages[].tool_call_id", toolCallID)
		if err != nil {
			return err
		}
		parts, err := d.chatContent(content, false)
		if err != nil {
			return err
		}
		d.r.messages = append(d.r.messages, message{role: roleUser, parts: []part{{kind: partToolResult, id: id, content: parts}}})
	case jstr(ro).is("function"):
		return unsupported("messages[].role", "the deprecated functions API is not translated; use tools")
	default:
		return malformed("messages[].role", "role must be system, developer, user, assistant or tool")
	}
	return nil
}

// chatContent reads message content: a string, null, or an array of parts; images
// only where images is true (user messages).
func (d *decoder) chatContent(v []byte, images bool) ([]part, error) {
	const name = "messages[].content"
	switch kindOf(v) {
	case kindMissing, kindNull:
		return nil, nil
	case kindString:
		return textPart(nil, jstr(v)), nil
	case kindArray:
	default:
		return nil, malformed(name, "%s must be a string or an array of content parts, got %s", name, kindOf(v))
	}
	var parts []part
	err := eachElement(v, func(_ int, p []byte) error {
		fs, err := d.known(name+"[].", p, "type", "text", "image_url", "refusal")
		if err != nil {
			return err
		}
		typ, text, image, refusal := fs[0], fs[1], fs[2], fs[3]
		switch t := jstr(typ); {
		case t.is("text"):
			tok, err := stringTok(name+"[].text", text)
			parts = textPart(parts, tok)
			return err
		case t.is("refusal"):
			tok, err := stringTok(name+"[].refusal", refusal)
			parts = textPart(parts, tok)
			return err
		case t.is("image_url") && images:
			img, err := d.chatImage(name+"[].image_url", image)
			parts = append(parts, img)
			return err
		case t.is("image_url"):
			return unsupported(name+"[].image_url", "images are only translated in user messages")
		}
		return unsupported(name+"[].type", "content of type %s is not translated (text and images are)", jstr(typ).String())
	})
	return parts, err
}

func (d *decoder) chatImage(name string, v []byte) (part, error) {
	var url, detail []byte
	switch kindOf(v) {
	case kindString:
		url = v
	case kindObject:
		fs, err := d.known(name+".", v, "url", "detail")
		if err != nil {
			return part{}, err
		}
		url, detail = fs[0], fs[1]
	}
	tok, err := stringTok(name+".url", url)
	if err != nil {
		return part{}, err
	}
	p, err := imageURL(name+".url", tok)
	if kindOf(detail) == kindString {
		p.detail = param{v: detail, name: name + ".detail"}
	}
	return p, err
}

func chatToolCall(c []byte) (part, error) {
	var typ, id, fn []byte
	err := eachMember(c, func(k, v []byte) error {
		switch string(k) {
		case "type":
			typ = v
		case "id":
			id = v
		case "function":
			fn = v
		}
		return nil
	})
	if err != nil {
		return part{}, err
	}
	if !absent(typ) && !jstr(typ).is("function") {
		return part{}, unsupported("messages[].tool_calls[].type", "only function tool calls are translated")
	}
	p := part{kind: partToolCall}
	if p.id, err = stringTok("messages[].tool_calls[].id", id); err != nil {
		return p, err
	}
	fs := pick(fn, "name", "arguments")
	name, args := fs[0], fs[1]
	if p.name, err = stringTok("messages[].tool_calls[].function.name", name); err != nil {
		return p, err
	}
	p.argsText, err = stringTok("messages[].tool_calls[].function.arguments", args)
	return p, err
}

func (d *decoder) chatTools(v []byte) error {
	return eachElement(v, func(_ int, t []byte) error {
		fs := pick(t, "type", "function")
		typ, fn := fs[0], fs[1]
		if !jstr(typ).is("function") {
			return unsupported("tools[].type", "only function tools are translated, not %s", jstr(typ).String())
		}
		return d.functionTool("tools[].function.", fn)
	})
}

// functionTool reads a function definition: {name, description, parameters,
// strict}, the chat shape's inner object or the Responses shape itself.
func (d *decoder) functionTool(prefix string, fn []byte) error {
	var t tool
	var name []byte
	err := eachMember(fn, func(k, v []byte) error {
		var err error
		switch key := string(k); key {
		case "name":
			name = v
		case "description":
			t.description, err = optString(prefix+key, v)
		case "parameters":
			t.schema, err = schemaValue(prefix+key, v)
		case "strict":
			if isTrue(v) {
				// Schema adherence is a guarantee of OpenAI's decoder; other
				// models are given the schema but not held to it.
				d.drop(prefix + key)
			}
		case "type":
		default:
			d.unknown(prefix, k, v)
		}
		return err
	})
	if err != nil {
		return err
	}
	if t.name, err = stringTok(prefix+"name", name); err != nil {
		return err
	}
	d.r.tools = append(d.r.tools, t)
	return nil
}

func (d *decoder) chatToolChoice(v []byte) error {
	return d.toolChoiceOf("tool_choice", v, func(obj []byte) (jstr, error) {
		fn := pick(obj, "function")[0]
		name := pick(fn, "name")[0]
		return stringTok("tool_choice.function.name", name)
	})
}

// toolChoiceOf reads OpenAI's tool_choice: none, auto, required, or an object naming
// a function (whose name fnName finds in either API's shape).
func (d *decoder) toolChoiceOf(name string, v []byte, fnName func(obj []byte) (jstr, error)) error {
	r := d.r
	switch kindOf(v) {
	case kindMissing, kindNull:
		return nil
	case kindString:
		switch t := jstr(v); {
		case t.is("none"):
			r.toolChoice = choiceNone
		case t.is("auto"):
			r.toolChoice = choiceAuto
		case t.is("required"):
			r.toolChoice = choiceRequired
		default:
			return malformed(name, "%s must be none, auto, required or an object", name)
		}
		return nil
	case kindObject:
	default:
		return malformed(name, "%s must be a string or an object, got %s", name, kindOf(v))
	}
	typ := pick(v, "type")[0]
	if !jstr(typ).is("function") {
		return unsupported(name+".type", "only a named function can be required, not %s", jstr(typ).String())
	}
	tok, err := fnName(v)
	r.toolChoice, r.toolChoiceName = choiceNamed, tok
	return err
}

// chatFormat reads response_format: text, json_object, or json_schema with
// {name, description, schema, strict}.
func (d *decoder) chatFormat(v []byte) error {
	if absent(v) {
		return nil
	}
	fs := pick(v, "type", "json_schema")
	typ, schema := fs[0], fs[1]
	return d.formatOf("response_format", typ, schema)
}

// formatOf reads an OpenAI output format of type typ; def is the object holding
// name, description, schema and strict (json_schema in chat, the format itself in
// Responses).
func (d *decoder) formatOf(name string, typ, def []byte) error {
	f := &d.r.format
	switch t := jstr(typ); {
	case t.is("text"):
		f.kind = formatText
		return nil
	case t.is("json_object"):
		f.kind = formatJSONObject
		return nil
	case t.is("json_schema"):
		f.kind = formatJSONSchema
	default:
		return unsupported(name+".type", "output format %s is not translated", t.String())
	}
	return eachMember(def, func(k, v []byte) error {
		var err error
		switch string(k) {
		case "name":
			f.name, err = optString(name+".name", v)
		case "description":
			f.description, err = optString(name+".description", v)
		case "schema":
			f.schema, err = schemaValue(name+".schema", v)
		case "strict":
			f.strict = isTrue(v)
		}
		return err
	})
}
