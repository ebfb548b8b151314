"""experiments/plot_curves.py on hand-made scalar CSVs."""

from __future__ import annotations

import os

from experiments import plot_curves


def _csv(tmp_path, name, lengths, stds=None):
    rows = ["tag,step,wall_time,value"]
    rows += [f"Train/mean_episode_length,{s},{100 + s},{v}" for s, v in lengths.items()]
    rows += [f"Policy/mean_std,{s},{100 + s},{v}" for s, v in (stds or {}).items()]
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_one_line_per_run_and_the_baseline(tmp_path):
    a = _csv(tmp_path, "a.csv", {1: 400.0, 2: 20.0, 3: 25.0}, {1: 1.0, 2: 0.9, 3: 0.8})
    b = _csv(tmp_path, "b.csv", {1: 300.0, 2: 6.0})
    out = str(tmp_path / "curves.png")
    curves = {label: plot_curves.read_scalars(path) for label, path in (("a", a), ("b", b))}
    fig = plot_curves.plot(curves, 34.5, out, "t")
    top, bottom = fig.axes
    assert os.path.getsize(out) > 0
    assert [list(line.get_ydata()) for line in top.lines] == [[400.0, 20.0, 25.0], [300.0, 6.0], [34.5, 34.5]]
    assert [list(line.get_ydata()) for line in bottom.lines] == [[1.0, 0.9, 0.8]]  # b logged no std
    assert top.get_legend_handles_labels()[1] == ["a", "b", "zero-action baseline (34.5)"]


def test_bad_sources_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "x.png")
    assert plot_curves.main([out, "no_label.csv"]) == 2
    assert "is not label=<run dir or CSV>" in capsys.readouterr().err
    assert plot_curves.main([out, f"a={tmp_path / 'missing.csv'}"]) == 2
    assert "neither a run directory nor a CSV file" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("tag,step,wall_time,value\nLoss/value,1,100,2.0\n")
    assert plot_curves.main([out, f"a={empty}"]) == 2
    assert "no Train/mean_episode_length scalar in ['a']" in capsys.readouterr().err
    assert not os.path.exists(out)
