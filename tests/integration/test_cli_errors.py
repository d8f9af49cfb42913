"""Bad input through the real CLI: one line on stderr naming the problem, exit code 2, no
traceback, and nothing half-written left behind. None of these may load a model."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import run_cli


@pytest.fixture
def junk(tmp_path):
    (tmp_path / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    (tmp_path / "notgguf.gguf").write_bytes(b"PK\x03\x04 a zip, not a gguf" * 10)
    (tmp_path / "broken.yaml").write_text("models: [smollm2-135m-instruct\nvariants: {\n")
    (tmp_path / "wrongtype.yaml").write_text("models: smollm2-135m-instruct\nvariants: 3\n")
    (tmp_path / "bad.sqlite").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "empty").mkdir()
    return tmp_path


CASES = [
    # (argv, words the one line must contain)
    (["quantize", "/nonexistent/model", "--method", "gguf", "--scheme", "q4_k_m"], ["model not found", "/nonexistent/model"]),
    (["quantize", "{d}/bad.gguf", "--method", "gguf", "--scheme", "q4_k_m"], ["bad.gguf", "corrupt GGUF"]),
    (["quantize", "{d}/notgguf.gguf", "--method", "gguf", "--scheme", "q4_k_m"], ["notgguf.gguf", "not a GGUF"]),
    (["quantize", "smollm2-135m-instruct", "--method", "gptq", "--bits", "5"], ["GPTQ", "not 5"]),
    (["quantize", "smollm2-135m-instruct", "--method", "bnb", "--scheme", "nf3"], ["nf3"]),
    (["quantize", "smollm2-135m-instruct", "--method", "gguf", "--scheme", "q9_k"], ["unknown type", "q9_k"]),
    (["quantize", "smollm2-135m-instruct", "--method", "nosuch"], ["unknown quantization method", "nosuch"]),
    (["quantize", "--plan", "{d}/broken.yaml"], ["broken.yaml", "YAML", "line"]),
    (["quantize", "--plan", "{d}/wrongtype.yaml"], ["wrongtype.yaml"]),
    (["quantize", "--plan", "{d}/missing.yaml"], ["plan file not found"]),
    (["quantize", "smollm2-135m-instruct", "--method", "gguf", "--bits", "x"], ["--bits"]),
    (["eval", "{d}/empty", "--tasks", "arc_easy"], ["no manifest.json"]),
    (["eval", "{d}/empty", "--tasks", "nosuchtask"], ["nosuchtask"]),
    (["eval", "--nosuch-option"], ["--nosuch-option"]),
    (["report", "{d}/missing.sqlite"], ["not found", "missing.sqlite"]),
    (["report", "{d}/bad.sqlite"], ["bad.sqlite", "not a quantsuite results store"]),
    (["ls", "--store", "{d}/bad.sqlite"], ["not a quantsuite results store"]),
    (["serve", "{d}/bad.gguf"], ["corrupt GGUF"]),
    (["nosuchcommand"], ["No such command"]),
]


@pytest.mark.parametrize("argv,words", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_is_one_line_and_exit_2(junk, argv, words):
    args = [a.format(d=junk) for a in argv]
    if args[0] == "quantize" and "--plan" not in args:
        args += ["--out", str(junk / "variants"), "--models-dir", str(junk / "models")]
    r = run_cli(*args, cwd=junk, check=False)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("quantsuite: error:")]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert len(errors) == 1, r.stderr
    for w in words:
        assert w.lower() in errors[0].lower(), errors[0]
    # nothing half-written: no variant folder, no converted base, store files untouched
    assert not any((junk / "variants").rglob("manifest.json"))
    assert not (junk / "models").exists() or not any((junk / "models").iterdir())
    assert (junk / "bad.sqlite").read_bytes() == bytes(range(256)) * 20


def test_unknown_task_fails_before_any_variant_is_opened(tmp_path):
    # a store with a run in it must not gain rows from a refused command
    from evalsuite.store import ResultsStore

    ResultsStore(tmp_path / "r.sqlite").close()
    r = run_cli("eval", str(tmp_path), "--tasks", "arc_easy,nosuchtask", "--store", str(tmp_path / "r.sqlite"),
                check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert sqlite3.connect(tmp_path / "r.sqlite").execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_ctrl_c_is_a_short_message_and_exit_130(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "quantsuite", "quantize", "smollm2-135m-instruct", "--method", "gguf",
                             "--scheme", "q4_k_m", "--out", str(tmp_path / "v"), "--models-dir", str(tmp_path / "m")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "QUANTSUITE_THREADS": "1"},
                            # a CI runner may start us with SIGINT ignored, which children inherit
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)                       # into the base conversion (transformers import and dequantization)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "rerun the same command to resume" in err and "Traceback" not in err
    assert not any((tmp_path / "v").rglob("manifest.json"))


def test_a_bug_is_one_line_unless_debugging(monkeypatch, capsys):
    from quantsuite import cli

    def boom(**kwargs):
        raise RuntimeError("unexpected state\nsecond line")

    monkeypatch.setattr(cli, "app", boom)
    monkeypatch.delenv("QUANTSUITE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1
    assert "internal error: RuntimeError: unexpected state" in err and "QUANTSUITE_DEBUG=1" in err
    monkeypatch.setenv("QUANTSUITE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main()


def test_refused_eval_leaves_no_empty_store(tmp_path):
    from quant.manifest import VariantManifest

    folder = tmp_path / "variants" / "m" / "gptq-w4g64"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    VariantManifest(variant_id="gptq-w4g64", model="m", base={}, spec={"method": "gptq", "bits": 4},
                    runtime=["hf", "vllm"], artifact=".", files={"config.json": {"bytes": 2, "sha256": "x"}},
                    size_bytes=2, bits_per_weight=4.0).write(folder)
    store = tmp_path / "r.sqlite"
    r = run_cli("eval", str(tmp_path / "variants"), "--runtime", "vllm", "--tasks", "arc_easy", "--limit", "2",
                "--store", str(store), check=False)
    assert r.returncode == 2 and "vllm serve" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not list(tmp_path.glob("r.sqlite*"))
