"""The project's pieces agree with each other: one repository URL, the table of contents, the notebooks as
committed, the README's commands and CI, the notation page and the package."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
README = (ROOT / "README.md").read_text()


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        for value in node.values():
            files += toc_files(value)
    elif isinstance(node, list):
        for value in node:
            files += toc_files(value)
    return files


def test_there_are_chapters():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)]
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_install_cell_uses_the_repository_url(path):
    url = CONFIG["repository"]["url"]
    first = "".join(code_cells(load(path))[0]["source"])
    assert '"google.colab" in sys.modules' in first
    assert f"git+{url}" in first, f"the Colab install cell must install from {url}"


def test_launch_buttons_and_package_urls_follow_the_repository_setting():
    url = CONFIG["repository"]["url"]
    assert CONFIG["launch_buttons"]["colab_url"] and CONFIG["launch_buttons"]["binderhub_url"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'Source = "{url}"' in pyproject
    assert url in README


def test_table_of_contents_lists_every_page_once():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"], *toc_files(toc["parts"])]
    assert len(files) == len(set(files))
    chapters = [f for f in files if f.startswith("notebooks/")]
    assert chapters == [f"notebooks/{p.stem}" for p in NOTEBOOKS]
    for f in files:
        assert any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb")), f


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_executed_and_clean(path):
    nb = load(path)
    counts = [c["execution_count"] for c in code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), "run it top to bottom in a fresh kernel"
    for cell in code_cells(nb):
        for out in cell["outputs"]:
            assert out["output_type"] != "error", "".join(cell["source"])[:80]
            if out["output_type"] == "stream":
                assert out["name"] == "stdout", f"stderr stored: {''.join(out['text'])[:200]}"
    assert "widgets" not in nb["metadata"], "widget state must not be stored (dead controls)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_chapter_skeleton(path):
    nb = load(path)
    markdown = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    number = int(path.name[:2])
    assert markdown[0].startswith(f"# Chapter {number}:"), markdown[0][:60]
    headings = [line for md in markdown for line in md.splitlines() if line.startswith("## ")]
    assert "## Summary" in headings and "## Exercises" in headings, headings
    assert headings.index("## Summary") < headings.index("## Exercises")
    tags = [set(c["metadata"].get("tags", [])) for c in nb["cells"]]
    assert any("nbval-check-output" in t for t in tags), "mark the deterministic cells"
    assert any({"hide-input", "hide-cell"} & t for t in tags) or any(
        ":class: dropdown" in md for md in markdown
    ), "exercise solutions must be hidden"


def test_every_citation_is_in_the_bibliography():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    sources = [p.read_text() for p in (ROOT / "book").glob("*.md")] + [
        "".join("".join(c["source"]) for c in load(p)["cells"]) for p in NOTEBOOKS
    ]
    cited = {
        key.strip()
        for text in sources
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text)
        for key in group.split(",")
    }
    assert cited, "the chapters cite their sources"
    assert cited <= keys, f"missing from references.bib: {sorted(cited - keys)}"


def readme_commands() -> list[str]:
    block = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", block, flags=re.S)


def test_readme_quickstart_has_two_commands_and_ci_runs_the_second():
    commands = readme_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    build, test = commands
    assert "jupyter-book build . --all -W -n --keep-going" in build
    assert "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci, "`.ci/run` must call the README's test command verbatim"


def test_notation_page_matches_the_package_presets():
    vit = pytest.importorskip("vitutils.vit")
    cfg = vit.vit_config("vit_base_patch16_224")
    text = (ROOT / "book" / "notation.md").read_text()
    column = {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\| \$(\w)(?:, \w)?\$ \|[^|]+\| ([^|]+) \|$", text, flags=re.M)
    }
    assert column["C"] == str(cfg.in_chans)
    assert column["H"] == f"{cfg.img_size}, {cfg.img_size}"
    assert column["P"] == str(cfg.patch_size)
    assert column["D"] == str(cfg.embed_dim)
    assert column["h"] == str(cfg.num_heads)
    assert column["L"] == str(cfg.depth)


def test_committed_benchmark_figures_are_the_scripts_output():
    from vitutils.benchmark import to_markdown

    report = json.loads((ROOT / "book" / "benchmark.md.json").read_text(encoding="utf-8"))
    table = (ROOT / "book" / "benchmark.md").read_text(encoding="utf-8")
    assert table.strip() == to_markdown(report).strip()
    measured = {(row["model"], row["variant"]) for row in report["results"]}
    for model in ("vit_small_patch16_224", "vit_base_patch16_224"):
        for variant in ("vitutils fused", "vitutils teaching", "transformers sdpa"):
            assert (model, variant) in measured
    assert (report["batch_size"], report["image_size"]) == (8, 224)


MAX_MODULE_LINES = 400  # STYLE.md: every module readable top to bottom, at most about 400 lines


def test_package_modules_stay_small():
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted((ROOT / "vitutils").rglob("*.py"))
    }
    assert len(sizes) >= 10
    too_long = {path: n for path, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not too_long, f"split these modules: {too_long}"
