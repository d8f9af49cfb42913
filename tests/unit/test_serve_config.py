"""Serving defaults for the machine, and what can be served."""

from __future__ import annotations

import pytest

from quant.manifest import VariantManifest
from quantsuite.errors import UserError
from quantsuite.serve.config import ServeConfig, cpu_counts, is_loopback, resolve_target
from quantsuite.serve.fakellm import write_fake_gguf


def test_defaults_follow_machine_and_model(monkeypatch):
    monkeypatch.delenv("QUANTSUITE_API_KEY", raising=False)
    phys, logical = cpu_counts()
    assert 1 <= phys <= logical
    c = ServeConfig(model="m").resolved(n_ctx_train=8192)
    assert (c.host, c.n_ctx, c.n_batch, c.max_tokens_limit, c.api_key) == ("127.0.0.1", 4096, 512, 4096, None)
    assert c.n_threads == phys and c.n_threads_batch == phys
    small = ServeConfig(model="m", n_threads=1, max_tokens_limit=99999).resolved(n_ctx_train=256)
    assert (small.n_ctx, small.n_batch, small.max_tokens_limit, small.n_threads_batch) == (256, 256, 256, 1)


def test_api_key_env_and_explicit_empty(monkeypatch):
    monkeypatch.setenv("QUANTSUITE_API_KEY", "k")
    assert ServeConfig(model="m").resolved().api_key == "k"
    assert ServeConfig(model="m", api_key="x").resolved().api_key == "x"
    assert ServeConfig(model="m", api_key="").resolved().api_key is None     # explicitly off


@pytest.mark.parametrize("kw, msg", [({"n_ctx": 9000}, "exceeds the model's training context"),
                                     ({"n_ctx": 8}, "too small"), ({"n_threads": 0}, "at least 1"),
                                     ({"port": 70000}, "out of range")])
def test_bad_settings_are_user_errors(kw, msg):
    with pytest.raises(UserError, match=msg):
        ServeConfig(model="m", **kw).resolved(n_ctx_train=8192)


def test_resolve_target(tmp_path):
    g = tmp_path / "x.gguf"
    write_fake_gguf(g, {"general.architecture": "llama"})
    t = resolve_target(g)
    assert t.gguf == g and t.model_id == "x" and t.manifest is None
    m = VariantManifest(variant_id="q4", model="tiny", base={}, spec={}, runtime=["llamacpp"], artifact="x.gguf",
                        files={}, size_bytes=1, bits_per_weight=4.0)
    m.write(tmp_path)
    for what in (tmp_path, tmp_path / "manifest.json"):
        t = resolve_target(what)
        assert t.model_id == "tiny/q4" and t.gguf == g.resolve()
    assert resolve_target(tmp_path, model_id="mine").model_id == "mine"
    g.unlink()
    with pytest.raises(UserError, match="is missing"):
        resolve_target(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a GGUF"):
        resolve_target(tmp_path / "notes.txt")
    with pytest.raises(UserError, match="nothing to serve"):
        resolve_target(tmp_path / "nope.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no manifest.json"):
        resolve_target(tmp_path / "empty")


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
