"""The official Python SDKs against a running gateway: virtual keys, budgets, models,
embeddings, the Responses API, token counting and calls routed across providers, seen the way
applications see them.

Starts a mock of OpenAI's (embeddings, Responses, chat completions) and Anthropic's (messages,
count_tokens) wire formats on a real socket, writes a configuration (that mock as an `openai`
and as an `anthropic` provider, the in-process simulator for `sim-*` chat and messages
models), runs `llm-auto-optimizer serve`, and drives it with `openai` and `anthropic`: an
OpenAI client calling `claude-haiku-4-5` and an Anthropic client calling `gpt-4o-mini`, whole
and streamed, go through the gateway's protocol translation. Exits non-zero on the first failed
check. `cargo xtask ci` runs it (scripts/ci/install-tools.sh makes the venv):

    python3 -m venv target/sdk-venv && target/sdk-venv/bin/pip install openai anthropic
    cargo build -p llm-auto-optimizer
    target/sdk-venv/bin/python scripts/sdk/check_sdks.py [--bin target/debug/llm-auto-optimizer]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai

ADMIN = "sdk-check-admin-token"
USAGE = {
    "input_tokens": 1000,
    "input_tokens_details": {"cached_tokens": 400},
    "output_tokens": 300,
    "output_tokens_details": {"reasoning_tokens": 100},
    "total_tokens": 1300,
}


def response_object(status="completed", usage=None):
    return {
        "id": "resp_sdk_1", "object": "response", "created_at": 1764547200,
        "status": status, "model": "gpt-4o-mini-2024-07-18", "error": None,
        "incomplete_details": None, "instructions": None, "metadata": {},
        "parallel_tool_calls": True, "temperature": 1.0, "tool_choice": "auto", "tools": [],
        "top_p": 1.0,
        "output": [] if status != "completed" else [{
            "type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello there", "annotations": []}],
        }],
        "usage": usage,
    }


class Mock(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, body, status=200, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def sse(self, events):
        text = "".join(events)
        return self.reply(text.encode(), content_type="text/event-stream")

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if self.path == "/v1/messages/count_tokens":
            return self.reply({"input_tokens": 14})
        if self.path == "/v1/messages":
            # Anthropic's wire format: a tool call answer, with prompt-cache usage.
            usage = {"input_tokens": 472, "cache_creation_input_tokens": 100,
                     "cache_read_input_tokens": 2048, "output_tokens": 89}
            if request.get("stream"):
                def event(kind, body):
                    return f"event: {kind}\ndata: {json.dumps({'type': kind, **body})}\n\n"
                return self.sse([
                    event("message_start", {"message": {
                        "id": "msg_1", "type": "message", "role": "assistant",
                        "model": "claude-haiku-4-5-20251001", "content": [], "stop_reason": None,
                        "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}}),
                    event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
                    event("ping", {}),
                    event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Checking"}}),
                    event("content_block_stop", {"index": 0}),
                    event("content_block_start", {"index": 1, "content_block": {
                        "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
                    event("content_block_delta", {"index": 1, "delta": {
                        "type": "input_json_delta", "partial_json": "{\"city\": "}}),
                    event("content_block_delta", {"index": 1, "delta": {
                        "type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
                    event("content_block_stop", {"index": 1}),
                    event("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                            "usage": {"output_tokens": 89}}),
                    event("message_stop", {}),
                ])
            return self.reply({
                "id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-haiku-4-5-20251001",
                "content": [{"type": "text", "text": "Checking"},
                            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                             "input": {"city": "Paris"}}],
                "stop_reason": "tool_use", "stop_sequence": None, "usage": usage,
            })
        if self.path == "/v1/chat/completions":
            usage = {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
                     "prompt_tokens_details": {"cached_tokens": 1024},
                     "completion_tokens_details": {"reasoning_tokens": 0}}
            if request.get("stream"):
                def chunk(delta, finish=None, with_usage=None):
                    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                            "model": "gpt-4o-mini-2024-07-18",
                            "choices": [] if with_usage else [
                                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                            "usage": with_usage}
                    return f"data: {json.dumps(body)}\n\n"
                events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"}),
                          chunk({"content": " there"}), chunk({}, "stop")]
                if (request.get("stream_options") or {}).get("include_usage"):
                    events.append(chunk(None, with_usage=usage))
                return self.sse(events + ["data: [DONE]\n\n"])
            return self.reply({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there",
                                                     "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage,
            })
        if self.path == "/v1/embeddings":
            return self.reply({
                "object": "list", "model": request["model"],
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
                "usage": {"prompt_tokens": 8, "total_tokens": 8},
            })
        if self.path == "/v1/responses" and request.get("stream"):
            events = [
                ("response.created", {"response": response_object("in_progress")}),
                ("response.output_text.delta", {"item_id": "msg_1", "output_index": 0,
                                                "content_index": 0, "delta": "Hello", "logprobs": []}),
                ("response.completed", {"response": response_object("completed", USAGE)}),
            ]
            text = "".join(
                f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': n, **body})}\n\n"
                for n, (kind, body) in enumerate(events)
            )
            return self.reply(text.encode(), content_type="text/event-stream")
        if self.path == "/v1/responses":
            return self.reply(response_object("completed", USAGE))
        self.reply({"error": {"message": "not found", "type": "invalid_request_error"}}, 404)

    def do_GET(self):
        if self.path.startswith("/v1/responses/resp_sdk_1"):
            return self.reply(response_object("completed", USAGE))
        self.reply({"error": {"message": "not found"}}, 404)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def admin(method, url, body=None):
    request = urllib.request.Request(
        url, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")
    print(f"ok  {what}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/debug/llm-auto-optimizer")
    args = parser.parse_args()

    mock = ThreadingHTTPServer(("127.0.0.1", 0), Mock)
    threading.Thread(target=mock.serve_forever, daemon=True).start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as directory:
        config = os.path.join(directory, "config.toml")
        with open(config, "w") as file:
            file.write(f"""
