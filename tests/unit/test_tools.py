"""External tools: one-line failures, and peak memory charged to the step that used it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from quant.tools import PeakRss, run_tool
from quantsuite.errors import UserError

MB = 1 << 20


def test_failing_tool_is_one_line_with_its_error_message():
    with pytest.raises(UserError, match=r"llama-quantize failed \(exit 3\): error: bad type"):
        run_tool([sys.executable, "-c", "import sys; print('loading'); print('error: bad type', file=sys.stderr); sys.exit(3)"],
                 "llama-quantize")
    assert "hello" in run_tool([sys.executable, "-c", "print('hello')"], "echo")


def test_peak_rss_is_per_step_not_process_wide():
    with PeakRss() as big:
        a = np.ones(300 * MB // 8)          # 300 MB written, so resident
        del a
    with PeakRss() as small:
        b = np.ones(20 * MB // 8)
        del b
    if not big.reset:
        pytest.skip("this kernel cannot reset the high-water mark")
    assert big.bytes > small.bytes + 200 * MB


def test_peak_rss_counts_a_tool_child():
    with PeakRss() as p:
        run_tool([sys.executable, "-c", "x = b'x' * (400 * 2**20); print(len(x))"], "alloc")
    assert p.bytes >= 400 * MB
    with PeakRss() as q:
        pass
    assert q.bytes < 400 * MB                     # the earlier child is not charged again
