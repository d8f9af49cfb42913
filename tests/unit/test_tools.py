"""External tools: one-line failures, and peak memory charged to the step that used it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from quant.tools import run_tool
from quantsuite.errors import UserError

MB = 1 << 20


def test_failing_tool_is_one_line_with_its_error_message():
    with pytest.raises(UserError, match=r"llama-quantize failed \(exit 3\): error: bad type"):
        run_tool([sys.executable, "-c", "import sys; print('loading'); print('error: bad type', file=sys.stderr); sys.exit(3)"],
                 "llama-quantize")
    assert "hello" in run_tool([sys.executable, "-c", "print('hello')"], "echo")


# Measured in a fresh interpreter: in a long-lived process (this test session) freed memory
# stays resident and is reused, which hides a new allocation from any RSS figure.
PROBE = r"""
import json, sys
import numpy as np
from quant.tools import PeakRss, run_tool
MB = 1 << 20
with PeakRss() as big:
    a = np.ones(300 * MB // 8); del a
with PeakRss() as small:
    b = np.ones(20 * MB // 8); del b
with PeakRss() as child:
    run_tool([sys.executable, "-c", "x = b'x' * (400 * 2**20); print(len(x))"], "alloc")
with PeakRss() as after:
    pass
print(json.dumps({"reset": big.reset, "big": big.bytes, "small": small.bytes, "child": child.bytes,
                  "after": after.bytes}))
"""


@pytest.fixture(scope="module")
def peaks():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_peak_rss_is_per_step_not_process_wide(peaks):
    if not peaks["reset"]:
        pytest.skip("this kernel cannot reset the high-water mark")
    assert peaks["big"] > peaks["small"] + 200 * MB


def test_peak_rss_counts_a_tool_child_once(peaks):
    assert peaks["child"] >= 400 * MB
    if peaks["reset"]:
        assert peaks["after"] < 400 * MB            # the earlier child is not charged again
