"""The reranking core: text cleaning, truncation, prompt templates, answer parsing, sliding
windows and the scheduler. Pure Python; it imports only `reasonrank.types`, `reasonrank.config`
and `reasonrank.errors` from the package (tests/test_layers.py checks it)."""
