"""A tiny Hydra app of nlpexp's own, knowing nothing of nlpexp, for the study sweeper's tests (test_sweeper_*.py):
the plugin must work in any Hydra app."""
