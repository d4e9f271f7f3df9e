package translate

// The dialect-neutral model of a request and a response. Every source decodes into
// it and every target encodes from it, so n sources and m targets take n+m pieces
// of code, not n*m. It holds slices of the app's body (JSON tokens and raw values),
// not decoded copies: see jstr.

type role uint8

const (
	roleUser role = iota + 1
	roleAssistant
)

type partKind uint8

const (
	partText partKind = iota + 1
	partImage
	partToolCall
	partToolResult
)

// part is one piece of a message.
type part struct {
	kind partKind
	// text: a string token.
	text jstr

	// image: either url (an http(s) URL token) or mediaType plus data (the base64
	// payload as JSON string content: between the quotes, escapes kept).
	url       jstr
	mediaType string
	data      []byte
	detail    param // OpenAI's image detail

	// tool call: id, name and arguments, either as a JSON value (argsValue,
	// Anthropic and Gemini) or as a string token holding JSON text (argsText,
	// OpenAI). A tool result: id (and name when the source says it), content as
	// parts (text and images), or a JSON object (Gemini's functionResponse).
	id        jstr
	name      jstr
	argsValue []byte
	argsText  jstr
	content   []part
	object    []byte
	isError   bool
}

type message struct {
	role  role
	parts []part
}

type tool struct {
	name, description jstr
	// schema is the parameters as JSON Schema (a raw value), nil for none.
	schema []byte
}

type choiceMode uint8

const (
	choiceUnset choiceMode = iota
	choiceAuto
	choiceNone
	choiceRequired
	choiceNamed // call the tool named in toolChoiceName
)

type formatKind uint8

const (
	formatUnset formatKind = iota
	formatText
	formatJSONObject
	formatJSONSchema
)

type format struct {
	kind        formatKind
	name        jstr
	description jstr
	schema      []byte
	strict      bool
}

// request is what an app asked for, in no dialect.
// param is an optional request parameter: its raw JSON value (nil when not stated)
// and the app's name for it, to report when a target drops it.
type param struct {
	v    []byte
	name string
}

func (p param) set() bool { return len(p.v) > 0 }

type request struct {
	system   []jstr
	messages []message
	tools    []tool

	toolChoice     choiceMode
	toolChoiceName jstr
	// oneToolCall: the app asked for at most one tool call per turn
	// (parallel_tool_calls: false, disable_parallel_tool_use: true).
	oneToolCall param

	stop param // the sequences in stopSeqs
	// stopSeqs are string tokens.
	stopSeqs []jstr
	// Sampling parameters: raw JSON numbers.
	temperature, topP, topK, presencePenalty, frequencyPenalty, seed param

	maxTokens    int64 // 0: not stated
	n            int64 // 0: not stated (one)
	nName        string
	stream       bool
	includeUsage bool // an OpenAI chat app asked for the usage chunk
	format       format
	user         param // a string token

	dropped []string // source fields left out or narrowed, as reported
}

type finishReason uint8

const (
	finishUnknown finishReason = iota
	finishStop
	finishStopSequence
	finishLength
	finishToolCalls
	finishContentFilter
	finishError
)

// choice is one generated answer.
type choice struct {
	index  int
	parts  []part // text and tool calls
	finish finishReason
	// stopSequence is the sequence that ended it, when the provider says.
	stopSequence jstr
}

type response struct {
	id, model jstr
	choices   []choice
}
