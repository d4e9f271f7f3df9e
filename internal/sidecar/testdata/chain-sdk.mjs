// The npm SDKs streaming through a chain alias: `node chain-sdk.mjs openai <url>`
// streams a chat completion with the openai package, `... anthropic <url>` a
// message with @anthropic-ai/sdk. It prints the answer's text and how it ended,
// and fails on anything the SDK cannot parse.
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";

const [mode, base] = process.argv.slice(2);
const prompt = [{ role: "user", content: "Say hello" }];
let text = "";
let end = "";
if (mode === "openai") {
  const client = new OpenAI({ baseURL: base + "/v1", apiKey: "app-placeholder", maxRetries: 0 });
  const stream = await client.chat.completions.create({ model: "chat", messages: prompt, stream: true });
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      text += choice.delta.content ?? "";
      end = choice.finish_reason ?? end;
    }
  }
} else {
  const client = new Anthropic({ baseURL: base, apiKey: "app-placeholder", maxRetries: 0 });
  const msg = await client.messages.stream({ model: "chat", max_tokens: 50, messages: prompt }).finalMessage();
  text = msg.content.map((b) => b.text ?? "").join("");
  end = msg.stop_reason ?? "";
}
console.log(JSON.stringify({ text, end }));
