"""MkDocs hooks of the visreps site (``hooks:`` in mkdocs.yml).

- ``catalogue.md`` is generated at build time from ``visreps models --json`` (one object per model
  with ``id``, ``family``, ``architecture``, ``training_data``, ``objective``, ``weights_licence``,
  ``paper``, ``url``, ``offline``). A ``visreps`` without ``--json`` makes the hook fall back to the
  plain ``visreps models`` listing (one id a line, ``  [offline]`` after those whose weights are on
  this machine). The page is never written into ``docs/``, so it cannot go stale in git.
- Links from a notebook (``docs/tutorials/*.ipynb``) to other pages are written as relative file
  links (``../rsa.md``, ``2_rsa_to_a_figure.ipynb``), which work in Jupyter and on GitHub;
  mkdocs-jupyter leaves them as they are, so the hook turns them into the pages' URLs.
- The licences page gets a table of every family's weights licence from the same JSON.
- Pages that other work adds later (listed in ``PENDING``) are shown as a one-line placeholder while
  their file does not exist; an existing file is always used as it is.

Run as a script to print the catalogue page: ``python .ci/docs_hooks.py > /tmp/catalogue.md``.
"""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
import sys
from collections import defaultdict

PENDING = {
    "huggingface.md": "Hugging Face models",
    "model-families.md": "Model families",
    "encoding.md": "Encoding models",
    "inference.md": "Noise ceilings and inference",
}
FIELDS = ["id", "architecture", "training_data", "objective", "weights_licence", "paper", "offline"]
LONG = 30  # families with more models than this are folded


def _visreps(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "visreps.cli", "models", *args], capture_output=True, text=True, timeout=600
    )


