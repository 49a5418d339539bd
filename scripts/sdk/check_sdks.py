"""The official Python SDKs against a running gateway: virtual keys, budgets, models,
embeddings and the Responses API, seen the way applications see them.

Starts a mock of OpenAI's embeddings and Responses wire formats (a real socket), writes a
configuration (that mock as an `openai` provider, the in-process simulator for `sim-*` chat
and messages models), runs `llm-auto-optimizer serve`, and drives it with `openai` and
`anthropic`. Exits non-zero on the first failed check.

    python3 -m venv /tmp/sdkenv && /tmp/sdkenv/bin/pip install openai anthropic
    cargo build -p llm-auto-optimizer
    /tmp/sdkenv/bin/python scripts/sdk/check_sdks.py [--bin target/debug/llm-auto-optimizer]
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

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
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
[providers.sim]
kind = "simulated"
time_scale = 0.0
[routes.mock]
models = ["text-embedding-*", "gpt-4o-mini"]
provider = "mock"
[routes.sim]
models = ["sim-*"]
provider = "sim"
""")
        env = dict(os.environ, SDK_CHECK_ADMIN=ADMIN)
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
    check(ids == ["gpt-4o-mini", "text-embedding-3-large", "text-embedding-3-small"],
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


if __name__ == "__main__":
    main()
