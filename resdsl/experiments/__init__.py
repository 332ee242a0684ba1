"""The torch side of the analysis: probes at initialisation and small experiments.

- :mod:`.probes`: identity at initialisation and gradient norms per stage
  (``resdsl analyze --init --gradients``).
- :mod:`.degradation`: plain vs residual twins of increasing depth on
  scikit-learn's digits (``python -m resdsl.experiments.degradation``).
- :mod:`.dropping`: remove one block at test time (``python -m resdsl.experiments.dropping``).

The graph analysis itself (:mod:`resdsl.passes.analysis`) never imports torch;
everything here does.
"""