[server]
listen = "127.0.0.1:{port}"
[storage]
path = "{directory}/data"
[auth]
admin_token_env = "SDK_CHECK_ADMIN"
[providers.mock]
kind = "openai"
base_url = "http://127.0.0.1:{mock.server_address[1]}/v1"
[providers.mockant]
kind = "anthropic"
base_url = "http://127.0.0.1:{mock.server_address[1]}"
api_key_env = "SDK_CHECK_UPSTREAM_KEY"
[providers.sim]
kind = "simulated"
time_scale = 0.0
[routes.mock]
models = ["text-embedding-*", "gpt-4o-mini"]
provider = "mock"
[routes.mockant]
models = ["claude-haiku-4-5"]
provider = "mockant"
[routes.sim]
models = ["sim-*"]
provider = "sim"
""")
        env = dict(os.environ, SDK_CHECK_ADMIN=ADMIN, SDK_CHECK_UPSTREAM_KEY="sk-ant-mock")
        gateway = subprocess.Popen([args.bin, "serve", "--config", config], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{base}/ready")
                    break
                except OSError:
                    time.sleep(0.1)
            run(base)
        finally:
            gateway.terminate()
            gateway.wait(timeout=10)
            mock.shutdown()


def run(base):
    made = admin("POST", f"{base}/api/keys", {"tenant": "team-a", "budget_usd": "5"})
    key = made["key"]
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)

    ids = [model.id for model in client.models.list()]
    # `sim-*` is a glob route whose models are not in the price catalog: callable, not listed.
    check(ids == ["claude-haiku-4-5", "gpt-4o-mini", "text-embedding-3-large",
                  "text-embedding-3-small"],
          f"openai models.list: {ids}")
    embedding = client.embeddings.create(model="text-embedding-3-small", input="hello")
    check(embedding.usage.prompt_tokens == 8 and len(embedding.data[0].embedding) == 3,
          "openai embeddings.create")
    response = client.responses.create(model="gpt-4o-mini", input="Say hello")
    check(response.output_text == "Hello there" and response.usage.input_tokens == 1000,
          "openai responses.create")
    kinds = [event.type for event in
             client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True)]
    check(kinds == ["response.created", "response.output_text.delta", "response.completed"],
          f"openai responses.create(stream=True): {kinds}")
    check(client.responses.retrieve("resp_sdk_1").id == "resp_sdk_1", "openai responses.retrieve")
    chat = client.chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": "hi"}])
    check(chat.choices[0].message.content, "openai chat.completions.create")
    ant = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
    message = ant.messages.create(model="sim-large", max_tokens=20,
                                  messages=[{"role": "user", "content": "hi"}])
    check(message.content[0].text, "anthropic messages.create")
    check([model.id for model in ant.models.list()] == ids, "anthropic models.list")
    cross_provider(base, key, client, ant)

    # Refusals as each SDK's exception classes.
    narrow = admin("POST", f"{base}/api/keys", {"tenant": "t", "models": ["sim-small"]})["key"]
    try:
        openai.OpenAI(base_url=f"{base}/v1", api_key=narrow, max_retries=0).embeddings.create(
            model="text-embedding-3-small", input="x")
        check(False, "model_not_allowed raises")
    except openai.PermissionDeniedError as error:
        check(error.code == "model_not_allowed", "openai PermissionDeniedError model_not_allowed")
    broke = admin("POST", f"{base}/api/keys", {"tenant": "t", "budget_usd": 0})["key"]
    try:
        anthropic.Anthropic(base_url=base, api_key=broke, max_retries=0).messages.create(
            model="sim-large", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        check(False, "budget_exceeded raises")
    except anthropic.RateLimitError as error:
        check(error.body["error"]["type"] == "budget_exceeded",
              "anthropic RateLimitError budget_exceeded")
    admin("DELETE", f"{base}/api/keys/{made['id']}")
    try:
        client.models.list()
        check(False, "a revoked key raises")
    except openai.AuthenticationError as error:
        check(error.code == "key_revoked", "openai AuthenticationError key_revoked")
    budgets = admin("GET", f"{base}/api/budgets")["budgets"]
    check(all(row["spend_usd"] >= 0 for row in budgets), "GET /api/budgets")


def cross_provider(base, key, client, ant):
    """Each SDK calling a model of the other provider, through the gateway's translation."""
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Weather in Paris?"}]
    chat = client.chat.completions.create(model="claude-haiku-4-5", messages=messages, tools=tools)
    call = chat.choices[0].message.tool_calls[0]
    check(chat.choices[0].finish_reason == "tool_calls"
          and json.loads(call.function.arguments) == {"city": "Paris"}
          and chat.usage.prompt_tokens_details.cached_tokens == 2048,
          "openai chat.completions.create served by claude-haiku-4-5")
    stream = client.chat.completions.create(model="claude-haiku-4-5", messages=messages,
                                            tools=tools, stream=True,
                                            stream_options={"include_usage": True})
    text, arguments, usage, finish = "", "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tool_call in choice.delta.tool_calls or []:
                arguments += tool_call.function.arguments or ""
            finish = choice.finish_reason or finish
    check(text == "Checking" and json.loads(arguments) == {"city": "Paris"}
          and finish == "tool_calls" and usage.completion_tokens == 89,
          "openai chat.completions.create(stream=True) served by claude-haiku-4-5")
    try:
        client.chat.completions.create(model="claude-haiku-4-5", messages=messages, n=2)
        check(False, "n=2 to an Anthropic model raises")
    except openai.BadRequestError as error:
        check("`n`" in error.message, "openai BadRequestError naming `n`")

    message = ant.messages.create(model="gpt-4o-mini", max_tokens=50, system="You are terse.",
                                  messages=[{"role": "user", "content": "Say hello"}])
    check(message.content[0].text == "Hello there" and message.stop_reason == "end_turn"
          and message.usage.cache_read_input_tokens == 1024,
          "anthropic messages.create served by gpt-4o-mini")
    with ant.messages.stream(model="gpt-4o-mini", max_tokens=50,
                             messages=[{"role": "user", "content": "Say hello"}]) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(streamed == "Hello there" and final.usage.output_tokens == 46
          and final.stop_reason == "end_turn",
          "anthropic messages.stream served by gpt-4o-mini")
    try:
        ant.messages.create(model="gpt-4o-mini", max_tokens=50, extra_body={"top_k": 5},
                            messages=[{"role": "user", "content": "hi"}])
        check(False, "top_k to an OpenAI model raises")
    except anthropic.BadRequestError as error:
        check("`top_k`" in str(error), "anthropic BadRequestError naming `top_k`")
    counted = ant.messages.count_tokens(model="claude-haiku-4-5",
                                        messages=[{"role": "user", "content": "Hello"}])
    check(counted.input_tokens == 14, "anthropic messages.count_tokens")


if __name__ == "__main__":
    main()
