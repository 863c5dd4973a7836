"""Config groups for nlpexp: `python run.py hydra.searchpath=[pkg://my_lab.conf] experiment=my_lab_smoke`."""
