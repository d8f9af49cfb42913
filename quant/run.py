"""Making variants: resolve the base, validate every spec, skip finished ones, build the
rest atomically, and write a manifest for each (plus one for the base itself)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from quant.backends import BACKENDS, QuantContext
from quant.base_model import BaseModel, known_config, resolve_base
from quant.calibration import load_calibration
from quant.manifest import (MANIFEST_NAME, VariantManifest, atomic_variant_dir, hash_files, now_iso,
                            tool_versions)
from quant.spec import QuantSpec
from quant.tools import PeakRss
from quantsuite.errors import UserError


@dataclass
class QuantJob:
    base: BaseModel
    spec: QuantSpec
    folder: Path


def model_config(base: BaseModel) -> dict:
    return json.loads((base.path / "config.json").read_text())


def validate(specs: list[QuantSpec], config: dict) -> list[str]:
    problems = []
    for s in specs:
        problems += BACKENDS.get(s.method)().problems(s, config)
    return problems


def is_done(folder: Path, spec: QuantSpec, base: BaseModel) -> bool:
    """Finished = a manifest for the same full spec and the same base weights."""
    mf = folder / MANIFEST_NAME
    if not mf.exists():
        return False
    try:
        m = VariantManifest.load(mf)
    except UserError:
        return False
    return m.quant_spec.key() == spec.key() and m.base.get("sha256") == base.sha256


def base_manifest(base: BaseModel, root: Path) -> VariantManifest:
    """A manifest for the unquantized base, so it sits in tables and fronts like a variant."""
    folder = root / base.name / "base"
    files = sorted(p.name for p in base.path.glob("*.safetensors"))
    if (folder / MANIFEST_NAME).exists():
        m = VariantManifest.load(folder)
        if m.base.get("sha256") == base.sha256:
            return m
    from safetensors import safe_open

    n, nbytes = 0, 0
    for f in files:
        with safe_open(base.path / f, "np") as st:
            for k in st.keys():
                sl = st.get_slice(k)
                shape = sl.get_shape()
                cnt = 1
                for d in shape:
                    cnt *= d
                n += cnt
    nbytes = sum((base.path / f).stat().st_size for f in files)
    with atomic_variant_dir(folder) as tmp:
        m = VariantManifest(
            variant_id="base", model=base.name, base=base.as_manifest_base(),
            spec={"method": "base", "bits": 32, "scheme": "fp32", "group_size": 0, "params": {}, "version": 1},
            runtime=["hf"], artifact=str(base.path), files={f"{base.path}/{k}": v for k, v in hash_files(base.path, files).items()},
            size_bytes=nbytes, bits_per_weight=8.0 * nbytes / max(n, 1), n_params=n,
            tool_versions=tool_versions("transformers", "torch", "safetensors"), created_at=now_iso(),
            notes=[base.note] if base.note else [],
        )
        m.write(tmp)
    return VariantManifest.load(folder)


def quantize_model(model_ref: str, specs: list[QuantSpec], out_root: Path, models_dir: Path,
                   calibration: dict | None = None, threads: int = 0, include_base: bool = True,
                   on_event: Callable[[str, str], None] | None = None) -> list[VariantManifest]:
    """Make every spec for one model; returns the manifests (finished ones are reused)."""
    say = on_event or (lambda kind, msg: None)
    # before any conversion: everything when the config is at hand, else what needs no model
    early = validate(specs, known_config(model_ref, models_dir))
    if early:
        raise UserError("\n".join(early))
    say("base", f"preparing base model {model_ref}")
    base = resolve_base(model_ref, models_dir)
    problems = validate(specs, model_config(base))
    if problems:
        raise UserError("\n".join(problems))
    calib = None
    if any(BACKENDS.get(s.method).needs_calibration or s.p.get("imatrix") for s in specs):
        c = calibration or {}
        calib = load_calibration(c.get("name", "wikitext2-valid"), int(c.get("n_samples", 64)))
    ctx = QuantContext(base=base, work_dir=out_root / base.name / ".work" / base.sha256[:12], calibration=calib,
                       threads=threads, model_config=model_config(base))
    out: list[VariantManifest] = []
    if include_base:
        out.append(base_manifest(base, out_root))
    for spec in specs:
        folder = out_root / base.name / spec.variant_id
        if is_done(folder, spec, base):
            say("skip", f"{base.name}/{spec.variant_id} already done")
            out.append(VariantManifest.load(folder))
            continue
        say("start", f"{base.name}/{spec.variant_id}")
        t0 = time.perf_counter()
        backend = BACKENDS.get(spec.method)()
        with atomic_variant_dir(folder) as tmp, PeakRss() as peak:
            res = backend.quantize(spec, ctx, tmp)
            files = hash_files(tmp, res.files)
            m = VariantManifest(
                variant_id=spec.variant_id, model=base.name, base=base.as_manifest_base(), spec=spec.to_dict(),
                runtime=res.runtime, artifact=res.artifact, files=files,
                size_bytes=sum(f["bytes"] for f in files.values()), bits_per_weight=round(res.bits_per_weight, 4),
                n_params=res.n_params, calibration=res.calibration, imatrix=res.imatrix,
                tool_versions=res.tool_versions, command=shlex.join(sys.argv), created_at=now_iso(),
                wall_seconds=round(time.perf_counter() - t0, 2), peak_rss_bytes=peak.bytes,
                notes=res.notes + ([base.note] if base.note else []),
            )
            m.write(tmp)
        say("done", f"{base.name}/{spec.variant_id} in {time.perf_counter() - t0:.1f}s")
        out.append(VariantManifest.load(folder))
    return out
