"""What lets a sweep plan thousands of points (launcher.sweep): each point checked as it is composed and kept only
as its typed copy and its saved config, both sharing what the point does not change with its composition; the
saved configs written section by section; the checks of many configurations one at a time."""
import omegaconf.base
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from launcher.launch import VariantChecks, save_config, write_config
from launcher.schema import CONF_DIR, register_configs
from launcher.sweep import NAME_KEY, PointComposer, interpolations_parsed_once
from launcher.validation import InvalidConfig

POINTS = (["+experiment=fp8_redrafter", "drafter.num_layers=4", "serving.port=7000", "benchmark.concurrency=[1,3]"],
          ["+experiment=fp8_redrafter", "quantization=fp8_kv", "drafter.learning_rate=0.002"],
          ["+experiment=fp8_redrafter", "model.tensor_parallel=2", "drafter.num_layers=2"])  # interpolated by others


@pytest.fixture(scope="module")
def composer():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = compose("config", overrides=["+experiment=fp8_redrafter"], return_hydra_config=True)
        yield PointComposer(loader, master)
    GlobalHydra.instance().clear()


def test_a_points_copies_are_its_config_converted_whole_and_share_the_rest(composer):
    points = [composer.compose_point(overrides) for overrides in POINTS]
    for point in points:
        OmegaConf.update(point.cfg, NAME_KEY, "renamed", merge=False)  # set after composing, as the sweep names it
    unresolved = [composer.plain(point, [NAME_KEY], resolve=False) for point in points]
    assert unresolved == [OmegaConf.to_container(point.cfg, resolve=False) for point in points]
    assert unresolved[2]["drafter"]["tensor_parallel"] == "${model.tensor_parallel}"  # as written
    assert [composer.plain(point, [NAME_KEY]) for point in points] == [
        OmegaConf.to_container(point.cfg, resolve=True) for point in points]
    assert [composer.typed_copy(point, [NAME_KEY]) for point in points] == [OmegaConf.to_object(point.cfg)
                                                                           for point in points]
    # What a point does not change is its composition's, not a copy; what it changes is its own.
    composition = composer.compositions[points[0].composition]
    assert unresolved[0]["quantization"] is composition.unresolved["quantization"] is unresolved[2]["quantization"]
    assert unresolved[0]["drafter"] is not composition.unresolved["drafter"]
    # An interpolation that resolves as in the composition (cluster.storage_root) leaves its section shared.
    assert composer.plain(points[0], [NAME_KEY])["cluster"] is composition.resolved["cluster"]
    assert composer.plain(points[2], [NAME_KEY])["drafter"]["tensor_parallel"] == 2
    assert composition.unresolved["drafter"]["num_layers"] != 4 and composition.unresolved["launcher"][
        "experiment_name"] != "renamed"
    typed = composer.typed_copy(points[0], [NAME_KEY])
    assert typed.model is composer.typed_compositions[points[0].composition].model  # nor interpolates
    assert composer.typed_compositions[points[0].composition].drafter.num_layers != 4
    # Keys the composition does not have: that point is converted whole by whoever needs it.
    assert composer.plain(points[0], ["launcher.no_such.key"]) is None


@pytest.mark.parametrize("changed", [[NAME_KEY], ["launcher.no_such.key"]])  # the second: resolved whole
def test_a_point_resolved_where_it_interpolates_is_its_config_resolved_whole(composer, changed):
    points = [*POINTS, ["+experiment=fp8_redrafter", "drafter.tensor_parallel=${model.pipeline_parallel}"]]
    for overrides in points:
        point, whole = composer.compose_point(overrides), composer.compose_point(overrides).cfg
        OmegaConf.resolve(whole)
        assert "${" in str(OmegaConf.to_container(point.cfg, resolve=False))
        composer.resolve(point, changed)
        assert OmegaConf.to_container(point.cfg, resolve=False) == OmegaConf.to_container(whole, resolve=False)
        assert "${" not in str(OmegaConf.to_container(point.cfg, resolve=False))


def test_interpolations_parsed_once_resolve_as_parsed_each_time(composer):
    original = omegaconf.base.parse
    points = [[*overrides, "model.tensor_parallel=4"] for overrides in POINTS]
    wholes = []
    for overrides in points:
        wholes.append(composer.compose_point(overrides).cfg)
        OmegaConf.resolve(wholes[-1])
    with interpolations_parsed_once():
        assert omegaconf.base.parse is not original
        for overrides, whole in zip(points, wholes):
            cfg = composer.compose_point(overrides).cfg
            OmegaConf.resolve(cfg)
            assert OmegaConf.to_container(cfg) == OmegaConf.to_container(whole)
        assert omegaconf.base.parse.cache_info().hits >= 2 * len(points)  # three texts a point, parsed once each
    assert omegaconf.base.parse is original


