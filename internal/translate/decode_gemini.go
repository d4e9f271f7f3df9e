package translate

import (
	"bytes"
	"strconv"
)

// Gemini generateContent as a source (ai.google.dev/api/generate-content). Its REST
// API is proto3 JSON, which accepts both lowerCamel and snake_case member names; the
// lowerCamel one wins when a body has both, as in provider.ParseRequest.

// geminiMembers walks an object's members under their lowerCamel names.
func geminiMembers(obj []byte, fn func(key, val []byte) error) error {
	snake := false
	err := eachMember(obj, func(k, v []byte) error {
		if bytes.IndexByte(k, '_') >= 0 {
			snake = true
			return nil
		}
		return fn(k, v)
	})
	if err != nil || !snake {
		return err
	}
	camel := map[string]bool{}
	_ = eachMember(obj, func(k, _ []byte) error {
		if bytes.IndexByte(k, '_') < 0 {
			camel[string(k)] = true
		}
		return nil
	})
	return eachMember(obj, func(k, v []byte) error {
		if bytes.IndexByte(k, '_') < 0 {
			return nil
		}
		c := camelCase(k)
		if camel[string(c)] {
			return nil
		}
		return fn(c, v)
	})
}

// geminiPick is pick for Gemini bodies, which may spell members in snake_case.
func geminiPick(obj []byte, names ...string) picked { return pickFrom(obj, names, true) }

// camelCase turns snake_case into lowerCamel.
func camelCase(k []byte) []byte {
	out := make([]byte, 0, len(k))
	up := false
	for _, c := range k {
		switch {
		case c == '_':
			up = true
		case up && 'a' <= c && c <= 'z':
			out = append(out, c-'a'+'A')
			up = false
		default:
			out = append(out, c)
			up = false
		}
	}
	return out
}

// geminiCall is a function call seen in the conversation, for matching its
// response: Gemini pairs them by function name and order, the other dialects by id.
type geminiCall struct {
	id       jstr
	name     string
	answered bool
}

