"""Small experiments that train and test networks built from specs.

- :mod:`.degradation`: plain vs residual twins of increasing depth on
  scikit-learn's digits (``python -m resdsl.experiments.degradation``).
- :mod:`.dropping`: remove one block at test time (``python -m resdsl.experiments.dropping``).
- :mod:`.depth_limits`: how deep plain and residual MLPs, with and without batchnorm,
  train in a fixed budget (``python -m resdsl.experiments.depth_limits``).
- :mod:`.path_gradients`: the gradient of one path per path length in ResNet-56/110
  (Veit et al. 2016, Fig. 6; ``python -m resdsl.experiments.path_gradients``).

All train with :func:`.training.fit`, the one training loop.

They use the probes of :mod:`resdsl.analysis.probes` (the CLI's ``analyze --init
--gradients``). The graph report (:mod:`resdsl.analysis.report`) never imports torch;
everything here does.
"""
