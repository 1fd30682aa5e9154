"""Runs on disk: directory layout, atomic writes, checkpoints."""
from groklab.runs.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from groklab.runs.rundir import JsonlLogger, atomic_write_text, read_json, read_jsonl, write_json

__all__ = ["JsonlLogger", "atomic_write_text", "read_json", "read_jsonl", "write_json",
           "list_checkpoints", "load_checkpoint", "save_checkpoint"]
