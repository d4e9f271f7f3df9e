// The official Node SDKs as an app with no code change would use them: constructed
// with no arguments, so the key and base URL come from the env the webhook set.
// Prints one JSON line per call; the Go test checks what the sidecar served.
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";

const results = [];
const openai = new OpenAI();
const chat = await openai.chat.completions.create({
  model: "gpt-5.5",
  messages: [{ role: "user", content: "Say hello" }],
  max_tokens: 20,
});
results.push({ sdk: "openai", text: chat.choices[0]?.message?.content ?? "" });

const anthropic = new Anthropic();
const msg = await anthropic.messages.create({
  model: "claude-sonnet-4",
  max_tokens: 20,
  messages: [{ role: "user", content: "Say hello" }],
});
results.push({ sdk: "anthropic", text: msg.content.find((b) => b.type === "text")?.text ?? "" });

for (const r of results) console.log(JSON.stringify(r));
