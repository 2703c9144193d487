"""Model engines: one package per model family; each loads its model and generates clips."""
