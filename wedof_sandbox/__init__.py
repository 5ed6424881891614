"""A local Wedof that speaks the real Wedof API, for demos, tests and benchmarks.

A standalone Flask program with its own CLI (``python -m wedof_sandbox``): a deterministic
population of registration folders, the real state machine, signed webhook deliveries, fault
injection and ``/_sandbox/*`` control endpoints. Nothing in the product imports it.
"""
