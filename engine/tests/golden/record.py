#!/usr/bin/env python3
"""Record the greedy outputs of a running sagellm-engine for the cases of a golden file.

    python3 engine/tests/golden/record.py URL CASES.json OUT.json "about text"

URL is the engine (served as `smollm2`, as engine/tests/real_model.rs starts it), CASES.json a
golden file whose cases (endpoint, repeat, times, then, max_tokens) are replayed; OUT.json gets
the same cases with the engine's prompt_tokens and text. Standard library only; loopback only.
"""
import json
import sys
import urllib.request


def post(url, path, body):
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.load(resp)


def main():
    url, cases_file, out_file, about = sys.argv[1:5]
    cases = json.load(open(cases_file))["cases"]
    out = []
    for case in cases:
        prompt = " ".join([case["repeat"]] * case["times"]) + case["then"]
        body = {"model": "smollm2", "max_tokens": case["max_tokens"], "temperature": 0}
        if case["endpoint"] == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            v = post(url, "/v1/chat/completions", body)
            text = v["choices"][0]["message"]["content"]
        else:
            body["prompt"] = prompt
            v = post(url, "/v1/completions", body)
            text = v["choices"][0]["text"]
        assert v["usage"]["completion_tokens"] == case["max_tokens"], v
        out.append(
            {
                "endpoint": case["endpoint"],
                "repeat": case["repeat"],
                "times": case["times"],
                "then": case["then"],
                "prompt_tokens": v["usage"]["prompt_tokens"],
                "max_tokens": case["max_tokens"],
                "text": text,
            }
        )
    with open(out_file, "w") as f:
        json.dump({"about": about, "cases": out}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