def _cell(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return f"[link]({text})" if text.startswith(("http://", "https://")) else text


def _from_json(models: list[dict]) -> str:
    by_family: dict[str, list[dict]] = defaultdict(list)
    for m in models:
        by_family[str(m.get("family") or m["id"].split(":")[0])].append(m)
    out = [
        f"{len(models)} models in {len(by_family)} families, as `visreps models --json` lists them. "
        "*offline* marks pretrained weights that work without the network after `pip install visreps`.",
        "",
        "| family | models | weights licence |",
        "|---|---|---|",
    ]
    for fam, ms in sorted(by_family.items()):
        licences = sorted({str(m.get("weights_licence") or "") for m in ms} - {""})
        parts = -(-len(ms) // PAGE_ROWS)
        link = f"[{fam}]({family_page(fam)})" + (
            " (" + ", ".join(f"[part {k + 1}]({family_page(fam, k)})" for k in range(parts)) + ")" if parts > 1 else ""
        )
        out.append(f"| {link} | {len(ms)} | {_cell(', '.join(licences))} |")
    return "\n".join(out)


PAGE_ROWS = 250  # models per catalogue page: a family with more gets several pages


def family_page(family: str, part: int = 0) -> str:
    """The catalogue page of one family, or of its ``part``-th 250 models (small pages load fast)."""
    return f"catalogue/{_anchor(family) or 'other'}{f'-{part + 1}' if part else ''}.md"


def family_pages(models: list[dict]) -> dict[str, str]:
    """``catalogue/<family>.md`` → its page: a table of the family's models."""
    by_family: dict[str, list[dict]] = defaultdict(list)
    for m in models:
        by_family[str(m.get("family") or m["id"].split(":")[0])].append(m)
    pages = {}
    for fam, ms in sorted(by_family.items()):
        ms = sorted(ms, key=lambda m: m["id"])
        chunks = [ms[i : i + PAGE_ROWS] for i in range(0, len(ms), PAGE_ROWS)]
        for k, chunk in enumerate(chunks):
            part = f" ({k + 1} of {len(chunks)})" if len(chunks) > 1 else ""
            first = f"{k * PAGE_ROWS + 1}–{k * PAGE_ROWS + len(chunk)} of " if len(chunks) > 1 else ""
            out = [f"# {fam}{part}", "", f"{first}{len(ms)} models; back to the [catalogue](../catalogue.md).", ""]
            if len(chunks) > 1:
                here = posixpath.basename(family_page(fam, k))
                others = [f"[{j + 1}]({posixpath.basename(family_page(fam, j))})" for j in range(len(chunks)) if j != k]
                out += [f"Pages: {', '.join(others)} (this is {k + 1}: `{here}`).", ""]
            out += ["| " + " | ".join(f.replace("_", " ") for f in FIELDS) + " |", "|" + "---|" * len(FIELDS)]
            for m in chunk:
                cells = [f"`{m['id']}`", *(_cell(m.get(f)) for f in FIELDS[1:])]
                if m.get("url"):
                    cells[0] = f"[`{m['id']}`]({m['url']})"
                out.append("| " + " | ".join(cells) + " |")
            pages[family_page(fam, k)] = "\n".join(out) + "\n"
    return pages


def _anchor(title: str) -> str:
    """The id the toc extension gives a heading (its default slugify, as mkdocs.yml leaves it)."""
    from markdown.extensions.toc import slugify

    return slugify(title, "-")


def _fold(lines: list[str], title: str) -> list[str]:
    return [f'??? note "{title}"', "", *("    " + x for x in lines)]


def _from_plain(text: str) -> str:
    by_source: dict[str, list[str]] = defaultdict(list)
    for line in text.splitlines():
        if ":" not in line:
            continue
        mid, _, flag = line.partition("  ")
        by_source[mid.split(":")[0]].append(f"`{mid}` (offline)" if "offline" in flag else f"`{mid}`")
    n = sum(map(len, by_source.values()))
    out = [
        f"{n} model ids from {len(by_source)} sources, as `visreps models` lists them; *(offline)* marks "
        "those whose pretrained weights were on the machine that built this page. "
        "Architecture, training data and licence of each model appear here once `visreps models --json` exists.",
        "",
        "| source | ids |",
        "|---|---|",
        *(f"| [{s}](#{_anchor(s)}) | {len(ids)} |" for s, ids in sorted(by_source.items())),
    ]
    for source, ids in sorted(by_source.items()):
        out += ["", f"## {source}", ""]
        body = [", ".join(ids)]
        out += _fold(body, f"{len(ids)} ids") if len(ids) > LONG else body
    return "\n".join(out)


_MODELS_JSON: list | None = None


def _models_json() -> list | None:
    """``visreps models --json`` (run once per build), or ``None`` when this visreps has no ``--json``."""
    global _MODELS_JSON
    if _MODELS_JSON is None:
        r = _visreps("--json")
        _MODELS_JSON = json.loads(r.stdout) if r.returncode == 0 else []
    return _MODELS_JSON or None


def licences_table() -> str:
    """One row per model family: its weights licence as the catalogue states it."""
    models = _models_json()
    if models is None:
        return "*(The table of every family's weights licence appears once `visreps models --json` exists.)*"
    by_family: dict[str, set[str]] = defaultdict(set)
    for m in models:
        by_family[str(m.get("family") or m["id"].split(":")[0])].add(str(m.get("weights_licence") or "not stated"))
    rows = ["| family | models' weights licence (from the catalogue) |", "|---|---|"]
    rows += [f"| {_cell(f)} | {_cell('; '.join(sorted(lic)))} |" for f, lic in sorted(by_family.items())]
    return "\n".join(rows)


def on_page_markdown(markdown, page, config, files):
    """The licences page gets the table of every family's weights licence in place of its marker."""
    if page.file.src_uri == "licences.md":
        return markdown.replace("<!-- weights-licences -->", licences_table())
    return markdown


def catalogue_markdown() -> str:
    """The catalogue page: from ``visreps models --json``, else from the plain listing."""
    head = (
        "# Model catalogue\n\n"
        "Generated when the site is built, from the installed visreps (`visreps models`); "
        "[Model ids and sources](models.md) explains the ids and [Licences](licences.md) the terms of the weights.\n\n"
    )
    models = _models_json()
    if models is not None:
        return head + _from_json(models) + "\n"
    r = _visreps()
    if r.returncode != 0:
        raise RuntimeError(f"`visreps models` failed: {r.stderr.strip()}")
    return head + _from_plain(r.stdout) + "\n"


_FILES = None
_LINK = re.compile(r'href="(?P<target>[^"#:?]+\.(?:md|ipynb))(?P<anchor>#[^"]*)?"')


def on_files(files, config):
    """Add the generated catalogue and placeholders for pages not written yet."""
    from mkdocs.structure.files import File

    global _FILES
    _FILES = files

    stale = files.get_file_from_path("catalogue.md")
    if stale is not None:  # a file left in docs/ by hand: the generated page replaces it
        files.remove(stale)
    files.append(File.generated(config, "catalogue.md", content=catalogue_markdown()))
    from mkdocs.structure.files import InclusionLevel

    for name, content in family_pages(_models_json() or []).items():  # linked from the catalogue, not in the nav
        files.append(File.generated(config, name, content=content, inclusion=InclusionLevel.NOT_IN_NAV))
    for name, content in figures().items():  # every figure kind, as the code draws it now
        files.append(File.generated(config, f"figures/{name}", content=content))
    for name, title in PENDING.items():
        if files.get_file_from_path(name) is None:
            files.append(File.generated(config, name, content=f"# {title}\n\nThis page is being written.\n"))
    return files


def figures() -> dict[str, bytes]:
    """The PNGs of docs/figures/make_figures.py, rendered now (nothing rendered is committed)."""
    import importlib.util
    import tempfile
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "docs" / "figures" / "make_figures.py"
    spec = importlib.util.spec_from_file_location("make_figures", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory() as tmp:
        return {p.name: p.read_bytes() for p in module.render(tmp)}


_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc|py:\w+):(?=<code>|`)")


def on_page_content(html, page, config, files):
    """Docstrings written for Sphinx: ``:func:`x``` shows as ``x`` (no raw role), an escaped ``\\|`` as ``|``."""
    return _ROLE.sub("", html).replace("<code>~", "<code>").replace("\\|", "|")


def on_post_page(output, page, config):
    """In a rendered notebook, links to ``.md``/``.ipynb`` files become links to their pages."""
    if not page.file.src_uri.endswith(".ipynb") or _FILES is None:
        return output

    def fix(m: re.Match) -> str:
        src = posixpath.normpath(posixpath.join(posixpath.dirname(page.file.src_uri), m["target"]))
        target = _FILES.get_file_from_path(src)
        if target is None:
            raise ValueError(f"{page.file.src_uri}: link to {m['target']!r}, which is not a page of the site")
        return f'href="{target.url_relative_to(page.file)}{m["anchor"] or ""}"'

    return _LINK.sub(fix, output)


if __name__ == "__main__":
    sys.stdout.write(catalogue_markdown())
