"""Tools beside the method: GGUF import (``python -m timer1.tools.gguf``), exporting a run as a model
(export), pictures of runs and evaluations (plot) and paired bootstrap comparisons (compare)."""
