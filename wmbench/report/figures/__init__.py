"""The report's figures, one module per family; each function draws one figure from a `Selection`
(or tidy numbers) and writes it as a PNG."""
