"""Evaluations you can schedule: eval sets (sets.py), runs through the studio's path (runner.py), stored runs (store.py)."""
