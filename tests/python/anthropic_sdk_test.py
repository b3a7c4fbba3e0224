#!/usr/bin/env python3
"""The gateway's Anthropic Messages API (`POST /v1/messages`) through the official `anthropic`
Python SDK: plain and streamed messages, stop reasons, usage, errors, system prompts.

    python3 -m venv /tmp/venv-anth && /tmp/venv-anth/bin/pip install -r tests/python/requirements.txt
    GATEWAY_URL=http://127.0.0.1:9000 API_KEY=sk-test MODEL=sim-model \\
        /tmp/venv-anth/bin/python tests/python/anthropic_sdk_test.py [--engine]

By default the workers are `sagellm-sim`s and the checks rely on what the sim does
(tests/src/generation.rs): it generates `--output-tokens` tokens (16 by default, at least 4
needed here) capped by `max_tokens`, one SSE chunk per token, and counts the words of all
message contents as prompt tokens. `--engine`: a real model behind the gateway; only
non-empty text and valid shapes are checked. Without `API_KEY` (a gateway with no keys) the
wrong-key check is skipped. One line per check; the first failure exits non-zero.
"""

import argparse
import os
import sys

import anthropic

STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"}
PROMPT = [{"role": "user", "content": "Count from one to twenty in words, separated by spaces."}]


def check(name, fn):
    try:
        detail = fn()
    except AssertionError as e:
        print(f"FAIL {name}: {e}")
        sys.exit(1)
    except anthropic.APIError as e:
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        sys.exit(1)
    print(f"ok   {name}" + (f" ({detail})" if detail else ""))


def text_of(message):
    assert message.content, f"no content blocks: {message}"
    block = message.content[0]
    assert block.type == "text", f"first block is {block.type}, not text"
    return block.text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", action="store_true", help="a real model: no exact expectations")
    args = parser.parse_args()
    sim = not args.engine

    url = os.environ.get("GATEWAY_URL", "http://127.0.0.1:9000")
    api_key = os.environ.get("API_KEY", "")
    model = os.environ.get("MODEL", "sim-model")
    client = anthropic.Anthropic(
        base_url=url, api_key=api_key or "no-key", max_retries=0, timeout=30
    )
    print(f"gateway {url}, model {model}, anthropic {anthropic.__version__}"
          f"{' (engine mode)' if args.engine else ''}")

    def plain():
        m = client.messages.create(model=model, max_tokens=64, messages=PROMPT)
        text = text_of(m)
        assert text.strip(), "empty text"
        assert m.type == "message" and m.role == "assistant", f"{m.type} {m.role}"
        assert m.id.startswith("msg_"), f"id {m.id}"
        assert m.model == model, f"model {m.model!r} is not the requested {model!r}"
        assert m.stop_reason in STOP_REASONS, f"stop_reason {m.stop_reason!r}"
        assert m.usage.output_tokens > 0, f"usage {m.usage}"
        assert m.usage.input_tokens > 0, f"usage {m.usage}"
        if sim:
            assert m.stop_reason == "end_turn", f"stop_reason {m.stop_reason!r}"
        return f"{len(text)} chars, {m.stop_reason}, {m.usage.input_tokens}+{m.usage.output_tokens} tokens"

    check("messages.create", plain)

    def streamed():
        with client.messages.stream(model=model, max_tokens=64, messages=PROMPT) as s:
            pieces = list(s.text_stream)
            final = s.get_final_message()
        text = "".join(pieces)
        assert text.strip(), "empty streamed text"
        if sim:
            assert len(pieces) > 1, f"one piece only: {pieces!r}"
        assert text_of(final) == text, "final message text differs from the streamed pieces"
        assert final.model == model, f"model {final.model!r}"
        assert final.stop_reason in STOP_REASONS, f"stop_reason {final.stop_reason!r}"
        assert final.usage.output_tokens > 0, f"usage {final.usage}"
        if sim:
            assert final.stop_reason == "end_turn", f"stop_reason {final.stop_reason!r}"
        # Input tokens arrive only with the worker's last chunk, in `message_delta`; older SDKs
        # (0.40) keep `message_start`'s 0 instead, so they are reported, not checked.
        return (f"{len(pieces)} pieces, {final.stop_reason}, "
                f"{final.usage.input_tokens}+{final.usage.output_tokens} tokens")

    check("messages.stream", streamed)

    def capped():
        m = client.messages.create(model=model, max_tokens=4, messages=PROMPT)
        with client.messages.stream(model=model, max_tokens=4, messages=PROMPT) as s:
            final = s.get_final_message()
        for what, msg in (("create", m), ("stream", final)):
            if sim:
                assert msg.stop_reason == "max_tokens", f"{what}: stop_reason {msg.stop_reason!r}"
                assert msg.usage.output_tokens == 4, f"{what}: usage {msg.usage}"
            else:
                assert msg.stop_reason in ("max_tokens", "end_turn"), f"{what}: {msg.stop_reason!r}"
                assert msg.usage.output_tokens <= 4, f"{what}: usage {msg.usage}"
        return f"{m.stop_reason}, {final.stop_reason}"

    check("max_tokens=4 stops with max_tokens", capped)

    def bad_field():
        try:
            client.messages.create(model=model, max_tokens=0, messages=PROMPT)
        except anthropic.BadRequestError as e:
            assert e.status_code == 400, f"status {e.status_code}"
            body = e.body if isinstance(e.body, dict) else {}
            assert body.get("type") == "error", f"body {e.body!r}"
            err = body.get("error", {})
            assert err.get("type") == "invalid_request_error", f"body {e.body!r}"
            assert "max_tokens" in err.get("message", ""), f"message {err!r}"
            return err["message"]
        raise AssertionError("max_tokens=0 was accepted")

    check("max_tokens=0 is a BadRequestError", bad_field)

    def wrong_key():
        bad = anthropic.Anthropic(base_url=url, api_key=api_key + "-wrong", max_retries=0, timeout=30)
        try:
            bad.messages.create(model=model, max_tokens=8, messages=PROMPT)
        except anthropic.AuthenticationError as e:
            assert e.status_code == 401, f"status {e.status_code}"
            return str(e.body.get("error", {}).get("message")) if isinstance(e.body, dict) else None
        raise AssertionError("a wrong API key was accepted")

    if api_key:
        check("a wrong API key is an AuthenticationError", wrong_key)
    else:
        print("skip a wrong API key (no API_KEY set)")

    def system_prompt():
        words = "You are a terse assistant who answers in as few words as possible."
        m = client.messages.create(model=model, max_tokens=64, system=words, messages=PROMPT)
        assert text_of(m).strip(), "empty text"
        blocks = [{"type": "text", "text": "You are terse. "}, {"type": "text", "text": "Be exact."}]
        b = client.messages.create(
            model=model, max_tokens=64, system=blocks, messages=PROMPT, stop_sequences=["###"]
        )
        assert text_of(b).strip(), "empty text with system blocks"
        if sim:
            # The sim counts the words of every message: the system prompt must have arrived.
            base = client.messages.create(model=model, max_tokens=64, messages=PROMPT)
            extra = len(words.split())
            assert m.usage.input_tokens == base.usage.input_tokens + extra, (
                f"input tokens {m.usage.input_tokens} with the system prompt, "
                f"{base.usage.input_tokens} without (+{extra} expected)"
            )
        return f"input tokens {m.usage.input_tokens}"

    check("system prompt (string and blocks)", system_prompt)
    print("all checks passed")


if __name__ == "__main__":
    main()
