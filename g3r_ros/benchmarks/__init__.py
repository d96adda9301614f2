"""Benchmarks behind ``g3r bench`` (each prints one JSON object)."""
