"""Evals, one module each: `core` (SAEBench's core metrics on a dataset). Absorption lives in
`harness.absorption`."""
