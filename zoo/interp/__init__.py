"""The zoo's models in the researcher's own tools: TransformerLens 4 (an architecture adapter for
the toy architecture, and a loader for any run). Each tool is an optional extra, imported only here."""
