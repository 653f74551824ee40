"""Kernel tasks: one package per task, each exposing a TASK object (see ksearch.task.Task)."""
