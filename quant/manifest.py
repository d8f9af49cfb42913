"""VariantManifest: the file every later stage reads instead of importing the quantizer.

A variant is a folder ``<out>/<model>/<variant_id>/`` holding its artifact(s) and
``manifest.json``. Folders are built under a temporary name and renamed into place only
when the manifest is written (``atomic_variant_dir``), so a crash or ``kill -9`` never
leaves a half variant that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from quant.spec import QuantSpec
from quantsuite.errors import UserError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
RUNTIMES = ("hf", "llamacpp", "vllm")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(root: Path, files: list[str]) -> dict[str, dict[str, Any]]:
    return {name: {"bytes": (root / name).stat().st_size, "sha256": sha256_file(root / name)} for name in sorted(files)}


@dataclass
class VariantManifest:
    variant_id: str
    model: str                      # short model name, e.g. smollm2-135m-instruct
    base: dict[str, Any]            # {path, sha256, source, note}
    spec: dict[str, Any]            # QuantSpec.to_dict()
    runtime: list[str]              # runtimes that can load it: hf, llamacpp, vllm
    artifact: str                   # main file or folder, relative to the manifest
    files: dict[str, dict[str, Any]]  # per-file bytes + sha256
    size_bytes: int
    bits_per_weight: float          # measured from the tensors, not from the name
    n_params: int = 0
    calibration: dict[str, Any] | None = None
    imatrix: dict[str, Any] | None = None
    tool_versions: dict[str, str] = field(default_factory=dict)
    command: str = ""
    created_at: str = ""
    wall_seconds: float = 0.0
    peak_rss_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    format_version: int = MANIFEST_VERSION
    path: Path | None = field(default=None, compare=False, repr=False)  # where it was read from

    # -- derived ------------------------------------------------------------------
    @property
    def quant_spec(self) -> QuantSpec:
        return QuantSpec.from_dict(self.spec)

    @property
    def method(self) -> str:
        return self.spec.get("method", "")

    @property
    def folder(self) -> Path:
        if self.path is None:
            raise ValueError("manifest has no path")
        return self.path.parent

    @property
    def artifact_path(self) -> Path:
        return self.folder / self.artifact

    @property
    def sha(self) -> str:
        """One hash for the whole variant: the sorted per-file hashes, hashed."""
        blob = json.dumps({k: v["sha256"] for k, v in self.files.items()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def size_gb(self) -> float:
        return self.size_bytes / 1e9

    # -- io --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path", None)
        return d

    def write(self, folder: Path) -> Path:
        p = folder / MANIFEST_NAME
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        os.replace(tmp, p)
        self.path = p
        return p

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path | None = None) -> "VariantManifest":
        version = int(d.get("format_version", 1))
        if version > MANIFEST_VERSION:
            raise UserError(f"{path}: manifest version {version} is newer than this quantsuite supports")
        known = {f for f in cls.__dataclass_fields__ if f != "path"}
        missing = {"variant_id", "model", "spec", "artifact", "files", "size_bytes"} - set(d)
        if missing:
            raise UserError(f"{path}: manifest lacks {', '.join(sorted(missing))}")
        m = cls(**{k: v for k, v in d.items() if k in known})
        m.path = path
        return m

    @classmethod
    def load(cls, path: str | Path) -> "VariantManifest":
        p = Path(path)
        if p.is_dir():
            p = p / MANIFEST_NAME
        if not p.exists():
            raise UserError(f"no manifest at {p}")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{p}: manifest is not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d, p.resolve())

    def verify(self) -> list[str]:
        """Re-hash every file; return one line per problem (empty = intact)."""
        problems = []
        for name, info in self.files.items():
            f = self.folder / name
            if not f.exists():
                problems.append(f"{self.variant_id}: missing {name}")
            elif f.stat().st_size != info["bytes"]:
                problems.append(f"{self.variant_id}: {name} has {f.stat().st_size} bytes, manifest says {info['bytes']}")
            elif sha256_file(f) != info["sha256"]:
                problems.append(f"{self.variant_id}: {name} sha256 differs from the manifest")
        return problems


def find_manifests(paths: list[str | Path]) -> list[VariantManifest]:
    """Manifests from files, variant folders, or trees of them (sorted, de-duplicated)."""
    out: dict[Path, VariantManifest] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            m = VariantManifest.load(p)
            out[m.path] = m
        elif (p / MANIFEST_NAME).exists():
            m = VariantManifest.load(p)
            out[m.path] = m
        elif p.is_dir():
            for mp in sorted(p.rglob(MANIFEST_NAME)):
                if any(part.startswith(".tmp-") for part in mp.parts):
                    continue
                m = VariantManifest.load(mp)
                out[m.path] = m
        else:
            raise UserError(f"no variant or manifest at {p}")
    return sorted(out.values(), key=lambda m: (m.model, m.size_bytes, m.variant_id))


@contextlib.contextmanager
def atomic_variant_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; rename it to ``final`` only if the block succeeds.

    Leftovers of killed runs (``.tmp-*`` siblings whose pid is gone) are removed first.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".tmp-{final.name}-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if not (tmp / MANIFEST_NAME).exists():
            raise RuntimeError(f"backend did not write {MANIFEST_NAME} for {final.name}")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        # the manifest's recorded path moved with the folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def tool_versions(*packages: str) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for p in ("quantsuite",) + packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out
