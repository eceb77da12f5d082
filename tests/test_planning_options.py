"""--planning.candidates (one count), --planning.selection and the temporal ensemble's reach."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_planning import FirstActionValue, tiny_generator

from diffplan.evaluation.evaluate import EvaluateConfig
from diffplan.planning.config import PlanningConfig
from diffplan.planning.presets import find_preset


def test_one_count_serves_every_selection() -> None:
    default = PlanningConfig()
    assert default.selection_for(True, False) == ("value", 64)
    assert default.selection_for(True, True) == ("value", 64)
    assert default.selection_for(False, True) == ("consistency", 16)
    assert default.selection_for(False, False) == ("first", 1)
    five = PlanningConfig(candidates=5)
    assert five.selection_for(True, False) == ("value", 5)
    assert five.selection_for(False, True) == ("consistency", 5)
    assert five.selection_for(False, False) == ("first", 1)  # auto, no model to choose by
    assert PlanningConfig(selection="mean", candidates=3).selection_for(False, False) == (
        "mean",
        3,
    )
    guided = five.make_planner(tiny_generator(), 1, value_net=FirstActionValue())
    assert (guided.proposal.candidates, guided.selection.rule) == (5, "value")
    plain = five.make_planner(tiny_generator(), 1)
    assert (plain.proposal.candidates, plain.selection.rule) == (1, "first")


@pytest.mark.parametrize(
    ("options", "guided", "dynamics", "message"),
    [
        ({"selection": "mean", "candidates": 4}, True, False, "selection mean does not apply"),
        ({"selection": "consistency"}, False, False, "selection consistency needs a forward"),
        ({"selection": "value"}, False, False, "selection value needs a value network"),
        ({"selection": "first", "candidates": 8}, False, False, "candidates 8 with"),
        ({"selection": "first"}, False, True, "selection first ignores the forward model"),
        ({"selection": "mean", "candidates": 4}, False, True, "selection mean ignores"),
        ({"selection": "mean"}, False, False, "needs --planning.candidates N >= 2"),
    ],
)
def test_impossible_selections_are_refused(options, guided, dynamics, message) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        PlanningConfig(**options).selection_for(guided, dynamics)
    assert "--planning." in str(raised.value)


def test_evaluate_checks_the_selection_of_each_kind_of_setting() -> None:
    mean = PlanningConfig(selection="mean", candidates=4)
    EvaluateConfig(Path("d"), windows=(1,), planning=mean).validate()
    with pytest.raises(ValueError, match="does not apply to value-guided settings"):
        EvaluateConfig(Path("d"), value=Path("v"), windows=(1,), planning=mean).validate()
    value = PlanningConfig(selection="value")
    EvaluateConfig(Path("d"), value=Path("v"), guided_windows=(7,), planning=value).validate()
    with pytest.raises(ValueError, match="needs a value network"):
        EvaluateConfig(Path("d"), value=Path("v"), windows=(1,), planning=value).validate()


def test_a_presets_ensemble_applies_at_k_1_and_an_explicit_one_needs_k_1() -> None:
    tracked = find_preset("tracked").config()
    assert (tracked.ensemble_at(1), tracked.ensemble_at(7)) == (7, 1)
    # the preset's own ensemble, at windows without 1: plain replanning, recorded per setting
    EvaluateConfig(Path("d"), windows=(7,), planning=tracked, preset="tracked").validate()
    # --preset is also a free label for results.json: one that names no preset is accepted
    EvaluateConfig(Path("d"), windows=(7,), preset="my-label").validate()
    with pytest.raises(ValueError, match="temporal-ensemble 7 applies at k = 1"):
        EvaluateConfig(Path("d"), windows=(7,), planning=tracked).validate()
    other = PlanningConfig(track_states=True, temporal_ensemble=3)
    with pytest.raises(ValueError, match="temporal-ensemble 3 applies at k = 1"):
        EvaluateConfig(Path("d"), windows=(7,), planning=other, preset="tracked").validate()


def test_evaluate_help_shows_the_experimental_group(capsys) -> None:
    from diffplan.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    assert "planning.experimental options" in text
    for flag in ("warm-start.step", "ensemble-decay", "returns.target"):
        assert f"--planning.experimental.{flag}" in text
        assert f"--planning.{flag}" not in text
