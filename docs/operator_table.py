"""Rewrites the operator table of docs/operators.md from the spec (icl_onnx/opspec.py)."""

from pathlib import Path

from icl_onnx.opspec import markdown_table

BEGIN, END = "<!-- operator table: begin -->\n", "<!-- operator table: end -->"

if __name__ == "__main__":
    path = Path(__file__).with_name("operators.md")
    text = path.read_text()
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    path.write_text(head + BEGIN + markdown_table() + END + tail)
