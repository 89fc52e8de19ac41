"""``text_envs_app.experiment``, the old home of the main job, is a deprecated facade: every name it had is still
importable from it, is the very object of its new home, and warns (FutureWarning) with that home and the version
that removes it."""

from __future__ import annotations

import importlib
import warnings

import pytest

from text_envs_app import experiment


@pytest.mark.parametrize("name", sorted(experiment.MOVED))
def test_every_old_name_warns_and_is_the_new_object(name):
    module, _, new_name = experiment.MOVED[name].partition(":")
    with pytest.warns(FutureWarning, match=rf"experiment\.{name} moved to {module}\.{new_name}.*removed in "
                                           r"text-envs 0\.3\.0"):
        old = getattr(experiment, name)
    assert old is getattr(importlib.import_module(module), new_name)


def test_from_import_warns_and_unknown_names_fail():
    with pytest.warns(FutureWarning, match=r"text_envs_app\.config"):
        from text_envs_app.experiment import TrainConfig  # noqa: F401
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        experiment.no_such_name  # noqa: B018


def test_importing_the_app_modules_does_not_warn():
    """Our own modules import nothing from the facade: importing each of them raises no FutureWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        for name in ("config", "evaluation", "run_folder", "progress", "train", "eval_job", "engines.sb3", "cli",
                     "bench", "curves", "frontier", "algorithms", "checkpoint", "grue", "rllib_train"):
            importlib.import_module(f"text_envs_app.{name}")