def test_a_config_saved_section_by_section_is_the_config_saved_whole(composer, tmp_path):
    points = [composer.compose_point(overrides) for overrides in POINTS]
    dumped, configs = {}, []
    for i, point in enumerate(points):
        configs.append(composer.plain(point, resolve=False))
        save_config(tmp_path / f"whole{i}", point.cfg, POINTS[i], resolve=False)
        write_config(tmp_path / f"parts{i}", configs[-1], POINTS[i], dumped)
        for name in ("config.yaml", "overrides.yaml"):
            assert (tmp_path / f"parts{i}" / name).read_text() == (tmp_path / f"whole{i}" / name).read_text()
    # A section two points share (the first and the last have one composition) was dumped once.
    shared = [key for key in configs[0] if configs[0][key] is configs[2][key]]
    assert "quantization" in shared and "drafter" not in shared
    assert len(dumped) == 3 * len(configs[0]) - len(shared)
    secret = {"cluster": {"env": {"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz0123"}}}
    write_config(tmp_path / "secret", secret, [], dumped)
    assert yaml.safe_load((tmp_path / "secret" / "config.yaml").read_text()) == {
        "cluster": {"env": {"HF_TOKEN": "<redacted>"}}}


def test_configurations_checked_one_at_a_time_say_each_problem_once(composer):
    def cfg(*overrides):
        return composer.compose_point(list(overrides)).cfg

    checks = VariantChecks()
    assert checks.add("a", cfg("+experiment=fp8_redrafter", "drafter.draft_len_per_beam=9"), []) is False
    assert checks.add("b", cfg("+experiment=fp8_redrafter"), []) is True
    with pytest.raises(InvalidConfig) as raised:
        checks.raise_errors()
    assert str(raised.value).splitlines()[1:] == ["  - [a] drafter.draft_len_per_beam=9: longer than the 3 tokens the "
                                                  "drafter predicts (drafter.predict_n_tokens) (allowed: 1..3)"]
    # An override no configuration uses is refused once; one that some configuration uses is not.
    calib = "quantization.calib_size=64"  # BF16 calibrates nothing
    checks = VariantChecks()
    for name in ("bf16", "bf16_again"):
        checks.add(name, cfg("+experiment=bf16", calib), ["+experiment=bf16", calib])
    with pytest.raises(InvalidConfig) as raised:
        checks.raise_errors()
    assert len(str(raised.value).splitlines()) == 2 and "quantization.calib_size='64': this override changes " \
        "nothing, quantization.calibrate=false" in str(raised.value)
    checks.add("fp8", cfg("+experiment=fp8", calib), ["+experiment=fp8", calib])
    checks.raise_errors()
    # A problem every configuration has is said once, without their names.
    checks = VariantChecks()
    for name in ("c", "d"):
        checks.add(name, cfg("+experiment=fp8_redrafter", "drafter.draft_len_per_beam=9"), [])
    with pytest.raises(InvalidConfig) as raised:
        checks.raise_errors()
    assert str(raised.value).splitlines()[1].startswith("  - drafter.draft_len_per_beam=9: longer")


def test_overrides_every_point_has_are_applied_once_to_the_composition():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = compose("config", overrides=["+experiment=fp8_redrafter"], return_hydra_config=True)
        composer = PointComposer(loader, master)
        points = [["+experiment=fp8_redrafter", "serving.port=7000", f"drafter.num_layers={n}",
                   "model.tensor_parallel=2"] for n in (1, 2)]
        composer.share(points)
        assert composer.shared == {"serving.port=7000", "model.tensor_parallel=2"}
        composed = [composer.compose_point(overrides) for overrides in points]
        assert len(composer.compositions) == 1 and [p.keys for p in composed] == [["drafter.num_layers"]] * 2
        for overrides, point in zip(points, composed):
            whole = compose("config", overrides=overrides)
            assert OmegaConf.to_container(point.cfg, resolve=False) == OmegaConf.to_container(whole, resolve=False)
            assert composer.plain(point) == OmegaConf.to_container(whole, resolve=True)
        # One a point also sets within, or around: applied to each point in command-line order, as Hydra does.
        around = [["+experiment=fp8_redrafter", "drafter.num_layers=1", f"drafter={d}"] for d in ("none", "redrafter")]
        within = [["benchmark.concurrency=[1,2]", f"benchmark.concurrency.0={n}"] for n in (3, 4)]
        composer.share(around)
        assert composer.shared == {"drafter.num_layers=1"}  # a group choice is composed before any key is set
        composer.share(within)
        assert composer.shared == set()
    GlobalHydra.instance().clear()
