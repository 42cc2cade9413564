"""Root cause analysis: ranked, explainable causes with their evidence chain."""
