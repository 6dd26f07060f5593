"""Flower SecAgg+ anchor for Sigilo's tools/bench-secure."""
