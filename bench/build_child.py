"""One side of build_bench: a llama.cpp build, chosen by sys.path, generating on request.

    python bench/build_child.py JSON

JSON holds `build` (a folder holding a llama_cpp package, put first on sys.path; empty for the
installed one), `models` (GGUF paths), `threads`, `n_ctx` and `generated`. The child loads every
model, writes one JSON line about its build (version, where llama_cpp was imported from, the
libllama it loaded, `llama_print_system_info()`), then answers each line
`{"model": I, "prompt": TEXT}` on stdin with one line
`{"first": S, "total": S, "tokens": N, "prompt": P}`: seconds to the first token, seconds to the
last, tokens generated (always `generated`: the end-of-generation token does not stop it, so
both sides do the same work) and the prompt's tokens. It imports nothing of wai's, so both
sides run the same code.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def generate(llm: Any, prompt: str, limit: int) -> dict[str, float]:
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
    llm.reset()  # the whole prompt is evaluated every time: no prefix kept from the last round
    started = time.perf_counter()
    first = 0.0
    produced = 0
    for _ in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
        produced += 1
        if produced == 1:
            first = time.perf_counter() - started
        if produced >= limit:
            break
    return {"first": first, "total": time.perf_counter() - started, "tokens": produced, "prompt": len(tokens)}


def main(args: dict[str, Any]) -> None:
    if args["build"]:
        sys.path.insert(0, args["build"])
    import llama_cpp

    models = [
        llama_cpp.Llama(
            model_path=path,
            n_ctx=args["n_ctx"],
            n_batch=min(512, args["n_ctx"]),
            n_threads=args["threads"],
            n_threads_batch=args["threads"],
            n_gpu_layers=0,
            verbose=False,
        )
        for path in args["models"]
    ]
    about = {
        "version": llama_cpp.__version__,
        "package": str(llama_cpp.__file__),
        # The library really loaded (llama_cpp keeps its handle in a private name).
        "library": str(getattr(getattr(llama_cpp.llama_cpp, "_lib", None), "_name", "unknown")),
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip(),
    }
    print(json.dumps(about), flush=True)
    for line in sys.stdin:
        ask = json.loads(line)
        print(json.dumps(generate(models[ask["model"]], ask["prompt"], args["generated"])), flush=True)
    for llm in models:
        llm.close()


if __name__ == "__main__":
    del sys.path[0]  # this script's folder: nothing there may stand in for a library
    main(json.loads(sys.argv[1]))
