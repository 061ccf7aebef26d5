"""Run presets and --set overrides."""
import pytest

from jobs.kinds import JobParamsError
from ksg_web.runs.pipeline import RUN_STAGES, run_stage_params
from ksg_web.runs.presets import PRESETS, preset_stages


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_validates_for_every_stage(preset):
    resolved = run_stage_params(preset_stages(preset))
    assert list(resolved) == list(RUN_STAGES)


def test_paper_preset_has_the_papers_scale():
    paper = PRESETS["paper"]
    assert (paper["dp_finetune"]["lora_rank"], paper["dp_finetune"]["lora_alpha"], paper["dp_finetune"]["max_length"]) == (16, 32, 512)
    assert paper["generate"]["num_instructions"] == 1000


def test_run_wide_choices_and_typed_overrides_apply():
    stages = preset_stages("demo", domain="finance", target_epsilon=2.5, base_model="/models/local", professional_model="/models/expert",
                           overrides=["generate.num_instructions=100", "filter.relevance_threshold=0.6", "distill.backend=transformers"])
    assert stages["dp_finetune"]["target_epsilon"] == 2.5
    assert stages["generate"]["num_instructions"] == 100 and stages["filter"]["relevance_threshold"] == 0.6
    assert {stages[k]["domain"] for k in ("generate", "filter", "distill")} == {"finance"}
    assert stages["generate"]["base_model"] == stages["finetune_target"]["base_model"] == "/models/local"
    assert stages["filter"]["professional_model"] == stages["distill"]["professional_model"] == "/models/expert"
    assert PRESETS["demo"]["generate"]["num_instructions"] == 40  # the preset itself is untouched


@pytest.mark.parametrize("override, message", [
    ("generate.num_instructions", "write stage.field=value"),
    ("mine.x=1", "unknown stage 'mine'"),
    ("selftest.steps=5", "selftest is not a stage of a run"),
    ("generate.colour=blue", "generate has no field 'colour'"),
    ("generate.num_instructions=many", "needs a int"),
])
def test_bad_overrides_say_what_to_write(override, message):
    with pytest.raises(JobParamsError, match=message):
        preset_stages("demo", overrides=[override])


def test_unknown_preset_and_input_overrides_are_refused():
    with pytest.raises(JobParamsError, match="unknown preset 'huge'"):
        preset_stages("huge")
    stages = preset_stages("demo", overrides=["generate.adapter_artifact=3"])
    with pytest.raises(JobParamsError, match="generate.adapter_artifact is set by the run"):
        run_stage_params(stages)


def test_demo_preset_judges_at_least_64_questions():
    # each judged in both answer orders, so the win-rate and the judge's consistency have intervals
    # about +-0.12 wide rather than the +-0.3 of 8 questions
    assert PRESETS["demo"]["evaluate"]["generation_records"] >= 64


def test_presets_sample_their_attacks_and_judge_in_looks_up_to_caps_that_allow_them():
    for preset in PRESETS.values():
        evaluate = preset["evaluate"]
        assert evaluate["sequential_looks"] == 3
        assert min(evaluate["reconstruction_targets"], evaluate["generation_records"]) >= 2 ** (3 - 1)


@pytest.mark.parametrize("overrides, message", [
    (["evaluate.reconstruction_targets=3"], r"evaluate.reconstruction_targets=3 is too small for sequential_looks=3: "
                                            r".* need a cap of at least 4 targets; raise reconstruction_targets or lower"),
    (["evaluate.generation_records=2"], r"evaluate.generation_records=2 is too small for sequential_looks=3: "
                                        r".* at least 4 questions"),
    (["evaluate.sequential_looks=7"], "evaluate.sequential_looks must be at most 6"),
])
def test_caps_too_small_for_their_looks_are_refused_with_what_to_change(overrides, message):
    with pytest.raises(JobParamsError, match=message):
        run_stage_params(preset_stages("demo", overrides=overrides))


def test_one_look_keeps_any_cap_as_a_fixed_size():
    stages = preset_stages("demo", overrides=["evaluate.generation_records=2", "evaluate.sequential_looks=1"])
    assert run_stage_params(stages)["evaluate"]["generation_records"] == 2
