"""The child process that runs regopy: `python -m infraplan.policy.evaluator` reads one JSON
request on stdin ({"modules": [[path, text]], "input": ..., "queries": [...]}) and writes one
JSON answer ({"results": [...]} or {"error": ...}). regopy's C++ core can crash the whole
process on some policies (a segfault) and prints its errors on stdout; out here, neither
reaches the user's command."""

from __future__ import annotations

import contextlib
import json
import os
import sys


def _answer(out) -> object:
    text = str(out).strip()
    if not text or text == "undefined":
        return None
    data = json.loads(text)
    exprs = data.get("expressions") if isinstance(data, dict) else None
    return exprs[0] if exprs else None


def main() -> int:
    request = json.loads(sys.stdin.read())
    real_stdout = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # regopy prints its own errors there
    answer: dict
    try:
        from regopy import Interpreter

        interp = Interpreter()
        for path, text in request["modules"]:
            interp.add_module(path, text)
        if request.get("input") is not None:
            interp.set_input_term(json.dumps(request["input"]))
        answer = {"results": [_answer(interp.query(q)) for q in request["queries"]]}
    except json.JSONDecodeError as exc:  # regopy's own output, which it could not encode
        answer = {"error": f"regopy returned a result it could not encode ({exc}); a string built with concat() "
                           "and passed to sprintf is a known trigger in regopy 1.5"}
    except Exception as exc:  # noqa: BLE001 - regopy's RegoError, reported to the parent
        answer = {"error": str(exc)}
    with contextlib.suppress(OSError):
        os.write(real_stdout, json.dumps(answer).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
