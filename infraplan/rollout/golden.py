"""Golden prompts: answers the new version must give (chat API) before it takes traffic."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from infraplan.errors import InfraplanError
from infraplan.util.patterns import search


def check_answer(prompt: Any, text: str, output_tokens: int | None) -> list[str]:
    """What is wrong with `text` as an answer to `prompt` (a GoldenPrompt); [] when it passes."""
    problems = []
    for needle in prompt.contains:
        if needle not in text:
            problems.append(f"answer does not contain {needle!r}")
    if prompt.regex is not None and not search(prompt.regex, text):
        problems.append(f"answer does not match /{prompt.regex}/")
    if prompt.json_valid:
        try:
            json.loads(text)
        except ValueError as e:
            problems.append(f"answer is not valid JSON ({e.msg} at char {e.pos})")
    if prompt.max_output_tokens is not None:
        if output_tokens is None:
            problems.append("the server reported no completion token count")
        elif output_tokens > prompt.max_output_tokens:
            problems.append(f"answer used {output_tokens} tokens, more than {prompt.max_output_tokens}")
    return problems


@dataclass
class GoldenReport:
    """Each prompt's answer and problems; `passed` when none has any."""

    endpoint: str
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(not r["problems"] for r in self.results)

    def failures(self) -> list[str]:
        return [f"{r['prompt'][:40]!r}: {'; '.join(r['problems'])}" for r in self.results if r["problems"]]


def run_golden(endpoint: str, prompts: list[Any], *, model: str | None = None, api_key: str | None = None,
               timeout: float = 30.0) -> GoldenReport:
    """Send each golden prompt to `endpoint` (temperature 0) and check its answer."""
    from infraplan.serving.sglang_client import SGLangClient

    report = GoldenReport(endpoint)
    with SGLangClient(endpoint, api_key=api_key, timeout=timeout, retries=2) as client:
        for p in prompts:
            text, used, problems = "", None, []
            try:
                resp = client.chat([{"role": "user", "content": p.prompt}], max_tokens=p.max_tokens, model=model,
                                   temperature=0.0)
                text = ((resp.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
                used = (resp.get("usage") or {}).get("completion_tokens")
                problems = check_answer(p, text, used)
            except InfraplanError as e:
                problems = [f"request failed: {e}"]
            report.results.append({"prompt": p.prompt, "answer": text[:500], "output_tokens": used,
                                   "problems": problems})
    return report
