"""The option checks of pyro_bnn.options: the library's objects refuse what they refuse, with the same error, and
the module needs no torch."""

import subprocess
import sys

import pytest

from pyro_bnn import BayesianCNN, BayesianMLP, Gaussian, HeteroscedasticGaussian, NormalPrior, StudentTPrior, auto_lowrank
from pyro_bnn.checks import ArgumentError
from pyro_bnn.options import (
    check_guide_options,
    check_likelihood_options,
    check_network_options,
    check_prior_options,
)

CASES = [
    (check_prior_options, dict(scale=0), lambda: NormalPrior(scale=0)),
    (check_prior_options, dict(loc=1e4), lambda: NormalPrior(loc=1e4)),
    (check_prior_options, dict(layer_scales={"net.0": -1}), lambda: NormalPrior(layer_scales={"net.0": -1})),
    (check_prior_options, dict(fan_in="yes"), lambda: NormalPrior(fan_in="yes")),
    (check_prior_options, dict(hyperprior_alpha=2.0), lambda: NormalPrior(hyperprior_alpha=2.0)),
    (check_prior_options, dict(df=float("nan")), lambda: StudentTPrior(df=float("nan"))),
    (check_likelihood_options, dict(scale="0.1"), lambda: Gaussian(scale="0.1")),
    (check_likelihood_options, dict(min_scale=0.0), lambda: HeteroscedasticGaussian(min_scale=0.0)),
    (check_network_options, dict(hidden=[0]), lambda: BayesianMLP((3,), 1, hidden=[0], num_data=10)),
    (check_network_options, dict(activation="swish"), lambda: BayesianMLP((3,), 1, activation="swish", num_data=10)),
    (check_network_options, dict(kernel_size=2), lambda: BayesianCNN((1, 8, 8), 10, kernel_size=2, num_data=10)),
    (check_guide_options, dict(rank=0), lambda: auto_lowrank(BayesianMLP((3,), 1, likelihood=Gaussian(), num_data=10), rank=0)),
    (check_guide_options, dict(init_loc="zeros"), lambda: auto_lowrank(BayesianMLP((3,), 1, likelihood=Gaussian(), num_data=10),
                                                                         init_loc="zeros")),
]


@pytest.mark.parametrize("check, values, build", CASES)
def test_the_library_refuses_what_the_option_check_refuses_in_the_same_words(check, values, build):
    with pytest.raises(ArgumentError) as by_check:
        check(**values)
    with pytest.raises(ArgumentError) as by_object:
        build()
    assert str(by_object.value) == str(by_check.value)
    assert by_check.value.argument.split("[")[0] in values


def test_the_defaults_pass():
    check_prior_options(), check_likelihood_options(), check_network_options(), check_guide_options()


def test_the_config_checks_import_no_torch():
    code = ("import sys, pyro_bnn.options, pyro_bnn.checks, pyro_bnn.training.schedules, pyro_bnn.app.config, "
            "pyro_bnn.app.callbacks, pyro_bnn.app.train; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'pyro')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
