"""What a network is, measured: the graph report and the torch probes the CLI runs.

- :mod:`.report`: cost per stage, receptive field, and the paths of the graph
  (``resdsl analyze``); never imports torch.
- :mod:`.probes`: identity at initialisation and gradient norms per stage
  (``resdsl analyze --init --gradients``); imports torch, so it is imported on its own.
"""

from .report import Analysis, PathStats, analyze, path_stats

__all__ = ["Analysis", "PathStats", "analyze", "path_stats"]
