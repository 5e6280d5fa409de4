"""Plugins by entry points (``benchmark.plugins``): a method, backbone or task of a package installed outside the
repository registers under its entry point's name, is listed with its package, is held to the registry contract
(``benchmark.testing``) and runs; a broken one is one message naming its package and entry point while everything
else runs; uninstalling it removes it.

Packages are "installed" the way pip lays them out (a ``<name>-<version>.dist-info`` folder with ``METADATA`` and
``entry_points.txt`` beside the package) into a temporary folder put on ``sys.path`` (in-process tests) or
``PYTHONPATH`` (subprocess tests), never into the shared environment. The example package is copied from
``examples/medssl_example_denoise`` with the entry points of its own ``pyproject.toml``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import search_spaces
from benchmark import plugins
from benchmark.backbones import BACKBONES, BackboneProfile, plugin_problem as backbone_problem
from benchmark.backbones.unet2d import UNet2D
from benchmark.methods import Recipe, plugin_problem as method_problem
from benchmark.registry import Registry
from benchmark.testing import check_backbone, check_method, check_task

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip's own copy of the same reader
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "medssl_example_denoise"
MODULES = ("medssl_example_denoise", "broken_import_mod", "no_config_mod", "dup_mod", "space_mod")


def install(site: Path, package: str, entry_points: dict[str, dict[str, str]], *, modules: dict[str, str] = (), version: str = "0.1.0") -> Path:
    """A package as pip installs it into ``site``: its modules and a dist-info folder with its entry points."""
    dist = site / f"{package.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text("".join(f"[{group}]\n" + "".join(f"{n} = {v}\n" for n, v in eps.items()) + "\n"
                                                   for group, eps in entry_points.items()))
    for name, source in dict(modules).items():
        (site / f"{name}.py").write_text(source)
    return dist


def install_example(site: Path) -> Path:
    """examples/medssl_example_denoise as ``pip install`` lays it out, with its pyproject's entry points."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    shutil.copytree(EXAMPLE / "medssl_example_denoise", site / "medssl_example_denoise")
    return install(site, project["name"], project["entry-points"], version=project["version"])


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A temporary site folder on sys.path; the plugin modules and problems of the test are forgotten afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(plugins, "_PROBLEMS", [])
    yield folder
    for name in MODULES:
        sys.modules.pop(name, None)


BROKEN_IMPORT = "import no_such_dependency_of_this_plugin\n"
NO_CONFIG = '''
from benchmark.methods.base import PretextTask


class NoConfig(PretextTask):
    """A method without its Config."""

    default_backbone = "unet2d"
    supported_backbones = ("unet2d",)
'''


def test_a_plugin_method_registers_under_its_entry_point_name_with_its_package(site):
    install_example(site)
    registry = Registry("method")
    loaded = plugins.load_plugins(plugins.GROUPS["method"], registry, check=method_problem)
    assert [p.name for p in loaded] == ["denoise_ae"]
    cls = registry.get("denoise_ae")
    assert cls.__name__ == "DenoisingAutoencoder" and cls.registry_name == "denoise_ae"
    origin = registry.origin("denoise_ae")
    assert (origin.package, origin.version, origin.value) == ("medssl-example-denoise", "0.1.0", "medssl_example_denoise:DenoisingAutoencoder")
    assert registry.builtin_names() == [] and plugins.problems() == []
    # loading the group again in the same process registers nothing twice
    assert plugins.load_plugins(plugins.GROUPS["method"], registry, check=method_problem) == [] and registry.names() == ["denoise_ae"]


def test_broken_plugins_are_left_out_with_one_message_naming_package_and_entry_point(site):
    install_example(site)
    install(site, "medssl-broken-import", {"medssl_bench.methods": {"broken_import": "broken_import_mod:Broken"}},
            modules={"broken_import_mod": BROKEN_IMPORT})
    install(site, "medssl-no-config", {"medssl_bench.methods": {"no_config": "no_config_mod:NoConfig"}}, modules={"no_config_mod": NO_CONFIG})
    install(site, "medssl-dup", {"medssl_bench.methods": {"csi": "medssl_example_denoise:DenoisingAutoencoder",
                                                          "bad,name": "medssl_example_denoise:DenoisingAutoencoder"}})
    registry = Registry("method")
    registry.register("csi")(type("BuiltInCSI", (), {}))  # the suite's own name
    loaded = plugins.load_plugins(plugins.GROUPS["method"], registry, check=method_problem)
    assert [p.name for p in loaded] == ["denoise_ae"]  # the others still load
    assert registry.names() == ["csi", "denoise_ae"] and registry.get("csi").__name__ == "BuiltInCSI"  # the suite's name wins
    problems = {p.plugin.name: str(p) for p in plugins.problems()}
    assert set(problems) == {"broken_import", "no_config", "csi", "bad,name"}
    for name, text in problems.items():
        assert f"medssl_bench.methods: {name} = " in text and "left out, everything else runs" in text, text
    assert problems["broken_import"].startswith("plugin medssl-broken-import 0.1.0 ")
    assert "ModuleNotFoundError" in problems["broken_import"] and "no_such_dependency_of_this_plugin" in problems["broken_import"]
    assert "NoConfig has no Config" in problems["no_config"]
    assert "taken by medssl-bench itself" in problems["csi"]
    assert "not a registry name" in problems["bad,name"]
    assert plugins.problem_with("medssl_bench.methods", "no_config").plugin.package == "medssl-no-config"
    from benchmark.methods import get_method

    with pytest.raises(KeyError, match="method 'no_config' is not available in this process: plugin medssl-no-config"):
        get_method("no_config")  # e.g. in a Ray worker whose node lacks the plugin's dependency


