"""Deployment: serve a GGUF variant over an OpenAI-compatible API, pick one for a RAM budget,
chat with it in a terminal, and export it for Ollama.

Entry points (the CLI imports these lazily, so ``quantsuite --help`` never loads FastAPI or
llama.cpp):

- ``quantsuite.serve.app.run_server(ServeConfig)``: blocking HTTP server on 127.0.0.1.
- ``quantsuite.serve.pick.pick_variant(store, ram_bytes, task=None)``: best variant that fits.
- ``quantsuite.serve.chat.chat_loop(target, ...)``: stdin/stdout chat.
- ``quantsuite.serve.modelfile.write_modelfile(manifest_or_gguf)``: Ollama Modelfile.

Nothing in this package imports a heavy module at import time.
"""

from quantsuite.serve.config import ServeConfig

__all__ = ["ServeConfig"]