func decodeGemini(body []byte) (*request, error) {
	d := newDecoder()
	r := d.r
	var contents, system, tools, toolConfig, genConfig []byte
	err := geminiMembers(body, func(k, v []byte) error {
		switch key := string(k); key {
		case "contents":
			contents = v
		case "systemInstruction":
			system = v
		case "tools":
			tools = v
		case "toolConfig":
			toolConfig = v
		case "generationConfig":
			genConfig = v
		case "cachedContent":
			if !absent(v) {
				return unsupported(key, "it refers to a cache stored at Google")
			}
		default:
			// safetySettings (other providers have no such thresholds), labels,
			// and what is not known here.
			d.unknown("", k, v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := d.geminiGeneration(genConfig); err != nil {
		return nil, err
	}
	if !absent(system) {
		parts, err := d.geminiParts("systemInstruction.parts", system, nil)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			if p.kind != partText {
				return nil, unsupported("systemInstruction.parts[]", "instructions can only be text")
			}
			r.system = append(r.system, p.text)
		}
	}
	if err := d.geminiTools(tools); err != nil {
		return nil, err
	}
	if err := d.geminiToolConfig(toolConfig); err != nil {
		return nil, err
	}
	if kindOf(contents) != kindArray {
		return nil, malformed("contents", "contents must be an array")
	}
	var calls []geminiCall
	err = eachElement(contents, func(_ int, c []byte) error {
		ro := geminiPick(c, "role")[0]
		rl := roleUser
		switch t := jstr(ro); {
		case absent(ro), t.is("user"), t.is("function"):
		case t.is("model"):
			rl = roleAssistant
		default:
			return malformed("contents[].role", "role must be user or model")
		}
		parts, err := d.geminiParts("contents[].parts", c, &calls)
		if err != nil {
			return err
		}
		d.addMessage(rl, parts)
		return nil
	})
	return r, err
}

// geminiParts reads the parts of a Content object. calls tracks function calls for
// pairing responses with them; nil where none may appear.
func (d *decoder) geminiParts(name string, content []byte, calls *[]geminiCall) ([]part, error) {
	partsRaw := geminiPick(content, "parts")[0]
	var parts []part
	err := eachElement(partsRaw, func(_ int, p []byte) error {
		if kindOf(p) != kindObject {
			return malformed(name+"[]", "each part must be an object")
		}
		var text, thought, inline, call, resp []byte
		var other string
		_ = geminiMembers(p, func(k, v []byte) error {
			switch key := string(k); key {
			case "text":
				text = v
			case "thought":
				thought = v
			case "inlineData":
				inline = v
			case "functionCall":
				call = v
			case "functionResponse":
				resp = v
			case "thoughtSignature":
				// Meaningful to Gemini only; other providers sign their own.
			case "mediaResolution", "partMetadata":
				d.dropIf(name+"[]."+key, v)
			default:
				if !absent(v) {
					other = key
				}
			}
			return nil
		})
		switch {
		case other != "":
			return unsupported(name+"[]."+other, "parts of this kind are not translated (text, inline images and function calls are)")
		case kindOf(text) == kindString && isTrue(thought):
			d.drop(name + "[].thought")
		case kindOf(text) == kindString:
			parts = textPart(parts, jstr(text))
		case !absent(inline):
			fs := geminiPick(inline, "mimeType", "data")
			mime, data := fs[0], fs[1]
			mt, err := stringTok(name+"[].inlineData.mimeType", mime)
			if err != nil {
				return err
			}
			tok, err := stringTok(name+"[].inlineData.data", data)
			if err != nil {
				return err
			}
			parts = append(parts, part{kind: partImage, mediaType: mt.String(), data: tok.interior()})
		case !absent(call) && calls != nil:
			p, err := geminiFunctionCall(name, call, calls)
			if err != nil {
				return err
			}
			parts = append(parts, p)
		case !absent(resp) && calls != nil:
			p, err := geminiFunctionResponse(name, resp, *calls)
			if err != nil {
				return err
			}
			parts = append(parts, p)
		default:
			return malformed(name+"[]", "a part must hold text, inlineData, functionCall or functionResponse")
		}
		return nil
	})
	return parts, err
}

// geminiFunction reads what a functionCall and a functionResponse (field) share:
// the function's name, the object under objKey ({} when absent), and the id when
// there is one.
func geminiFunction(name, field, objKey string, v []byte, kind partKind) (p part, obj []byte, id jstr, err error) {
	fs := geminiPick(v, "name", objKey, "id")
	p = part{kind: kind}
	if p.name, err = stringTok(name+"[]."+field+".name", fs[0]); err != nil {
		return p, nil, nil, err
	}
	switch obj = fs[1]; kindOf(obj) {
	case kindMissing, kindNull:
		obj = []byte("{}")
	case kindObject:
	default:
		return p, nil, nil, malformed(name+"[]."+field+"."+objKey, "%s.%s must be an object", field, objKey)
	}
	if kindOf(fs[2]) == kindString && !jstr(fs[2]).empty() {
		id = jstr(fs[2])
	}
	return p, obj, id, nil
}

func geminiFunctionCall(name string, call []byte, calls *[]geminiCall) (part, error) {
	p, args, id, err := geminiFunction(name, "functionCall", "args", call, partToolCall)
	if err != nil {
		return p, err
	}
	p.argsValue = args
	if id != nil {
		p.id = id
	} else {
		// Gemini names no ids; ids are made from the call's position, so the
		// same conversation gets the same ids every time it is sent.
		p.id = jstr(strconv.AppendInt([]byte(`"call_`), int64(len(*calls)), 10))
		p.id = append(p.id, '"')
	}
	*calls = append(*calls, geminiCall{id: p.id, name: p.name.String()})
	return p, nil
}

func geminiFunctionResponse(name string, resp []byte, calls []geminiCall) (part, error) {
	p, response, id, err := geminiFunction(name, "functionResponse", "response", resp, partToolResult)
	if err != nil {
		return p, err
	}
	p.object = response
	if id != nil {
		p.id = id
		for i := range calls {
			if bytes.Equal(calls[i].id, p.id) {
				calls[i].answered = true
			}
		}
		return p, nil
	}
	fn := p.name.String()
	for i := range calls {
		if !calls[i].answered && calls[i].name == fn {
			calls[i].answered = true
			p.id = calls[i].id
			return p, nil
		}
	}
	return p, unsupported(name+"[].functionResponse", "it answers no earlier functionCall named %q, and the target pairs results with calls", fn)
}

func (d *decoder) geminiGeneration(v []byte) error {
	r := d.r
	const prefix = "generationConfig."
	var mime, schema, jsonSchema []byte
	err := geminiMembers(v, func(k, v []byte) error {
		var err error
		switch key := string(k); key {
		case "temperature":
			r.temperature, err = d.number(prefix+key, v)
		case "topP":
			r.topP, err = d.number(prefix+key, v)
		case "topK":
			r.topK, err = d.number(prefix+key, v)
		case "presencePenalty":
			r.presencePenalty, err = d.number(prefix+key, v)
		case "frequencyPenalty":
			r.frequencyPenalty, err = d.number(prefix+key, v)
		case "seed":
			r.seed, err = d.number(prefix+key, v)
		case "candidateCount":
			r.n, err = d.count(prefix+key, v)
			r.nName = prefix + key
		case "maxOutputTokens":
			r.maxTokens, err = d.count(prefix+key, v)
		case "stopSequences":
			err = d.stops(prefix+key, v)
		case "responseMimeType":
			mime = v
		case "responseSchema":
			schema = v
		case "responseJsonSchema":
			jsonSchema = v
		case "responseLogprobs":
			if isTrue(v) {
				err = unsupported(prefix+key, "the target returns no log probabilities")
			}
		case "logprobs":
			if !absent(v) {
				err = unsupported(prefix+key, "the target returns no log probabilities")
			}
		case "responseModalities":
			err = eachElement(v, func(_ int, m []byte) error {
				if !jstr(m).is("TEXT") && !jstr(m).is("text") {
					return unsupported(prefix+key, "only text output can be translated")
				}
				return nil
			})
		case "speechConfig", "imageConfig":
			if !absent(v) {
				err = unsupported(prefix+key, "only text output can be translated")
			}
		default:
			// thinkingConfig, mediaResolution, and what is not known here.
			d.unknown(prefix, k, v)
		}
		return err
	})
	if err != nil {
		return err
	}
	switch m := jstr(mime); {
	case absent(mime), m.is("text/plain"):
		if !absent(schema) || !absent(jsonSchema) {
			return malformed(prefix+"responseSchema", "a response schema needs responseMimeType application/json")
		}
	case m.is("application/json"):
		r.format.kind = formatJSONObject
		switch {
		case !absent(jsonSchema):
			r.format.kind = formatJSONSchema
			r.format.schema, err = schemaValue(prefix+"responseJsonSchema", jsonSchema)
		case !absent(schema):
			r.format.kind = formatJSONSchema
			r.format.schema, err = openAPIToJSONSchema(prefix+"responseSchema", schema)
		}
	default:
		return unsupported(prefix+"responseMimeType", "response type %s is not translated", m.String())
	}
	return err
}

func (d *decoder) geminiTools(v []byte) error {
	return eachElement(v, func(_ int, t []byte) error {
		return geminiMembers(t, func(k, v []byte) error {
			if string(k) != "functionDeclarations" {
				if absent(v) {
					return nil
				}
				return unsupported("tools[]."+string(k), "it is a Gemini tool")
			}
			return eachElement(v, func(_ int, fd []byte) error {
				const prefix = "tools[].functionDeclarations[]."
				var tl tool
				var name, params, jsonParams []byte
				err := geminiMembers(fd, func(k, v []byte) error {
					var err error
					switch key := string(k); key {
					case "name":
						name = v
					case "description":
						tl.description, err = optString(prefix+key, v)
					case "parameters":
						params = v
					case "parametersJsonSchema":
						jsonParams = v
					default:
						// response, responseJsonSchema, behavior.
						d.unknown(prefix, k, v)
					}
					return err
				})
				if err != nil {
					return err
				}
				if tl.name, err = stringTok(prefix+"name", name); err != nil {
					return err
				}
				switch {
				case !absent(jsonParams):
					tl.schema, err = schemaValue(prefix+"parametersJsonSchema", jsonParams)
				case !absent(params):
					tl.schema, err = openAPIToJSONSchema(prefix+"parameters", params)
				}
				d.r.tools = append(d.r.tools, tl)
				return err
			})
		})
	})
}

func (d *decoder) geminiToolConfig(v []byte) error {
	r := d.r
	var mode, allowed []byte
	_ = geminiMembers(v, func(k, v []byte) error {
		if string(k) != "functionCallingConfig" {
			d.unknown("toolConfig.", k, v) // retrievalConfig
			return nil
		}
		return geminiMembers(v, func(k, v []byte) error {
			switch string(k) {
			case "mode":
				mode = v
			case "allowedFunctionNames":
				allowed = v
			}
			return nil
		})
	})
	var names []jstr
	err := eachElement(allowed, func(_ int, n []byte) error {
		tok, err := stringTok("toolConfig.functionCallingConfig.allowedFunctionNames[]", n)
		names = append(names, tok)
		return err
	})
	if err != nil {
		return err
	}
	switch m := jstr(mode); {
	case absent(mode), m.is("MODE_UNSPECIFIED"):
	case m.is("AUTO"):
		r.toolChoice = choiceAuto
	case m.is("NONE"):
		r.toolChoice = choiceNone
	case m.is("VALIDATED"):
		// Calls are then checked against their schemas by Gemini's decoder.
		r.toolChoice = choiceAuto
		d.drop("toolConfig.functionCallingConfig.mode")
	case m.is("ANY"):
		switch len(names) {
		case 0:
			r.toolChoice = choiceRequired
		case 1:
			r.toolChoice, r.toolChoiceName = choiceNamed, names[0]
		default:
			// Any of several: offer only those, and require a call.
			r.toolChoice = choiceRequired
			kept := r.tools[:0]
			for _, t := range r.tools {
				for _, n := range names {
					if bytes.Equal(t.name, n) || t.name.String() == n.String() {
						kept = append(kept, t)
						break
					}
				}
			}
			r.tools = kept
		}
	default:
		return malformed("toolConfig.functionCallingConfig.mode", "mode must be AUTO, ANY, NONE or VALIDATED")
	}
	return nil
}
