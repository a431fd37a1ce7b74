"""The rendered book, as a reader meets it: built with every Sphinx warning as an error, then opened in a real
(headless) Chromium. Every page loads, every chapter shows its figures, no page shows an error output or a
traceback, and every control on a page does something."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

# The same command as the README's first Quickstart step (tests/test_project.py checks the flags).
BUILD = ["build", ".", "--all", "-W", "-n", "--keep-going"]
HTML = ROOT / "_build" / "html"


def pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


CHAPTERS = [p for p in pages() if p.startswith("notebooks/")]


@pytest.fixture(scope="session")
def book() -> Path:
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", *BUILD]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    return HTML


def test_book_builds_without_warnings(book):
    for page in pages():
        assert (book / page).with_suffix(".html").is_file(), page


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def server(book):
    handler = functools.partial(_QuietHandler, directory=str(book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def mathjax_dir() -> Path:
    """MathJax 3 as a package ships it, served in place of the CDN copy that pages load online."""
    import mathjax  # the PyPI package django-static-mathjax: MathJax's files, nothing else

    return Path(mathjax.__file__).parent / "static" / "mathjax"


# Sphinx's default `mathjax_path` (the CDN a reader's browser loads the typesetter from).
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"


@pytest.fixture
def open_page(browser, server):
    """Open a book page offline: MathJax comes from the local copy, any other request that leaves
    localhost (CDN scripts, fonts) is refused at once."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    local_mathjax = mathjax_dir()

    def route(route):
        url = route.request.url
        if url.startswith(server):
            return route.continue_()
        if url.startswith(MATHJAX_CDN):
            path = local_mathjax / url.removeprefix(MATHJAX_CDN).split("?")[0]
            if path.is_file():
                return route.fulfill(path=str(path))
        return route.abort()

    context.route("**/*", route)
    errors: list[str] = []

    def _open(page_file: str):
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        response = page.goto(f"{server}/{page_file}.html", wait_until="load")
        assert response is not None and response.ok, page_file
        if page.locator("div.math, span.math").count():
            page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise"
            )
            page.evaluate("() => MathJax.startup.promise")
        page.errors = errors
        return page

    yield _open
    context.close()


