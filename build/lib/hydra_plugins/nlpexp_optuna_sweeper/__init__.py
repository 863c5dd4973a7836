"""nlpexp's Optuna sweeper: the Hydra Optuna sweeper made resumable, prunable and summarised.

Hydra finds sweeper plugins only under the `hydra_plugins` namespace; the work is done in `nlpexp.sweep`.
"""
