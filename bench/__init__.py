"""Measurement scripts for the README: monitoring overhead and migration correctness.

``python -m bench`` runs both; see bench/README.md. Not part of the installed package: it drives the
installed ``nbmigrate`` from outside, through real kernels, the way a user's notebook would run.
"""
