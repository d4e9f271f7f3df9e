package translate

// The OpenAI Responses API as a source (platform.openai.com/docs/api-reference/
// responses/create). Only what a stateless request can say is translated: a request
// that leans on state kept at OpenAI (previous_response_id, conversation, stored
// prompts, item references) has nothing another provider could continue.

func decodeResponses(body []byte) (*request, error) {
	d := newDecoder()
	r := d.r
	var input, instructions []byte
	err := eachMember(body, func(k, v []byte) error {
		var err error
		switch key := string(k); key {
		case "model":
		case "input":
			input = v
		case "instructions":
			instructions = v
		case "max_output_tokens":
			r.maxTokens, err = d.count(key, v)
		case "temperature":
			r.temperature, err = d.number(key, v)
		case "top_p":
			r.topP, err = d.number(key, v)
		case "stream":
			r.stream, err = d.boolean(key, v)
		case "tools":
			err = eachElement(v, func(_ int, t []byte) error {
				typ := pick(t, "type")[0]
				if !jstr(typ).is("function") {
					return unsupported("tools[].type", "only function tools are translated, not %s", jstr(typ).String())
				}
				return d.functionTool("tools[].", t)
			})
		case "tool_choice":
			err = d.toolChoiceOf(key, v, func(obj []byte) (jstr, error) {
				name := pick(obj, "name")[0]
				return stringTok("tool_choice.name", name)
			})
		case "parallel_tool_calls":
			if string(v) == "false" {
				r.oneToolCall = param{v: v, name: key}
			}
		case "text":
			err = eachMember(v, func(k, v []byte) error {
				switch string(k) {
				case "format":
					typ := pick(v, "type")[0]
					return d.formatOf("text.format", typ, v)
				default:
					d.unknown("text.", k, v) // verbosity
				}
				return nil
			})
		case "user":
			var tok jstr
			tok, err = optString(key, v)
			if tok != nil {
				r.user = param{v: tok, name: key}
			}
		case "previous_response_id", "conversation", "prompt":
			if !absent(v) {
				err = unsupported(key, "it refers to state stored at OpenAI")
			}
		case "background":
			if isTrue(v) {
				err = unsupported(key, "background responses are stored at OpenAI")
			}
		case "top_logprobs":
			if n, _ := d.count(key, v); n > 0 {
				err = unsupported(key, "the target returns no log probabilities")
			}
		case "store":
			if !absent(v) && !isFalse(v) {
				// The Responses API stores by default; an explicit true is
				// reported, the default is not.
				d.drop(key)
			}
		case "stream_options":
			// include_obfuscation only pads events; translated events have none.
		default:
			// reasoning, metadata, truncation, include, service_tier,
			// max_tool_calls, prompt_cache_key, safety_identifier, and what is not
			// known here.
			d.unknown("", k, v)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	switch kindOf(instructions) {
	case kindMissing, kindNull:
	case kindString:
		if !jstr(instructions).empty() {
			r.system = append(r.system, jstr(instructions))
		}
	default:
		return nil, malformed("instructions", "instructions must be a string")
	}
	switch kindOf(input) {
	case kindMissing, kindNull:
		return nil, unsupported("input", "a request without input continues a conversation stored at OpenAI")
	case kindString:
		d.addMessage(roleUser, textPart(nil, jstr(input)))
		return r, nil
	case kindArray:
	default:
		return nil, malformed("input", "input must be a string or an array of items")
	}
	err = eachElement(input, func(_ int, item []byte) error { return d.responsesItem(item) })
	return r, err
}

func isFalse(v []byte) bool { return string(v) == "false" }

// responsesItem reads one input item: a message (typed or not), a function call or
// its output. Reasoning items are dropped: they are OpenAI's encrypted or
// summarised thinking, which no other model can read.
func (d *decoder) responsesItem(item []byte) error {
	if kindOf(item) != kindObject {
		return malformed("input[]", "each input item must be an object")
	}
	fs := pick(item, "type", "role", "content", "call_id", "name", "arguments", "output")
	typ, ro, content, callID, name, args, output := fs[0], fs[1], fs[2], fs[3], fs[4], fs[5], fs[6]
	switch t := jstr(typ); {
	case absent(typ) || t.is("message"):
		parts, err := d.responsesContent(content)
		if err != nil {
			return err
		}
		switch r := jstr(ro); {
		case r.is("system"), r.is("developer"):
			for _, p := range parts {
				if p.kind != partText {
					return unsupported("input[].content[]", "instructions can only be text")
				}
				d.r.system = append(d.r.system, p.text)
			}
		case r.is("user"):
			d.addMessage(roleUser, parts)
		case r.is("assistant"):
			for _, p := range parts {
				if p.kind != partText {
					return unsupported("input[].content[]", "assistant content can only be text")
				}
			}
			d.appendToAssistant(parts...)
		default:
			return malformed("input[].role", "role must be user, assistant, system or developer")
		}
	case t.is("function_call"):
		p := part{kind: partToolCall}
		var err error
		if p.id, err = stringTok("input[].call_id", callID); err != nil {
			return err
		}
		if p.name, err = stringTok("input[].name", name); err != nil {
			return err
		}
		if p.argsText, err = stringTok("input[].arguments", args); err != nil {
			return err
		}
		d.appendToAssistant(p)
	case t.is("function_call_output"):
		p := part{kind: partToolResult}
		var err error
		if p.id, err = stringTok("input[].call_id", callID); err != nil {
			return err
		}
		if p.content, err = d.responsesContent(output); err != nil {
			return err
		}
		d.r.messages = append(d.r.messages, message{role: roleUser, parts: []part{p}})
	case t.is("reasoning"):
		d.drop("input[].reasoning")
	case t.is("item_reference"):
		return unsupported("input[].item_reference", "it refers to state stored at OpenAI")
	default:
		return unsupported("input[].type", "input items of type %s are not translated", t.String())
	}
	return nil
}

// responsesContent reads item content: a string or an array of input_text,
// output_text, refusal and input_image parts.
func (d *decoder) responsesContent(v []byte) ([]part, error) {
	const name = "input[].content"
	switch kindOf(v) {
	case kindMissing, kindNull:
		return nil, nil
	case kindString:
		return textPart(nil, jstr(v)), nil
	case kindArray:
	default:
		return nil, malformed(name, "content must be a string or an array of parts, got %s", kindOf(v))
	}
	var parts []part
	err := eachElement(v, func(_ int, p []byte) error {
		var typ, text, refusal, imgURL, fileID, detail []byte
		_ = eachMember(p, func(k, v []byte) error {
			switch string(k) {
			case "type":
				typ = v
			case "text":
				text = v
			case "refusal":
				refusal = v
			case "image_url":
				imgURL = v
			case "file_id":
				fileID = v
			case "detail":
				detail = v
			case "annotations", "logprobs":
			default:
				d.unknown(name+"[].", k, v)
			}
			return nil
		})
		switch t := jstr(typ); {
		case t.is("input_text"), t.is("output_text"):
			tok, err := stringTok(name+"[].text", text)
			parts = textPart(parts, tok)
			return err
		case t.is("refusal"):
			tok, err := stringTok(name+"[].refusal", refusal)
			parts = textPart(parts, tok)
			return err
		case t.is("input_image"):
			if !absent(fileID) {
				return unsupported(name+"[].file_id", "it refers to a file stored at OpenAI")
			}
			tok, err := stringTok(name+"[].image_url", imgURL)
			if err != nil {
				return err
			}
			img, err := imageURL(name+"[].image_url", tok)
			if kindOf(detail) == kindString {
				img.detail = param{v: detail, name: name + "[].detail"}
			}
			parts = append(parts, img)
			return err
		}
		return unsupported(name+"[].type", "content of type %s is not translated (text and images are)", jstr(typ).String())
	})
	return parts, err
}
