"""Helpers for the tests and benches (peers, proxies, ports); no tests live here."""
