"""The `reasonrank` command line: `main.py` builds the parser and the error boundary (its
`main` is the console script); `console.py` holds the shared console, progress bar and quiet
mode; each command group lives in its own module (`rerank`, `evaluate`, `retrieval`, `data`,
`train`, `synth`, `serve`, `offline`, `demo`)."""
