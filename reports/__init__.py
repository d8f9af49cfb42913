"""Reports: results store -> frontier charts, recovery tables, budget recommendations.

Entry point: ``reports.build.build_report(store, out, fmt=...)``. The maths lives in pure
modules (frontier, recommend, compare, data's metric functions); model.py assembles one
data model; render.py lays it out as HTML, Markdown, CSV or JSON. Reads only the store
(evalsuite.store) and the metric helpers (evalsuite.metrics), never the evaluator.
"""
