"""Quantization backends, one method per file, found through ``BACKENDS``.

A backend checks a spec against the model before any work starts (``problems``), and
``quantize`` writes the artifact into a folder the caller renames into place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from quant.base_model import BaseModel
from quant.calibration import CalibrationSet
from quant.spec import QuantSpec
from quantsuite.registry import Registry

BACKENDS: Registry = Registry("quantization method")
BACKENDS.lazy("gguf", "quant.backends.gguf")
BACKENDS.lazy("gptq", "quant.backends.gptq")
BACKENDS.lazy("awq", "quant.backends.awq")
BACKENDS.lazy("bnb", "quant.backends.bnb")


@dataclass
class QuantContext:
    """Everything a backend may need beside the spec (config object, not a keyword list)."""

    base: BaseModel
    work_dir: Path                      # per-model cache shared by variants (F16 GGUF, imatrix)
    calibration: CalibrationSet | None = None
    threads: int = 0
    model_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuantResult:
    artifact: str                       # file or folder name inside the variant folder
    files: list[str]                    # files to hash (relative)
    runtime: list[str]
    bits_per_weight: float
    n_params: int
    tool_versions: dict[str, str]
    imatrix: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


class QuantBackend:
    name: ClassVar[str]
    needs_calibration: ClassVar[bool] = False

    def problems(self, spec: QuantSpec, ctx_config: dict[str, Any]) -> list[str]:
        """Reasons this spec cannot be made for a model with this config (empty = fine)."""
        return []

    def quantize(self, spec: QuantSpec, ctx: QuantContext, out: Path) -> QuantResult:
        raise NotImplementedError