def test_a_plugin_without_a_search_space_runs_untuned_and_says_so(site):
    install_example(site)
    reason = search_spaces.untuned_reason("denoise_ae")
    assert "plugin without a search space" in reason and "untuned" in reason and "search budget 0" in reason
    assert search_spaces.get_space("denoise_ae")(None) == {}  # nothing to tune: --tune does not fail on it
    assert search_spaces.untuned_reason("csi") is None  # the suite's own methods all have a space
    install(site, "medssl-space", {"medssl_bench.search_spaces": {"denoise_ae": "space_mod:space"}},
            modules={"space_mod": "def space(trial):\n    return {'sigma': trial.suggest_float('sigma', 0.1, 0.5)}\n"})
    assert search_spaces.untuned_reason("denoise_ae") is None
    space = search_spaces.get_space("denoise_ae")
    import optuna

    assert space(optuna.trial.FixedTrial({"sigma": 0.2})) == {"sigma": 0.2}
    with pytest.raises(Exception, match="not a method name|no search space"):
        search_spaces.get_space("not_installed_anywhere")


def test_check_method_passes_the_example_and_names_every_broken_check(site):
    install_example(site)
    from medssl_example_denoise import DenoisingAutoencoder

    check_method(DenoisingAutoencoder, backbones=("unet2d",))

    class Deterministic(DenoisingAutoencoder):
        """Ignores its generator: the same loss for every seed."""

        def forward(self, batch, *, generator):
            x = batch["image"]
            return {"loss": ((self.backbone(x + 0.3) - x) ** 2).mean()}

    with pytest.raises(AssertionError) as info:
        check_method(Deterministic, backbones=("unet2d",))
    text = str(info.value)
    assert "method Deterministic breaks the contract" in text and "on unet2d: check_same_generator_same_loss" in text
    assert "check_loss_is_finite_scalar" not in text  # only what broke


def test_a_backbone_the_suite_adds_later_leaves_a_plugins_contract_intact(site):
    """A plugin method written before the suite gained a backbone still keeps the contract: the backbones it never
    declared (``vgg16_unet`` for the example, one registered now as the suite's own) are clean n/a cells whose
    reason names them, its declared ones run. The suite's own methods are held to declaring every built-in backbone."""
    from benchmark.testing import check_backbone_declarations, check_declares_every_builtin_backbone
    from tasks import get_task

    install_example(site)
    from medssl_example_denoise import DenoisingAutoencoder

    class LaterBackbone(UNet2D):
        """A backbone the suite adds after the plugin was written."""

    BACKBONES.register("later_backbone")(LaterBackbone)  # no origin: one of the suite's own
    try:
        assert "later_backbone" in BACKBONES.builtin_names()
        check_backbone_declarations(DenoisingAutoencoder)
        undeclared = sorted(set(BACKBONES.builtin_names()) - set(DenoisingAutoencoder.supported_backbones))
        assert "later_backbone" in undeclared
        for backbone in undeclared:
            reason = DenoisingAutoencoder.unsupported_reason(task=get_task("brats"), backbone=backbone)
            assert reason is not None and repr(backbone) in reason, reason
        with pytest.raises(AssertionError, match="later_backbone"):
            check_declares_every_builtin_backbone(DenoisingAutoencoder)  # what only the suite's own methods must do
    finally:
        BACKBONES.unregister("later_backbone")

    class SilentNa(DenoisingAutoencoder):
        """Says n/a without naming the backbone."""

        supported_backbones = ("unet2d",)

        @classmethod
        def unsupported_reason(cls, *, task, backbone):
            return None if backbone in cls.supported_backbones else "not here"

    with pytest.raises(AssertionError, match="not here"):
        check_backbone_declarations(SilentNa)


