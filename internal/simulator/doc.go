// Package simulator is a stand-in for the AI providers (OpenAI, Anthropic, Gemini,
// DeepSeek) that every test, benchmark and demo of the limiter talks to.
//
// It is an independent implementation of the providers' wire behaviour, written from
// their public documentation, and imports nothing of the limiter or its provider
// dialects: a misreading of the wire format there is not mirrored here.
//
// What it does like the providers:
//   - auth per persona (Bearer; x-api-key or Bearer; x-goog-api-key or ?key=), and
//     each persona's error bodies and status codes;
//   - the routes of each persona, with realistic bodies and usage, and streaming as
//     each provider streams (OpenAI chunks and [DONE], the Responses API's events,
//     Anthropic's message events, Gemini's SSE with CRLF or a JSON array), flushed
//     chunk by chunk and paced by Latency;
//   - per-pool token buckets with continuous refill (capacity = limit, refilled at
//     limit per minute) for requests, tokens, input tokens and output tokens, a
//     concurrency semaphore and UTC-day caps; a request is admitted only when every
//     configured limit has room, is charged its input plus its max output tokens up
//     front, and is settled to its actual usage when it ends;
//   - rate-limit headers on every response of a pool (429s too), retry-after on 429s,
//     context-window refusals.
//
// What it adds: deterministic randomness (see Config.Seed), injected faults (Faults;
// a response refused by an injected status fault or an outage carries an
// x-sim-fault header naming it), ground-truth counters (Stats), and admin routes on
// the same handler: GET /sim/stats, PUT /sim/faults?account=<index>, POST /sim/reset,
// GET /sim/healthz. The admin routes take no credentials: serve the simulator on
// loopback only.
//
// Where it departs from the providers on purpose: Anthropic's remaining-token headers
// are exact, not rounded to thousands; n > 1 choices, prompt caching, tool calls and
// reasoning tokens are not simulated (their usage fields are present and zero); a
// legacy completions request with several prompts gets one choice. Gemini answers a
// wrong key with 400 API_KEY_INVALID and an oversized body with 400, as Gemini does.
//
// The order of checks for a model request: route, credentials, the body, the model's
// pool, outage, injected status faults, context window, limits (admission), then
// keep-alive, time to first token, connection reset, generation (with malformed and
// mid-stream faults), settlement. Token counts follow the rule documented at
// textTokens' constants in tokens.go.
package simulator