def stored_figures(page_file: str) -> int:
    """How many images the notebook's stored outputs show (cells whose output the book keeps)."""
    nb = json.loads((ROOT / page_file).with_suffix(".ipynb").read_text(encoding="utf-8"))
    count = 0
    for cell in nb["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] != "code" or tags & {"remove-output", "remove-cell"}:
            continue
        for out in cell["outputs"]:
            data = out.get("data", {})
            if any(mime.startswith("image/") for mime in data):
                count += 1
            elif "text/html" in data:
                count += "".join(data["text/html"]).count("<img")
    return count


@pytest.mark.parametrize("page_file", pages())
def test_page_loads_without_errors(open_page, page_file):
    page = open_page(page_file)
    assert page.title(), page_file
    article = page.locator("article.bd-article")
    assert article.count() == 1
    assert len(article.inner_text()) > 500, f"{page_file} is nearly empty"
    outputs = "\n".join(page.locator(".cell_output").all_inner_texts())
    for bad in ("Traceback (most recent call last)", "Warning:", "<ipython-input"):
        assert bad not in outputs, f"an output of {page_file} shows {bad!r}"
    assert page.locator(".output.traceback, .output.stderr, .output_error").count() == 0
    # ipywidgets cannot run in a static page: a widget left in an output would be a dead control.
    assert page.locator(".jupyter-widgets, script[type*='widget']").count() == 0
    assert not page.errors, page.errors
    assert page.locator("mjx-merror").count() == 0, "an equation has a TeX error"
    source_links = page.evaluate(
        "() => [...document.querySelectorAll('article a[href]')]"
        ".map(a => a.getAttribute('href')).filter(h => /\\.(ipynb|md)(#|$)/.test(h))"
    )
    assert not source_links, f"links to source files instead of pages: {source_links}"
    page.screenshot(path=str(HTML.parent / f"screenshot-{Path(page_file).name}.png"))


@pytest.mark.parametrize("page_file", CHAPTERS)
def test_chapter_shows_its_figures_equations_and_launch_buttons(open_page, page_file):
    page = open_page(page_file)
    figures = page.locator(".cell_output img")
    expected = stored_figures(page_file)
    assert expected >= 2, f"{page_file} has {expected} figures"
    assert figures.count() == expected, f"{figures.count()} of {expected} figures on the page"
    for i in range(figures.count()):
        img = figures.nth(i)
        img.scroll_into_view_if_needed()
        width = img.evaluate("el => el.complete ? el.naturalWidth : -1")
        assert width > 0, f"figure {i} of {page_file} did not load"
    math = page.locator("div.math, span.math")
    assert math.count() > 0, "equations"
    typeset = page.locator("mjx-container")
    assert typeset.count() >= math.count(), "MathJax typeset every equation"
    assert page.locator("mjx-merror").count() == 0, "an equation has a TeX error"
    colab = page.locator("a[href*='colab.research.google.com']")
    assert colab.count() >= 1, "Colab launch button"
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert url.removeprefix("https://github.com/") in colab.first.get_attribute("href")


def _frame(explorer) -> str:
    return explorer.locator("img").first.get_attribute("src")


@pytest.mark.parametrize("page_file", CHAPTERS)
def test_every_control_does_something(open_page, page_file):
    page = open_page(page_file)
    article = page.locator("article.bd-article")
    explorers = article.locator(".vit-explorer")
    controls = article.locator("input, select, textarea")
    inside = article.locator(".vit-explorer input, .vit-explorer select")
    assert controls.count() == inside.count(), "a control outside an explorer does nothing offline"
    for e in range(explorers.count()):
        explorer = explorers.nth(e)
        explorer.scroll_into_view_if_needed()
        for c in range(explorer.locator("input[type=range], input[type=checkbox], select").count()):
            control = explorer.locator("input[type=range], input[type=checkbox], select").nth(c)
            before = _frame(explorer)
            if control.get_attribute("type") == "checkbox":
                control.click()
            elif control.evaluate("el => el.tagName") == "SELECT":
                values = control.locator("option").evaluate_all("os => os.map(o => o.value)")
                current = control.input_value()
                control.select_option(next(v for v in values if v != current))
            else:
                low, high = control.get_attribute("min"), control.get_attribute("max")
                target = high if control.input_value() != high else low
                control.evaluate(
                    "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", target
                )
            assert _frame(explorer) != before, f"control {c} of explorer {e} changed nothing"
    # Hidden solutions: code cells tagged hide-input (<details>) and dropdown admonitions open on a click.
    details = article.locator("details.hide")
    for i in range(details.count()):
        item = details.nth(i)
        item.scroll_into_view_if_needed()
        assert not item.evaluate("d => d.open"), "a hidden solution is shown already"
        item.locator("summary").first.click()
        assert item.evaluate("d => d.open"), "its toggle did not open it"
    dropdowns = article.locator(".admonition.dropdown")
    for i in range(dropdowns.count()):
        box = dropdowns.nth(i)
        box.scroll_into_view_if_needed()
        assert "toggle-hidden" in box.get_attribute("class"), "a dropdown solution is shown already"
        box.locator("button.toggle-button").click()
        page.wait_for_function(
            "el => !el.classList.contains('toggle-hidden')", arg=box.element_handle()
        )
    toggles = details.count() + dropdowns.count()
    assert explorers.count() + toggles >= 1, f"{page_file} has no explorer or hidden solution"


@pytest.mark.parametrize("page_file", CHAPTERS)
def test_exercise_answers_are_hidden_until_clicked(open_page, page_file):
    """In the Exercises section the reader sees the questions; every solution (code, its output, prose)
    stays hidden until its toggle is clicked."""
    page = open_page(page_file)
    section = page.locator("section#exercises")
    assert section.count() == 1, "the chapter has an Exercises section"
    cells = section.locator("div.cell")
    dropdowns = section.locator(
        "div.admonition"
    )  # a hidden code cell is a <details class="admonition">
    assert cells.count() + dropdowns.count() >= 1, "the exercises have solutions"
    visible = [
        i
        for i in range(cells.count())
        for part in (".cell_input", ".cell_output")
        if cells.nth(i).locator(part).count() and cells.nth(i).locator(part).first.is_visible()
    ]
    assert not visible, f"solution cells {visible} are visible before a click"
    for i in range(dropdowns.count()):
        box = dropdowns.nth(i)
        assert "dropdown" in box.get_attribute("class"), (
            "a solution admonition that cannot be hidden"
        )
        assert not box.locator(".admonition-title ~ *").first.is_visible(), (
            "a solution shown already"
        )
    # One click on each toggle shows the solution.
    for i in range(cells.count()):
        cell = cells.nth(i)
        cell.locator("details summary").first.click()
        assert cell.locator(".cell_input").first.is_visible()
        if cell.locator(".cell_output").count():
            assert cell.locator(".cell_output").first.is_visible()
    for i in range(dropdowns.count()):
        box = dropdowns.nth(i)
        box.locator("button.toggle-button").click()
        page.wait_for_function(
            "el => !el.classList.contains('toggle-hidden')", arg=box.element_handle()
        )
        assert box.locator(".admonition-title ~ *").first.is_visible()
