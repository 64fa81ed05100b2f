"""A fast fake LLM provider for ``bench.proxy``: OpenAI's chat completions on loopback, in a
process of its own, so it never competes with the load generator for one interpreter.

``python -m bench.fake_upstream --port N`` answers ``POST …/chat/completions`` at once:
a JSON completion, or (``"stream": true``) an SSE stream of a few chunks, the usage chunk
and ``data: [DONE]``, each answer with a generation id of its own (so every proxied call
is one usage event) and usage of 12 prompt and 3 completion tokens. It is a few lines over
an asyncio protocol rather than an ASGI app: a benchmark's reference must cost as little
as it can, and uvicorn with an ASGI app spent about ten times the CPU per request. It runs
on the loop the server runs on (uvloop where installed).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
from typing import cast

import msgspec

from bench.harness import run_loop

PROMPT_TOKENS, COMPLETION_TOKENS = 12, 3
TEXT_PIECES = ("Par", "is", ".")


class _Request(msgspec.Struct):
    model: str = "google/gemini-3.0-flash"
    stream: bool = False


_decode = msgspec.json.Decoder(_Request).decode
_encode = msgspec.json.encode
_ids = itertools.count(1)
_prefix = f"gen-bench-{os.getpid()}-"
_USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
}


def completion(model: str) -> bytes:
    return _encode(
        {
            "id": f"{_prefix}{next(_ids)}",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(TEXT_PIECES)},
                    "finish_reason": "stop",
                }
            ],
            "usage": _USAGE,
        }
    )


def stream(model: str) -> bytes:
    """The whole SSE body; the chunks go out in one write (a fast provider)."""
    gen_id = f"{_prefix}{next(_ids)}"

    def chunk(delta: dict[str, str], finish: str | None, **extra: object) -> bytes:
        body = {
            "id": gen_id,
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + _encode(body) + b"\n\n"

    parts = [chunk({"role": "assistant", "content": ""}, None)]
    parts += [chunk({"content": piece}, None) for piece in TEXT_PIECES]
    parts.append(chunk({}, "stop"))
    usage = {"id": gen_id, "object": "chat.completion.chunk", "model": model, "choices": []}
    parts.append(b"data: " + _encode({**usage, "usage": _USAGE}) + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def response(status: str, content_type: bytes, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n".encode()
        + b"content-type: "
        + content_type
        + b"\r\n\r\n"
        + body
    )


class FakeProvider(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: requests with a content-length, in order."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast("asyncio.Transport", transport)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip() == b"content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            request_line, body = head.split(b"\r\n", 1)[0], self.buffer[head_end + 4 : end]
            self.buffer = self.buffer[end:]
            self.transport.write(self.answer(request_line, body))

    def answer(self, request_line: bytes, body: bytes) -> bytes:
        method, path = request_line.split(b" ")[:2]
        if method != b"post" or not path.endswith(b"/chat/completions"):
            return response("200 OK", b"application/json", b'{"status":"ok"}')
        request = _decode(body)
        if request.stream:
            return response("200 OK", b"text/event-stream", stream(request.model))
        return response("200 OK", b"application/json", completion(request.model))


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeProvider, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"fake upstream on 127.0.0.1:{port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_upstream")
    parser.add_argument("--port", type=int, required=True)
    run_loop(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
