"""Runtimes: one file per inference engine, all behind ``evalsuite.types.InferenceClient``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quantsuite.registry import Registry

RUNTIMES: Registry = Registry("runtime")
RUNTIMES.lazy("llamacpp", "evalsuite.runtimes.llamacpp")
RUNTIMES.lazy("hf", "evalsuite.runtimes.hf")
RUNTIMES.lazy("openai", "evalsuite.runtimes.openai_compat")
RUNTIMES.lazy("vllm", "evalsuite.runtimes.vllm")


@dataclass
class RuntimeConfig:
    """Settings shared by runtimes. ``threads=0`` means: every core of this machine."""

    n_ctx: int = 2048
    threads: int = 0
    batch_size: int = 8
    n_batch: int = 512
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_threads(self) -> int:
        import os

        return self.threads or int(os.environ.get("QUANTSUITE_THREADS", 0)) or (os.cpu_count() or 1)


def pick_runtime(manifest, wanted: str | None) -> str:
    """The asked-for runtime where the variant supports it, else the variant's preferred one
    (so ``--runtime hf`` over a mix of GGUF and HF variants moves only the HF ones)."""
    if wanted and wanted not in RUNTIMES:
        RUNTIMES.get(wanted)          # one-line error listing the known runtimes
    return wanted if wanted in manifest.runtime else manifest.runtime[0]


def open_variant(manifest, cfg: RuntimeConfig | None = None, runtime: str | None = None):
    """An InferenceClient for a variant manifest (or the base model), on its preferred runtime."""
    cfg = cfg or RuntimeConfig()
    name = runtime or manifest.runtime[0]
    if name not in manifest.runtime:
        from quantsuite.errors import UserError

        raise UserError(f"{manifest.variant_id} cannot run on runtime '{name}' (it runs on {', '.join(manifest.runtime)})")
    cls = RUNTIMES.get(name)
    return cls.from_manifest(manifest, cfg)


def endpoint_manifest(url: str):
    """A manifest standing for a running OpenAI-compatible server (generation tasks only).

    Its identity (and so the run keys) is the URL and model id; size is unknown (0), so
    reports list it but cannot place it on a size axis.
    """
    import hashlib

    from quant.manifest import VariantManifest

    model = url.split("#", 1)[1] if "#" in url else "endpoint"
    digest = hashlib.sha256(url.encode()).hexdigest()
    return VariantManifest(
        variant_id=f"endpoint-{model}", model=model, base={}, spec={"method": "endpoint", "bits": 0},
        runtime=["openai"], artifact=url, files={url: {"bytes": 0, "sha256": digest}}, size_bytes=0,
        bits_per_weight=0.0, notes=[f"served by {url.split('#')[0]}"],
    )
