"""The Python API (``benchmark.api``) and the command line as a thin layer on it: one set of options with one set of
defaults, keywords that take what the flags take (and lists / dicts), the same validated request either way.
The end-to-end run through ``benchmark.api.run`` is in tests/test_external_checkpoints.py."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from benchmark import api, cli
from benchmark.errors import BenchmarkInputError
from benchmark.methods import get_method


def test_every_run_flag_is_an_api_option_with_the_same_default():
    parser = cli.build_parser()
    dests = {a.dest for a in parser._actions if a.dest != "help"}
    fields = {f.name for f in dataclasses.fields(api.RunOptions)}
    assert dests - fields == {"list", "report"}  # what is not a run: the registries and a report of finished runs
    assert fields <= dests
    defaults = parser.parse_args([])
    assert cli.options(defaults) == dataclasses.replace(api.RunOptions(), cache_dir=defaults.cache_dir)


def test_keywords_take_lists_and_dicts_and_unknown_ones_are_named():
    options = api.options_from(methods=["csi", "dae:cmcl=false"], tasks=("brats",), fractions=["100%", 5], seeds=[0, 1],
                               data_root={"brats": "/data/BraTS"}, hparam={"csi": {"pool_size": 7, "mode": "x"}},
                               pretrained={"mine": "/ckpt/m.pt:backbone=swin_unetr"}, output="out", cache_dir="/tmp/c")
    assert (options.methods, options.tasks, options.fractions, options.seeds) == ("csi,dae:cmcl=false", "brats", "100%,5", "0,1")
    assert options.data_root == ["brats=/data/BraTS"] and options.hparam == ["csi:pool_size=7:mode=x"]
    assert options.pretrained == ["mine=/ckpt/m.pt:backbone=swin_unetr"] and options.output == Path("out") and options.cache_dir == Path("/tmp/c")
    with pytest.raises(BenchmarkInputError, match="unknown option\\(s\\) method, tasks_list; expected some of: methods, tasks"):
        api.options_from(method="csi", tasks_list="brats")


def test_the_api_and_the_command_line_build_the_same_request(tmp_path):
    argv = ["--methods", "csi,dae:cmcl=false", "--hparam", "csi:pool_size=7", "--tasks", "brats", "--fractions", "100%,25%", "--seeds", "0,1",
            "--profile", "tiny", "--cache-dir", str(tmp_path), "--run-name", "same", "--finetune-aug", "mixup", "--mixup-alpha", "0.2"]
    from_cli = cli.build_request(cli.build_parser().parse_args(argv), argv)
    from_api = api.build_request(api.options_from(methods=["csi", "dae:cmcl=false"], hparam={"csi": {"pool_size": 7}}, tasks="brats",
                                                  fractions=["100%", "25%"], seeds=[0, 1], profile="tiny", cache_dir=tmp_path, run_name="same",
                                                  finetune_aug="mixup", mixup_alpha=0.2))
    assert [t.ref for t in from_api.tasks] == [t.ref for t in from_cli.tasks] == ["brats"]  # task objects: built anew each time
    assert dataclasses.replace(from_api, argv=(), tasks=()) == dataclasses.replace(from_cli, argv=(), tasks=())
    assert from_api.argv[0] == "benchmark.api.run" and "--mixup-alpha" in from_api.argv  # config.json records how it was called


def test_pretrained_alone_runs_its_rows_and_scratch_and_bad_rows_are_named(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"not read here")  # the planner reads it; the request only checks the row
    request = api.build_request(api.options_from(pretrained=[f"mine={path}:backbone=unet2d"], tasks="brats", cache_dir=tmp_path))
    assert request.methods == () and [(p.name, p.backbone) for p in request.pretrained] == [("mine", "unet2d")]
    assert request.pretrained[0].location == str(path.resolve())
    for item, message in [(f"mine={path}:backbone=nope", "unknown backbone 'nope'"), (f"m|x={path}", "letters, digits"),
                          ("mine=", "expected NAME=PATH"), (f"scratch={path}", "already a method")]:
        with pytest.raises(BenchmarkInputError, match=message):
            api.build_request(api.options_from(pretrained=[item], tasks="brats", cache_dir=tmp_path))
    with pytest.raises(BenchmarkInputError, match="already a method or another --pretrained row"):
        api.build_request(api.options_from(pretrained=[f"a={path}", f"a={path}"], tasks="brats", cache_dir=tmp_path))


def test_registries_lists_every_registry_with_packages(capsys):
    table = api.registries()
    assert {"method", "backbone", "task", "profile"} == set(table.kind)
    assert {"csi", "scratch", "unet2d", "brats", "nnunet:PATH", "smoke"} <= set(table.name)
    assert (table[table.name.isin(["csi", "unet2d", "brats"])].package == "").all()  # the suite's own: no package
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    # csi's line: its paper backbone, then the others it runs on, read from the registry (a backbone added to the suite
    # changes the list, not this test)
    csi = get_method("csi")
    others = [b for b in csi.supported_backbones if b != csi.default_backbone]
    assert others and f"  csi                {csi.default_backbone} *{','.join(others)}" in out and "profiles:" in out
