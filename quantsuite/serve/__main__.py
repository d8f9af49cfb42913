"""``python -m quantsuite.serve MODEL [options]``: the server without the full CLI.

Used by the integration test and ``scripts/bench_serve.py`` (a subprocess per server, as a
user would run it); its options mirror ``quantsuite serve``. User errors print one line
and exit 2, like the CLI.
"""

from __future__ import annotations

import argparse
import sys

from quantsuite.errors import UserError
from quantsuite.serve.config import DEFAULT_HOST, DEFAULT_PORT, ServeConfig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quantsuite.serve", description=__doc__.splitlines()[0])
    ap.add_argument("model", help="variant manifest.json, variant folder, or .gguf file")
    ap.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' "
                                                    "(default: $QUANTSUITE_API_KEY, else no key)")
    ap.add_argument("--ctx", type=int, default=None, help="context size (default: model's, at most 4096)")
    ap.add_argument("--threads", type=int, default=None, help="generation threads (default: physical cores)")
    ap.add_argument("--threads-batch", type=int, default=None, help="prompt threads (default: same as --threads)")
    ap.add_argument("--batch", type=int, default=None, help="prompt batch size (default 512)")
    ap.add_argument("--max-tokens", type=int, default=None, help="per-request cap (default: context size)")
    ap.add_argument("--max-body", type=int, default=1_000_000, help="request body limit in bytes")
    ap.add_argument("--max-queue", type=int, default=64, help="waiting requests before 503")
    ap.add_argument("--model-id", default=None, help="model name clients use (default model/variant)")
    ap.add_argument("--chat-template", default=None, help="Jinja file replacing the GGUF's chat template")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--no-access-log", action="store_true")
    a = ap.parse_args(argv)
    cfg = ServeConfig(model=a.model, host=a.host, port=a.port, api_key=a.api_key, n_ctx=a.ctx, n_threads=a.threads,
                      n_threads_batch=a.threads_batch, n_batch=a.batch, max_tokens_limit=a.max_tokens,
                      max_body_bytes=a.max_body, max_queue=a.max_queue, model_id=a.model_id,
                      chat_template=a.chat_template, log_level=a.log_level, access_log=not a.no_access_log)
    from quantsuite.serve.app import run_server

    try:
        run_server(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
