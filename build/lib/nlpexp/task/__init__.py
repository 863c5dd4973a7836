"""The task group: one class per task (`nlpexp.task.<module>.<Class>`), each with setup / train / evaluate.

Nothing is imported here: a task module pulls in only its own trainer library.
"""
