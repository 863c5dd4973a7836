"""my_lab: nlpexp components of one's own (loss, model, dataset, task) and their config groups (my_lab.conf)."""
