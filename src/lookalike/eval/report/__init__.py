"""Rendering of evaluation results: markdown, JSON files, terminal tables (rich), plots, the demo report.

Nothing here runs a descriptor: every function takes a result object of :mod:`lookalike.eval.protocols`
(:class:`~lookalike.eval.protocols.patch_table.PatchTable`,
:class:`~lookalike.eval.protocols.homography.MatchingReport`,
:class:`~lookalike.eval.protocols.demo.DemoResult`) and renders it.

- :mod:`~lookalike.eval.report.markdown`: ``results.md`` tables.
- :mod:`~lookalike.eval.report.terminal`: rich tables, printed as plain markdown when the output is not
  a terminal (so nothing is cut).
- :mod:`~lookalike.eval.report.plots`: matplotlib figures (MMA vs threshold).
- :mod:`~lookalike.eval.report.files`: the result files of each command.
- :mod:`~lookalike.eval.report.demo`: the demo's pictures and self-contained ``report.html``.
"""
