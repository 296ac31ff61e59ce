"""visreps.plotting as a package (issue 20): every earlier name still imports, the figure options are declared once
(``FigureKwargs``) and checked once, before anything is drawn (``FigureOptions``)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from visreps import options, plotting
from visreps.errors import VisrepsError
from visreps.plotting import (
    FigureKwargs,
    FigureOptions,
    GridKwargs,
    SaveKwargs,
    figure_caption,
    plot_comparison,
    plot_encoding,
    plot_model_comparison,
    plot_rdm,
    plot_rdms,
    plot_reference_comparison,
)
from visreps.plotting import rdm as rdm_module

RDM = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]])
SCORES = pd.DataFrame({"label": ["m (pretrained)/a", "m (pretrained)/b"], "layer": ["a", "b"], "r": [0.2, 0.4]})

#: every public name ``visreps.plotting`` had as one module, and the private one the tests read
EARLIER = (
    "DEFAULT_DPI FIGURE_FORMATS FORMATS MAX_PAIR_LINES PANEL_MIN_WIDTH RASTER_FORMATS WIDTHS caption_path "
    "figure_caption figure_format figure_width plot_comparison plot_encoding plot_model_comparison plot_rdm "
    "plot_rdms plot_reference_comparison save_figure source_styles _sources"
).split()


def test_every_earlier_name_still_imports_and_the_behaviour_shim_is_the_package():
    import visreps.plotting_behaviour as shim
    from visreps.plotting import behaviour

    assert [n for n in EARLIER if not hasattr(plotting, n)] == []
    assert plotting.FIGURE_FORMATS is options.FIGURE_FORMATS and plotting.FORMATS is options.FIGURE_FORMATS
    assert plotting.DEFAULT_DPI == 300 and plotting.MAX_PAIR_LINES == 12
    for name in ("plot_odd_one_out", "plot_frrsa", "plot_partition", "plot_timecourse"):
        assert getattr(shim, name) is getattr(behaviour, name)
    assert shim.FORMATS is options.FIGURE_FORMATS and shim.DEFAULT_DPI == 300


def test_the_options_are_declared_once():
    assert set(SaveKwargs.__annotations__) == {"dpi", "figsize", "format"}
    assert set(GridKwargs.__annotations__) == {"dpi", "figsize", "format", "width", "caption"}
    assert set(FigureKwargs.__annotations__) == {"dpi", "figsize", "format", "width", "caption", "ax"}
    fields = {f.name for f in dataclasses.fields(FigureOptions) if f.init}
    assert fields == set(FigureKwargs.__annotations__) | {"out"}


def test_figure_options_check_themselves_once():
    o = FigureOptions("fig.JPEG", width="single", dpi=150)
    assert (o.suffix, o.owned, o.grow) == ("jpg", True, False)
    assert o.inches == pytest.approx(89 / 25.4)
    assert o.size(6.0, 5.0) == pytest.approx((89 / 25.4, 5.0 * (89 / 25.4 / 6.0) ** 0.5))
    free = FigureOptions()
    assert (free.suffix, free.inches, free.grow, free.size(6.0, 5.0)) == ("", None, True, (6.0, 5.0))
    assert FigureOptions(figsize=(3.0, 2.0)).size(6.0, 5.0) == (3.0, 2.0)
    assert FigureOptions(dpi=0).dpi == 0  # as before: dpi only matters for a figure that is written
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.dpi = 3  # type: ignore[misc]
    with pytest.raises(VisrepsError, match=r"width must be 'single', 'double' or a number of inches"):
        FigureOptions(width="triple")
    with pytest.raises(VisrepsError, match="dpi must be a positive number, got -1"):
        FigureOptions("a.png", dpi=-1)
    with pytest.raises(VisrepsError, match=r"format 'bmp' is not supported; end the file name with one of \.png"):
        FigureOptions("a.bmp")


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"width": "triple"}, "width must be"),
        ({"dpi": 0}, "dpi must be a positive number"),
        ({"format": "gif"}, "format 'gif' is not supported"),
    ],
)
def test_bad_options_are_refused_before_anything_is_drawn(monkeypatch, tmp_path, kw, message):
    drawn = []
    monkeypatch.setattr(rdm_module, "_new_or_given", lambda *a: drawn.append(a))
    with pytest.raises(VisrepsError, match=message):
        plot_rdm(RDM, tmp_path / "rdm.png", **kw)
    assert drawn == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda: plot_rdm(RDM, dpii=100),
        lambda: plot_rdms([RDM, RDM], ax=None),  # a grid is a figure of its own
        lambda: plot_model_comparison(SCORES, colour="red"),
        lambda: plot_reference_comparison(SCORES, widht="single"),
        lambda: plot_comparison(RDM, captions=True),
        lambda: plot_encoding(SCORES, size=3),
    ],
)
def test_an_unknown_keyword_is_a_type_error_that_names_the_function(call):
    with pytest.raises(TypeError, match=r"^plot_\w+\(\) got an unexpected keyword argument '\w+'$"):
        call()


def test_the_behaviour_figures_take_the_save_options_only():
    from visreps.plotting_behaviour import plot_frrsa

    table = pd.DataFrame({"label": ["a", "b"], "r": [0.3, 0.5], "r_classical": [0.2, 0.1]})
    fig = plot_frrsa(table, figsize=(5.0, 3.0), dpi=50)
    assert isinstance(fig, Figure) and fig.get_figwidth() >= 5.0
    with pytest.raises(TypeError, match=r"plot_frrsa\(\) got an unexpected keyword argument 'width'"):
        plot_frrsa(table, width="single")


def test_grid_width_defaults_to_double_and_keywords_pass_through(tmp_path):
    fig = plot_rdms({"a": RDM, "b": RDM}, tmp_path / "g.svg", caption=True)
    assert fig.get_figwidth() == pytest.approx(plotting.WIDTHS["double"])
    assert (tmp_path / "g.txt").read_text() == figure_caption(fig) + "\n"
    assert (tmp_path / "g.svg").read_text().startswith("<?xml")
    fig = plot_rdms({"a": RDM}, width="single")
    assert fig.get_figwidth() == pytest.approx(plotting.WIDTHS["single"])


def test_a_long_table_drawn_by_plot_comparison_keeps_every_option(tmp_path):
    """plot_comparison hands a long table to plot_reference_comparison with all its options (``caption`` too)."""
    fig = plot_comparison(SCORES, tmp_path / "c.png", caption=True, width="single", dpi=40)
    assert fig.get_figwidth() == pytest.approx(plotting.WIDTHS["single"])
    assert (tmp_path / "c.txt").read_text() == figure_caption(fig) + "\n" and figure_caption(fig)
