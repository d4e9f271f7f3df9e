package provider

import "bytes"

// SSEEvent assembles one server-sent event from its non-blank lines, as the SSE
// specification reads them: data lines joined by LF, the last event name, comment
// lines ignored. An event whose data outgrows maxEventBytes is Over: its data is
// dropped, so it is forwarded but never parsed. StreamTracker and the translating
// stream reader (internal/translate) share it.
type SSEEvent struct {
	Name    []byte
	Data    []byte
	HasData bool
	Over    bool
}

// Line reads one non-blank line of the event.
func (e *SSEEvent) Line(line []byte) {
	if line[0] == ':' {
		return // a comment, such as DeepSeek's ": keep-alive"
	}
	field, value := line, []byte(nil)
	if c := bytes.IndexByte(line, ':'); c >= 0 {
		field, value = line[:c], line[c+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "data":
		if e.Over {
			return
		}
		if e.HasData {
			e.Data = append(e.Data, '\n')
		}
		if len(e.Data)+len(value) > maxEventBytes {
			e.Over = true
			e.Data = e.Data[:0]
			return
		}
		e.Data = append(e.Data, value...)
		e.HasData = true
	case "event":
		if len(value) <= maxEventNameBytes {
			e.Name = append(e.Name[:0], value...)
		}
	}
}

// Reset starts the next event, keeping the buffers.
func (e *SSEEvent) Reset() {
	e.Name, e.Data = e.Name[:0], e.Data[:0]
	e.HasData, e.Over = false, false
}

// Bounded collects bytes up to maxEventBytes, such as a line or an event split
// across writes; what would outgrow the bound is dropped, and Over says so until
// Reset.
type Bounded struct {
	B    []byte
	Over bool
}

// Append adds p, unless the buffer is over or would be.
func (b *Bounded) Append(p []byte) {
	if b.Over {
		return
	}
	if len(b.B)+len(p) > maxEventBytes {
		b.B, b.Over = b.B[:0], true
		return
	}
	b.B = append(b.B, p...)
}

// Reset empties the buffer, keeping its storage.
func (b *Bounded) Reset() { b.B, b.Over = b.B[:0], false }
