#!/usr/bin/env python3
"""The official `openai` Python SDK against the gateway over HTTPS, trusting only the test's CA.

    GATEWAY_URL=https://127.0.0.1:9443 CA_FILE=ca.pem MODEL=sim-model \\
        ~/.cache/sagellm-venv/bin/python tests/python/openai_tls_test.py

Checks a chat completion, a streamed one (content arrives, the stream ends), the model list,
and that a client with the default roots (which do not include the test CA) is refused in the
TLS handshake. One line per check; the first failure exits non-zero.
"""

import os
import ssl
import sys

import openai

URL = os.environ["GATEWAY_URL"].rstrip("/") + "/v1"
CA = os.environ["CA_FILE"]
MODEL = os.environ["MODEL"]


def check(name, fn):
    try:
        detail = fn()
    except (AssertionError, openai.APIError) as e:
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        sys.exit(1)
    print(f"ok   {name}" + (f" ({detail})" if detail else ""))


# The SDK's own HTTP client class, trusting the test CA only.
client = openai.OpenAI(base_url=URL, api_key="none", max_retries=0,
                       http_client=openai.DefaultHttpxClient(
                           verify=ssl.create_default_context(cafile=CA), timeout=30))


def chat():
    r = client.chat.completions.create(model=MODEL, max_tokens=4,
                                       messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content, r
    assert r.usage.completion_tokens > 0, r.usage
    return f"{r.usage.completion_tokens} tokens"


def stream():
    parts = []
    with client.chat.completions.create(model=MODEL, max_tokens=4, stream=True,
                                        messages=[{"role": "user", "content": "hello"}]) as s:
        for chunk in s:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
    assert parts, "no content in the stream"
    return f"{len(parts)} chunks"


def models():
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids, ids
    return ",".join(ids)


def wrong_ca():
    other = openai.OpenAI(base_url=URL, api_key="none", max_retries=0,
                          http_client=openai.DefaultHttpxClient(timeout=30))
    try:
        other.models.list()
    except openai.APIConnectionError as e:
        cause = repr(e.__cause__ or e)
        assert "CERTIFICATE_VERIFY_FAILED" in cause or "certificate" in cause.lower(), cause
        return "handshake refused"
    raise AssertionError("a client without the test CA got an answer")


check("chat completion over https", chat)
check("streamed chat completion over https", stream)
check("models over https", models)
check("wrong CA refused", wrong_ca)
