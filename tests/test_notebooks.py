"""Notebooks run headless from top to bottom, so they cannot rot.

Each notebook asserts its key numbers (hand-derived values, parity with RSL-RL / PyTorch, what a method must
achieve) in its own cells, so a cell error here means the library drifted from what the notebook shows.
"""

import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# notebook -> figures it must render (one per section that plots).
NOTEBOOKS = {
    "loss_terms.ipynb": 4,
    "ppo_terms_vs_rsl_rl.ipynb": 2,
    "distillation.ipynb": 2,
    "schedules.ipynb": 3,
    "rnd_estimator.ipynb": 4,
    "tppo_amp_ts.ipynb": 4,
}


def _read(name):
    return nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)


def _sections(nb) -> dict[str, str]:
    """``heading -> code`` of each numbered section (``## ...``) of a notebook."""
    sections, heading = {}, None
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## "):
            heading = cell.source.strip().splitlines()[0]
            sections[heading] = ""
        elif cell.cell_type == "code" and heading is not None:
            sections[heading] += cell.source + "\n"
    return sections


def test_every_notebook_is_executed_and_every_section_asserts():
    """A new notebook must be listed here, and every section of every notebook checks its numbers in code (an
    ``assert`` that is not inside an ``if``, so it cannot be skipped)."""
    assert sorted(n for n in os.listdir(os.path.join(ROOT, "notebooks")) if n.endswith(".ipynb")) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        sections = _sections(_read(name))
        assert sections, name
        for heading, code in sections.items():
            top_level = [line for line in code.splitlines() if line.startswith("assert ")]
            assert top_level, f"{name}: '{heading}' asserts nothing outside a block"


# loss_terms.ipynb takes about a minute: CI's slow step runs it (default-suite time, tests/README.md).
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "loss_terms.ipynb" else n
                                  for n in NOTEBOOKS])
def test_notebook_executes(name):
    nb = _read(name)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": ROOT}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= NOTEBOOKS[name]
