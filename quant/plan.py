"""Plan files: models x methods x bits x group sizes, expanded into QuantSpecs.

Example (examples/demo-plan.yaml)::

    output: variants
    calibration: {name: wikitext2-valid, n_samples: 32}
    models: [smollm2-135m-instruct]
    variants:
      - {method: gguf, schemes: [f16, q8_0, q4_k_m, q2_k]}
      - {method: gptq, bits: [4], group_size: [64]}

Validation happens here, before any work: every problem is reported, one line each.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from quant.spec import QuantSpec
from quantsuite.errors import UserError

ENTRY_KEYS = {"method", "bits", "schemes", "scheme", "group_size", "params", "models"}


@dataclass
class Plan:
    models: list[str]
    specs: dict[str, list[QuantSpec]]          # model -> specs
    output: Path = Path("variants")
    calibration: dict[str, Any] = field(default_factory=lambda: {"name": "wikitext2-valid", "n_samples": 64})
    include_base: bool = True


def _as_list(v: Any) -> list:
    if v is None:
        return [None]
    return list(v) if isinstance(v, (list, tuple)) else [v]


def parse_plan(data: dict[str, Any], source: str = "plan") -> Plan:
    if not isinstance(data, dict):
        raise UserError(f"{source}: a plan must be a mapping with 'models' and 'variants'")
    models = _as_list(data.get("models"))
    if models == [None] or not all(isinstance(m, str) for m in models):
        raise UserError(f"{source}: 'models' must list at least one model name or path")
    entries = data.get("variants")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{source}: 'variants' must be a non-empty list")
    problems: list[str] = []
    specs: dict[str, list[QuantSpec]] = {m: [] for m in models}
    for n, e in enumerate(entries, 1):
        if not isinstance(e, dict) or "method" not in e:
            problems.append(f"{source}: variants[{n}] needs a 'method'")
            continue
        extra = set(e) - ENTRY_KEYS
        if extra:
            problems.append(f"{source}: variants[{n}] has unknown key(s) {', '.join(sorted(extra))}")
            continue
        schemes = _as_list(e.get("schemes", e.get("scheme")))
        for bits, scheme, gs in itertools.product(_as_list(e.get("bits")), schemes, _as_list(e.get("group_size"))):
            try:
                spec = QuantSpec.make(e["method"], bits=bits, scheme=scheme, group_size=gs, **(e.get("params") or {}))
            except UserError as err:
                problems.append(f"{source}: variants[{n}]: {err}")
                continue
            for m in _as_list(e.get("models")) if e.get("models") else models:
                if m not in specs:
                    problems.append(f"{source}: variants[{n}] names model '{m}' that is not in 'models'")
                elif spec not in specs[m]:
                    specs[m].append(spec)
    if problems:
        raise UserError("\n".join(problems))
    calib = data.get("calibration") or {}
    if isinstance(calib, str):
        calib = {"name": calib}
    return Plan(models=models, specs=specs, output=Path(data.get("output", "variants")),
                calibration={"name": "wikitext2-valid", "n_samples": 64, **calib},
                include_base=bool(data.get("include_base", True)))


def load_plan(path: str | Path) -> Plan:
    p = Path(path)
    if not p.exists():
        raise UserError(f"plan file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{p}: broken YAML{where}: {getattr(e, 'problem', e)}") from None
    return parse_plan(data, str(p))
