"""An evolve judge in Python, built as a wasm component with componentize-py.

`chat-judge` asks any OpenAI-compatible vision chat endpoint (vLLM, SGLang, llama.cpp, LM
Studio, OpenAI, `evolve serve`) with prompts of its own, over the host's HTTP: the component
has no sockets, and the host lets it reach only the experiment's `[plugins] allow_hosts`.
It is where a researcher changes how a VLM is asked, in Python, without recompiling evolve.

Build (see build.sh):  componentize-py -d ../../../sdk/wit -w judge-plugin componentize app -o chat-judge.wasm
"""

import base64
import json
import re
import struct
import zlib

import wit_world
from componentize_py_types import Err
from wit_world.exports import judge
from wit_world.imports import host, types

SCHEMA = {
    "type": "object",
    "properties": {
        "base_url": {"type": "string", "description": "The endpoint's base, e.g. http://127.0.0.1:8000/v1."},
        "model": {"type": "string", "description": "The model to ask."},
    },
    "required": ["base_url", "model"],
    "additionalProperties": False,
}

# This instance's config (one component instance is one plugin instance).
CONFIG: dict = {}


def png(image: types.Image) -> bytes:
    """The image as a PNG file (no compression library is needed beyond zlib)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    stride = 3 * image.width
    rows = b"".join(b"\x00" + image.rgb[y * stride : (y + 1) * stride] for y in range(image.height))
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def ask(content: list) -> str:
    """One chat completion; the reply's text. HTTP failures are the host's to retry."""
    body = json.dumps({"model": CONFIG["model"], "messages": [{"role": "user", "content": content}]})
    request = host.HttpRequest(
        method="POST",
        url=CONFIG["base_url"].rstrip("/") + "/chat/completions",
        headers=[("content-type", "application/json")],
        body=body.encode(),
    )
    try:
        response = host.http(request)
    except Err as e:
        raise Err(types.PluginError_Transient(f"the chat endpoint is unreachable: {e.value}"))
    if response.status == 429 or response.status >= 500:
        raise Err(types.PluginError_Transient(f"the chat endpoint answered {response.status}"))
    if response.status != 200:
        raise Err(types.PluginError_Failed(f"the chat endpoint answered {response.status}: {response.body[:200]!r}"))
    try:
        return json.loads(response.body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError) as e:
        raise Err(types.PluginError_Failed(f"not a chat completion: {e}"))


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def picture(image: types.Image) -> dict:
    data = base64.b64encode(png(image)).decode()
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


class Judge(wit_world.exports.Judge):
    def info(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="chat-judge",
            version="0.1.0",
            description="A VLM judge over an OpenAI-compatible chat endpoint, asked with prompts written in Python.",
            config_schema=json.dumps(SCHEMA),
        )

    def init(self, config: str, ctx: types.Context) -> None:
        CONFIG.update(json.loads(config))
        if not CONFIG["base_url"].startswith(("http://", "https://")):
            raise Err(types.PluginError_InvalidConfig(f"base_url must be an http(s) URL, not {CONFIG['base_url']!r}"))

    def get_limits(self) -> types.Limits:
        return types.Limits(concurrency=1, requests_per_minute=None)

    def compare(self, prompt: str, images: list[types.Image], seed: int) -> types.Verdict:
        if len(images) != 2:
            raise Err(types.PluginError_Unsupported("chat-judge compares two images at a time"))
        question = (
            f'Which image matches the text description "{prompt}" better: the first (A) or the second (B)? '
            'Answer "(A) is better" or "(B) is better".'
        )
        reply = ask([text(question), picture(images[0]), picture(images[1])])
        found = re.search(r"\(([AB])\)", reply)
        if not found:
            raise Err(types.PluginError_Billed(f"the reply names neither image: {reply[:200]!r}"))
        return types.Verdict(choice=types.Choice_Best(0 if found.group(1) == "A" else 1), confidence=1.0, raw=reply)

    def expand(self, prompt: str, n: int, seed: int, after: judge.Comparison | None) -> list[str]:
        question = (
            f'Based on the text description "{prompt}", generate {n} more diverse text descriptions '
            "of the same kind, each different from it and from each other. Answer with a JSON list of strings."
        )
        reply = ask([text(question)])
        try:
            prompts = [p for p in json.loads(reply) if isinstance(p, str) and p.strip()]
        except ValueError:
            raise Err(types.PluginError_Billed(f"the reply is not a JSON list: {reply[:200]!r}"))
        return prompts[:n]

    def mutate(self, recent: list[str], seed: int, after: judge.Comparison | None) -> str:
        question = (
            "Write one new text description of an image, completely unrelated to these: "
            f"{json.dumps(recent)}. Answer with the description only."
        )
        return ask([text(question)]).strip().strip('"')