def test_a_plugin_backbone_brings_its_profiles_and_keeps_the_contract(monkeypatch):
    from benchmark.profiles import SMOKE, TINY, with_plugin_backbones

    class NarrowUNet(UNet2D):
        """A U-Net of a plugin package (the suite's unet2d with its own crop and recipes)."""

        profiles = {"smoke": BackboneProfile(roi=(32, 32), finetune=Recipe(steps=40, batch_size=4, lr=1e-2),
                                             pretrain=Recipe(steps=20, batch_size=4, lr=1e-2)),
                    "paper": BackboneProfile(roi=(128, 128), finetune=Recipe(steps=None, epochs=100, batch_size=8, lr=1e-2))}

    assert backbone_problem(NarrowUNet) is None
    assert "profiles lacks" in backbone_problem(type("Bare", (UNet2D,), {"profiles": {}}))
    assert "not a backbone class" in backbone_problem(int)
    check_backbone(NarrowUNet)
    origin = plugins.Plugin(group="medssl_bench.backbones", name="narrow_unet", value="x:NarrowUNet", package="medssl-narrow", version="1")
    BACKBONES.register("narrow_unet", origin=origin)(NarrowUNet)
    try:
        smoke, tiny = with_plugin_backbones(SMOKE), with_plugin_backbones(TINY)
        assert smoke.rois["narrow_unet"] == (32, 32) and smoke.finetune_recipes["narrow_unet"].steps == 40
        assert smoke.smoke_pretrain["narrow_unet"].steps == 20 and tiny.finetune_recipes["narrow_unet"].steps == 2
        assert smoke.rois["unet2d"] == SMOKE.rois["unet2d"]  # the suite's own entries unchanged
        from benchmark.methods import get_method

        assert get_method("scratch").unsupported_reason(task=None, backbone="narrow_unet") is None  # the baseline runs on it
    finally:
        BACKBONES.unregister("narrow_unet")


def test_a_plugin_task_keeps_the_task_contract():
    from tasks.base import TASKS, plugin_problem as task_problem
    from tasks.btcv import BTCV

    class AbdomenCT(BTCV):
        """A dataset of a plugin package in the BTCV layout."""

        description = "an in-house abdomen CT set: ROOT/imagesTr/img00XX.nii.gz with ROOT/labelsTr/label00XX.nii.gz"

    assert task_problem(AbdomenCT) is None and "not a task class" in task_problem(object)
    origin = plugins.Plugin(group="medssl_bench.tasks", name="abdomen_ct", value="x:AbdomenCT", package="medssl-abdomen", version="1")
    TASKS.register("abdomen_ct", origin=origin)(AbdomenCT)
    try:
        check_task("abdomen_ct")
    finally:
        TASKS.unregister("abdomen_ct")


# ---- in a fresh process: listed with its package, gone when uninstalled, a broken one is one message -------------------
def _run(*argv: str, site: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]), "MEDSSL_CACHE": str(cache)}
    return subprocess.run([sys.executable, str(ROOT / "run_benchmark.py"), *argv], env=env, cwd=site.parent, capture_output=True, text=True,
                          timeout=600)


def test_installed_plugin_is_listed_with_its_package_and_uninstalling_removes_it(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    dist = install_example(site)
    install(site, "medssl-broken-import", {"medssl_bench.methods": {"broken_import": "broken_import_mod:Broken"}},
            modules={"broken_import_mod": BROKEN_IMPORT})
    listed = _run("--list", site=site, cache=tmp_path / "cache")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.strip().startswith("denoise_ae "))
    assert "unet2d *vgg_unet,vgg16_unet,resnet_unet,swin_unetr,vit,unetr" in line and line.endswith("[plugin: medssl-example-denoise 0.1.0]")
    assert "plugins left out:" in listed.stdout and "medssl-broken-import 0.1.0 (entry point medssl_bench.methods: broken_import" in listed.stdout
    asked = _run("--methods", "broken_import", "--tasks", "brats", "--profile", "tiny", site=site, cache=tmp_path / "cache")
    assert asked.returncode == 2 and "Traceback" not in asked.stderr
    assert "method 'broken_import' is not available: medssl-broken-import 0.1.0" in asked.stderr and "ModuleNotFoundError" in asked.stderr
    shutil.rmtree(dist)  # pip uninstall removes the dist-info (and the package)
    shutil.rmtree(site / "medssl_example_denoise")
    after = _run("--list", site=site, cache=tmp_path / "cache")
    assert after.returncode == 0 and "denoise_ae" not in after.stdout and "  csi " in after.stdout


@pytest.mark.slow
def test_a_method_installed_outside_the_repository_runs_end_to_end_and_gets_its_row(tmp_path):
    """The issue's must-hold: --methods NAME --tasks brats --profile tiny with the example installed outside the repository
    (no file of the suite edited): its Jobs run on Ray (whose workers find the plugin too) and its row is in the report."""
    site = tmp_path / "site"
    site.mkdir()
    install_example(site)
    out = tmp_path / "out"
    done = _run("--methods", "denoise_ae", "--tasks", "brats", "--profile", "tiny", "--fractions", "100%", "--no-dashboard",
                "--output", str(out), site=site, cache=tmp_path / "cache")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cells = pd.read_csv(out / "cells.csv", keep_default_na=False)
    assert set(map(tuple, cells[["method", "backbone", "status"]].values)) == {("denoise_ae", "unet2d", "done"), ("scratch", "unet2d", "done")}
    assert cells.loc[cells.method == "denoise_ae", "pretrain_hash"].str.len().eq(16).all()
    results = pd.read_csv(out / "results.csv")
    assert len(results[(results.method == "denoise_ae") & (results.metric == "dice_mean")]) == 4  # the brats test cases
    assert "denoise_ae (unet2d)" in (out / "leaderboard.md").read_text()
