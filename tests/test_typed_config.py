"""The typed config the plan reads (launcher.plan.typed_config): the schema's dataclasses, made cheaply for sweep
points (launcher.sweep.PointComposer.typed), and planning from it hashes exactly what planning from the DictConfig
hashed."""
from dataclasses import is_dataclass

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from launcher.plan import build_plan
from launcher.schema import CONF_DIR, Config, register_configs
from launcher.sweep import PointComposer


def _stage_lines(plan):
    return [f"{name} {s.fingerprint} {s.artifact} {s.commands} {s.config_subset}" for name, s in plan.stages.items()]


def test_a_points_typed_copy_is_its_config_converted_whole():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        from hydra.core.global_hydra import GlobalHydra as GH

        loader = GH.instance().config_loader()
        master = compose("config", overrides=["+experiment=fp8_redrafter"], return_hydra_config=True)
        composer = PointComposer(loader, master)
        points = (["+experiment=fp8_redrafter", "drafter.num_layers=4", "serving.port=7000",
                   "benchmark.concurrency=[1,3]", "launcher.dry_run=true"],
                  ["+experiment=fp8_redrafter", "quantization=fp8_kv", "drafter.learning_rate=0.002",
                   "launcher.dry_run=true"],
                  # drafter.tensor_parallel interpolates it
                  ["+experiment=fp8_redrafter", "model.tensor_parallel=2", "launcher.dry_run=true"])
        composed = [composer.compose_point(overrides) for overrides in points]
        cheap = [point.cfg for point in composed]
        typed = [composer.typed_copy(point) for point in composed]
        assert typed == [OmegaConf.to_object(point) for point in cheap]
        assert all(isinstance(copy, Config) for copy in typed)
        assert typed[2].drafter.tensor_parallel == 2
        assert typed[0].benchmark.concurrency == [1, 3]
        # The plan of a typed config is the plan of its DictConfig: every fingerprint, path, command and value.
        dict_plan = build_plan("typed", {"a": cheap[1], "b": cheap[2]})
        typed_plan = build_plan("typed", {"a": typed[1], "b": typed[2]})
        assert _stage_lines(typed_plan) == _stage_lines(dict_plan)
        assert all(is_dataclass(stage.cfg) for stage in dict_plan.stages.values())
