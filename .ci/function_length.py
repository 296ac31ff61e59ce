"""Fail when a function or method in src/visreps is longer than 100 lines, from ``def`` to its end (signature and
docstring included; decorators, such as a command's click options, are not)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LIMIT = 100


def main() -> int:
    root = Path(__file__).resolve().parents[1] / "src" / "visreps"
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > LIMIT:
                    long.append(f"{path.relative_to(root.parents[1])}:{node.lineno} {node.name}: {length} lines")
    for line in long:
        print(line)
    print(f"functions over {LIMIT} lines: {len(long)}")
    return 1 if long else 0


if __name__ == "__main__":
    sys.exit(main())
