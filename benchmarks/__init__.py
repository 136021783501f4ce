"""Benchmarks for pinkcloudsync-async against raw httpx, Authlib and a textbook auth flow.

Run `python -m benchmarks` from the repository root (`--help` for options); see
`benchmarks/README.md` for what each scenario measures.
"""
