"""Serving configuration, CPU-derived defaults, and resolving what the user asked to serve.

Defaults follow llama.cpp's own: one thread per *physical* core this process may use
(hyper-threads only add contention to memory-bound generation), and the same count for
prompt processing unless ``n_threads_batch`` says otherwise. On a machine shared with other
busy processes, fewer threads than cores is often much faster: llama.cpp's threads spin
at barriers, so one descheduled thread stalls all of them. The context
defaults to the model's training context capped at ``DEFAULT_MAX_CTX``, because the KV
cache is allocated in full at load time and a 128k context would cost gigabytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from quantsuite.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_CTX = 4096
DEFAULT_BATCH = 512
API_KEY_ENV = "QUANTSUITE_API_KEY"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class ServeConfig:
    """Everything ``run_server`` needs; ``None`` means "pick a default for this machine"."""

    model: str | Path                       # manifest.json, variant folder, or .gguf
    host: str = DEFAULT_HOST                 # loopback unless the user says otherwise
    port: int = DEFAULT_PORT
    api_key: str | None = None               # None: read $QUANTSUITE_API_KEY; "" disables
    n_ctx: int | None = None
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_batch: int | None = None
    max_tokens_limit: int | None = None      # per request; None: the context size
    max_body_bytes: int = 1_000_000          # larger request bodies get 413
    max_queue: int = 64                      # waiting requests beyond this get 503
    model_id: str | None = None              # the name clients send; default from the manifest
    chat_template: str | Path | None = None  # Jinja file overriding the GGUF's template
    log_level: str = "info"
    access_log: bool = True
    shutdown_timeout: float = 5.0            # seconds in-flight requests get on SIGINT/SIGTERM
    extra: dict = field(default_factory=dict)

    def resolved(self, n_ctx_train: int = 0) -> "ServeConfig":
        """A copy with every machine-dependent default filled in and values checked."""
        phys, _logical = cpu_counts()
        n_ctx = self.n_ctx or (min(n_ctx_train, DEFAULT_MAX_CTX) if n_ctx_train > 0 else DEFAULT_MAX_CTX)
        if n_ctx < 16:
            raise UserError(f"context size {n_ctx} is too small (minimum 16)")
        if n_ctx_train and n_ctx > n_ctx_train:
            raise UserError(f"context size {n_ctx} exceeds the model's training context {n_ctx_train}")
        n_batch = min(self.n_batch or DEFAULT_BATCH, n_ctx)
        limit = self.max_tokens_limit or n_ctx
        api_key = self.api_key if self.api_key is not None else os.environ.get(API_KEY_ENV) or None
        for name, v in (("threads", self.n_threads), ("batch threads", self.n_threads_batch),
                        ("batch size", self.n_batch), ("max tokens", self.max_tokens_limit)):
            if v is not None and v < 1:
                raise UserError(f"{name} must be at least 1 (got {v})")
        if not 0 < self.port < 65536:
            raise UserError(f"port {self.port} is out of range")
        n_threads = self.n_threads or phys
        return replace(self, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=self.n_threads_batch or n_threads,
                       n_batch=n_batch,
                       max_tokens_limit=min(limit, n_ctx), api_key=api_key or None)


def cpu_counts() -> tuple[int, int]:
    """(physical cores, logical CPUs) usable by this process (respects taskset/cgroups affinity)."""
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        logical = os.cpu_count() or 1
    try:
        import psutil

        phys = psutil.cpu_count(logical=False) or logical
        total = psutil.cpu_count(logical=True) or logical
        phys = max(1, round(phys * logical / total))  # scale down if the affinity mask is narrower
    except Exception:
        phys = logical
    return max(1, min(phys, logical)), max(1, logical)


@dataclass
class Target:
    """A resolved thing to serve: the GGUF file, the id clients use, the manifest if any."""

    gguf: Path
    model_id: str
    manifest: object | None = None   # quant.manifest.VariantManifest


def resolve_target(what: str | Path, model_id: str | None = None) -> Target:
    """Accept a manifest.json, a variant folder, or a .gguf file; refuse non-GGUF variants."""
    from quant.manifest import MANIFEST_NAME, VariantManifest

    p = Path(what).expanduser()
    if p.is_dir() and not (p / MANIFEST_NAME).exists():
        raise UserError(f"{p} has no {MANIFEST_NAME}; pass a variant folder, its manifest, or a .gguf file")
    if p.is_dir() or p.name.endswith(".json"):
        m = VariantManifest.load(p)
        if "llamacpp" not in (m.runtime or []):
            raise UserError(f"variant {m.variant_id} runs on {', '.join(m.runtime) or 'no runtime'}, "
                            "not llama.cpp: only GGUF variants can be served")
        gguf = m.artifact_path
        if not gguf.is_file():
            raise UserError(f"variant {m.variant_id}: its GGUF file {gguf} is missing")
        return Target(gguf, model_id or f"{m.model}/{m.variant_id}", m)
    if not p.exists():
        raise UserError(f"nothing to serve at {p} (expected a manifest.json, variant folder or .gguf)")
    with open(p, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{p} is not a GGUF file or a variant manifest")
    return Target(p.absolute(), model_id or p.stem)  # not resolve(): keep a symlink's folder


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")
