"""Fail when a function or method in src/visreps is longer than 80 lines, from ``def`` to its end (signature and
docstring included; decorators, such as a command's click options, are not), or a module is longer than 650 lines
(issue 20: one concept per module; split by meaning, not by cutting a function in parts)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LIMIT = 80
MODULE_LIMIT = 650


def main() -> int:
    root = Path(__file__).resolve().parents[1] / "src" / "visreps"
    long = []
    big = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if (n := len(text.splitlines())) > MODULE_LIMIT:
            big.append(f"{path.relative_to(root.parents[1])}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > LIMIT:
                    long.append(f"{path.relative_to(root.parents[1])}:{node.lineno} {node.name}: {length} lines")
    for line in long + big:
        print(line)
    print(f"functions over {LIMIT} lines: {len(long)}; modules over {MODULE_LIMIT} lines: {len(big)}")
    return 1 if long or big else 0


if __name__ == "__main__":
    sys.exit(main())
