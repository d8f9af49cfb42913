"""``quantsuite chat``: a terminal conversation with a variant, for a quick try.

Reads one user message per line from stdin and streams the reply to stdout; ``/exit`` (or
end of input) quits, ``/reset`` forgets the conversation. It drives the same ``Engine`` and
sandboxed chat template as the server, without HTTP, so what you see here is what the API
returns. Piped input works (``echo "hi" | quantsuite chat variant``): the "> " prompt is
only printed when stdin is a terminal, so piped output contains just the replies. Old turns
are dropped when the conversation no longer fits the context.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from quantsuite.errors import UserError
from quantsuite.serve.protocol import ApiError, GenParams

EXIT_COMMANDS = {"/exit", "/quit", "/bye"}


def chat_loop(target: Any, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
              system: str | None = None, max_tokens: int = 512, temperature: float = 0.7,
              n_ctx: int | None = None, n_threads: int | None = None, seed: int | None = None,
              engine: Any = None) -> int:
    """Run the loop; returns the number of replies given. ``target``: manifest, folder or .gguf.

    ``engine`` may be passed in (tests, or a caller that already loaded the model); it is
    then not stopped at the end.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    own = engine is None
    if own:
        from quantsuite.serve.app import build
        from quantsuite.serve.config import ServeConfig

        engine, _cfg = build(ServeConfig(model=target, n_ctx=n_ctx, n_threads=n_threads))
    engine.start()
    interactive = hasattr(stdin, "isatty") and stdin.isatty()
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    replies = 0
    try:
        if interactive:
            stdout.write(f"chatting with {engine.model_id} (/exit to quit, /reset to start over)\n")
        while True:
            if interactive:
                stdout.write("> ")
                stdout.flush()
            line = stdin.readline()
            if not line:
                break
            text = line.rstrip("\r\n")
            cmd = text.strip().lower()
            if cmd in EXIT_COMMANDS:
                break
            if cmd == "/reset":
                history = history[:1] if system else []
                continue
            if not text.strip():
                continue
            history.append({"role": "user", "content": text})
            reply = _reply(engine, history, GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed,
                                                      stop=list(engine.template.stops)), stdout)
            history.append({"role": "assistant", "content": reply})
            replies += 1
    except KeyboardInterrupt:
        stdout.write("\n")
    finally:
        if own:
            engine.stop()
    return replies


def _reply(engine: Any, history: list[dict[str, str]], params: GenParams, out: TextIO) -> str:
    """Stream one reply; drop the oldest turns while the prompt overflows the context."""
    from quantsuite.serve.template import TemplateInputError

    while True:
        try:
            prompt = engine.template.template.render(history)
        except TemplateInputError as e:
            raise UserError(f"the chat template refused the conversation: {e}") from None
        parts: list[str] = []
        for ev in engine.run_sync(prompt, params, stream=True):
            if ev[0] == "delta":
                parts.append(ev[1])
                out.write(ev[1])
                out.flush()
            elif ev[0] == "error":
                err: ApiError = ev[1]
                if err.code == "context_length_exceeded" and _drop_oldest_turn(history):
                    break
                raise UserError(err.message)
            elif ev[0] == "done":
                out.write("\n")
                out.flush()
                return "".join(parts)


def _drop_oldest_turn(history: list[dict[str, str]]) -> bool:
    """Remove the oldest user/assistant pair (keeping a system message); False if nothing left."""
    start = 1 if history and history[0]["role"] == "system" else 0
    if len(history) - start <= 1:
        return False
    del history[start:start + 2]
    return True
