"""GGUF variants through llama.cpp: HF -> F16 GGUF -> llama-quantize [--imatrix].

All tools come from one llama.cpp build that matches the pinned llama-cpp-python
(scripts/build_llama_cpp.sh): ``convert_hf_to_gguf.py`` from its sources, and the
``llama-imatrix`` / ``llama-quantize`` binaries. The F16 conversion and the importance
matrix are computed once per base (and calibration set) and shared by every GGUF variant.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from quant.backends import BACKENDS, QuantBackend, QuantContext, QuantResult
from quant.manifest import sha256_file, tool_versions
from quant.spec import GGUF_NEEDS_IMATRIX, QuantSpec
from quant.tools import python_exe, run_tool
from quantsuite.errors import UserError
from quantsuite.paths import llama_cpp_root, llama_tool


def gguf_bits_per_weight(path: Path) -> tuple[float, int]:
    """(bits per weight over all tensors, number of weights), read from the tensor table."""
    from gguf import GGUFReader

    try:
        r = GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure means a corrupt file
        raise UserError(f"{path.name} is not a readable GGUF file ({type(e).__name__})") from None
    n_el = sum(int(t.n_elements) for t in r.tensors)
    n_b = sum(int(t.n_bytes) for t in r.tensors)
    return (8.0 * n_b / n_el if n_el else 0.0), n_el


def _atomic(src_tmp: Path, dst: Path) -> Path:
    os.replace(src_tmp, dst)
    return dst


@BACKENDS.register("gguf")
class GGUFBackend(QuantBackend):
    name = "gguf"

    def problems(self, spec: QuantSpec, model_config: dict[str, Any]) -> list[str]:
        out = []
        if spec.scheme in GGUF_NEEDS_IMATRIX and not spec.p.get("imatrix"):
            out.append(f"{spec.variant_id}: {spec.scheme} needs an importance matrix (set imatrix: true)")
        return out

    # -- shared intermediates -------------------------------------------------------
    def convert(self, ctx: QuantContext, outtype: str = "f16") -> Path:
        dst = ctx.work_dir / f"model-{outtype}.gguf"
        if dst.exists():
            return dst
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        src = llama_cpp_root() / "src" / "vendor" / "llama.cpp"
        tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp")
        run_tool([python_exe(), src / "convert_hf_to_gguf.py", ctx.base.path, "--outtype", outtype,
                  "--outfile", tmp], what=f"convert_hf_to_gguf ({ctx.base.name} -> {outtype})",
                 env={"PYTHONPATH": str(src / "gguf-py"), "NO_LOCAL_GGUF": ""})
        return _atomic(tmp, dst)

    def imatrix(self, ctx: QuantContext, f16: Path, chunks: int) -> tuple[Path, dict]:
        if ctx.calibration is None:
            raise UserError("an importance matrix needs calibration text (calibration: in the plan)")
        calib = ctx.calibration
        dst = ctx.work_dir / f"imatrix-{calib.sha256[:12]}-c{chunks}.gguf"
        if not dst.exists():
            txt = calib.write_text(ctx.work_dir / f"calib-{calib.sha256[:12]}.txt")
            tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp.gguf")
            run_tool([llama_tool("llama-imatrix"), "-m", f16, "-f", txt, "-o", tmp, "-c", "512",
                      "--chunks", str(chunks), "-t", str(ctx.threads or os.cpu_count()), "--no-ppl"],
                     what="llama-imatrix")
            _atomic(tmp, dst)
        return dst, {"sha256": sha256_file(dst), "file": dst.name, "chunks": chunks, "ctx": 512,
                     "calibration": calib.describe()}

    # -- the variant --------------------------------------------------------------------
    def quantize(self, spec: QuantSpec, ctx: QuantContext, out: Path) -> QuantResult:
        name = f"{ctx.base.name}-{spec.scheme}.gguf"
        target = out / name
        imat_info = None
        if spec.scheme in ("f16", "bf16", "f32"):
            shutil.copyfile(self.convert(ctx, spec.scheme), target)
        else:
            f16 = self.convert(ctx, "f16")
            cmd: list[Any] = [llama_tool("llama-quantize")]
            if spec.p.get("imatrix"):
                imat, imat_info = self.imatrix(ctx, f16, int(spec.p.get("imatrix_chunks", 32)))
                cmd += ["--imatrix", imat]
            cmd += [f16, target, spec.scheme.upper(), str(ctx.threads or os.cpu_count())]
            run_tool(cmd, what=f"llama-quantize {spec.scheme}")
        bpw, n = gguf_bits_per_weight(target)
        versions = tool_versions("llama-cpp-python", "gguf", "transformers", "torch")
        versions["llama.cpp"] = f"vendored in llama-cpp-python {versions['llama-cpp-python']}"
        return QuantResult(
            artifact=name, files=[name], runtime=["llamacpp"], bits_per_weight=bpw, n_params=n,
            tool_versions=versions, imatrix=imat_info,
            calibration=imat_info["calibration"] if imat_info else None,
        )
