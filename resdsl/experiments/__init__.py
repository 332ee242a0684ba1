"""Small experiments that train and test networks built from specs.

- :mod:`.degradation`: plain vs residual twins of increasing depth on
  scikit-learn's digits (``python -m resdsl.experiments.degradation``).
- :mod:`.dropping`: remove one block at test time (``python -m resdsl.experiments.dropping``).

They use the probes of :mod:`resdsl.analysis.probes` (the CLI's ``analyze --init
--gradients``). The graph report (:mod:`resdsl.analysis.report`) never imports torch;
everything here does.
"""
