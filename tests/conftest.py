"""Shared fixtures and the test tiers. Tests run offline, quietly, on tiny data.

Tiers (CONTRIBUTING.md): `make test-fast` runs `-m "not slow and not integration"`, `make test`
runs everything but `slow`, `make test-slow` runs `slow`. The `integration` marker is set here,
centrally, so a test file need not say it: a test is integration when it (or a helper or fixture
of its module) starts another process (a CLI run, a fresh interpreter, a lock holder, ruff, mypy,
mkdocs), when its file (INTEGRATION_FILES) runs notebooks, tf.distribute or downloads, or when it
is a whole run in this process that takes seconds (END_TO_END).
"""

from __future__ import annotations

import inspect
import os
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["FASTCOURSE_OFFLINE"] = "1"  # never try a download in tests

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def tiny_config():
    """A config dict for a fast run on the bundled sample; tweak and pass to load_config."""

    def make(**overrides):
        cfg = {
            "name": "tiny",
            "seed": 1,
            "data": {"name": "mnist_sample", "train_limit": 512, "test_limit": 256},
            "model": {"name": "cnn", "filters": [8, 16], "dense": 32},
            "augment": {"name": "none"},
            "train": {"batch_size": 64, "verbose": 0, "schedule": {"name": "constant", "lr": 1e-3}, "epochs": 1},
        }
        for key, value in overrides.items():
            node = cfg
            parts = key.split("__")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        return cfg

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# Files whose every test is integration, and why (the reason is in the marker's description).
INTEGRATION_FILES = {
    "test_notebooks.py": "runs the notebooks",
    "test_distribute.py": "tf.distribute across processes",
    "test_download.py": "downloads (from a local HTTP server)",
    "test_fault_table.py": "every row is a CLI run in a subprocess",
    "test_kill_resume.py": "kills and resumes CLI runs",
    "test_resume.py": "kills and resumes CLI runs",
    "test_lesson3_e2e.py": "the whole lesson through the CLI",
}
# Whole runs in this process (a model trained and its run directory written, VGG16 at full size, a
# benchmark case, a reproduction): seconds each, so they run in `make test`, not in the unit tier.
# Measured with `pytest -m "not slow and not integration" --durations=80`: each took 3 s or more on
# the loaded 2-core machine. An entry is "file::function" (every parametrization) or a full node id;
# tests/test_tiers.py checks that each still names a test.
END_TO_END = {
    "test_bench.py::test_bench_ladder_case_writes_table_and_json",
    "test_bench.py::test_time_to_accuracy_case_on_a_tiny_sample",
    "test_bench.py::test_memory_case_on_tiny_sizes_returns_rss_figures",
    "test_bench.py::test_features_case_compares_folder_with_memory_and_cached_heads",
    "test_bn_stats.py::test_cnn_bn_dropout_one_epoch_recovers_inference_accuracy",
    "test_cli.py::test_run_writes_a_complete_run_directory",
    "test_ensemble.py::test_interrupted_ensemble_resumes_at_first_unfinished_member",
    "test_ensemble.py::test_ensemble_model_saves_reloads_in_safe_mode_and_averages",
    "test_ensemble.py::test_members_of_a_limited_folder_ensemble_see_the_same_images",
    "test_ensemble_reuse_tta.py::test_flip_tta_is_computed_from_mirrored_images_beside_the_plain_ensemble",
    "test_ensemble_reuse_tta.py::test_flip_tta_on_an_image_folder_ensemble",
    "test_ensemble_reuse_tta.py::test_member0_is_the_cnn_bn_dropout_run_also_on_resume",
    "test_ensemble_reuse_tta.py::test_member0_is_trained_when_the_seeds_differ",
    "test_every_kind.py::test_fine_tune_phases_on_an_array_dataset",
    "test_every_kind.py::test_features_with_a_batchnorm_head_on_an_array_dataset",
    "test_every_kind.py::test_vgg16_on_grey_digits_is_one_clear_line",
    "test_explain.py::test_vgg16_totals_match_the_reference",
    "test_faults.py::test_full_disk_while_checkpointing_keeps_the_last_checkpoint",
    "test_faults.py::test_full_disk_while_writing_metrics",
    "test_features_task.py::test_image_folder_train_vs_valid",
    "test_features_task.py::test_logistic_on_pretrained_lenet_features",
    "test_learner.py::test_fine_tune_and_folders",
    "test_learner.py::test_bad_arguments_say_what_to_give",
    "test_learner.py::test_predict_tta_lr_find_views_and_ensemble",
    "test_learner.py::test_config_run_and_learner_give_the_same_metrics",
    "test_learner.py::test_learner_on_a_model_and_a_plain_schedule",
    "test_models.py::test_builder_shape_nan_and_round_trip[alexnet]",
    "test_predict.py::test_folder_run_predicts_what_training_saved",
    "test_predict.py::test_tta_is_the_mean_of_the_clean_and_augmented_predictions",
    "test_predict.py::test_predict_an_array_run_end_to_end",
    "test_predict.py::test_tta_on_a_folder_run_differs_from_clean_and_is_reproducible",
    "test_records.py::test_a_features_run_on_a_folder_counts_extraction_and_says_valid",
    "test_reproduce.py::test_budget_reproduction_on_the_sample",
    "test_reproduce.py::test_budget_without_mnist_uses_the_bundled_sample",
    "test_reproduce.py::test_quick_reproduction_on_the_sample_resumes_and_reports",
    "test_submission.py::test_submit_a_trained_folder_run",
    "test_tensorboard.py::test_tiny_run_writes_scalars_rate_and_images",
    "test_tensorboard.py::test_off_by_default",
    "test_trainer.py::test_true_batchnorm_statistics_after_one_epoch",
    "test_trainer.py::test_same_seed_same_numbers",
    "test_trainer.py::test_a_few_epochs_lower_the_loss",
    "test_vgg.py::test_fine_tune_freezes_the_body_first_then_trains_every_block",
    "test_vgg.py::test_features_task_end_to_end",
    "test_vgg.py::test_vgg16_matches_keras_applications_with_the_same_weights",
    "test_vgg.py::test_features_cache_reuse_and_invalidation_and_augmented_passes",
    "test_vgg.py::test_head_back_on_conv_part_predicts_the_same",
    "test_vgg.py::test_interrupted_precomputation_resumes_at_the_last_chunk",
    "test_vgg.py::test_conv_part_at_other_sizes_bn_variant_and_safe_reload",
    "test_vgg.py::test_discriminative_rates_scale_adam_updates_per_block",
    "test_vgg.py::test_feature_source_streams_from_disk_in_batches",
    "test_vgg.py::test_imagenet_weights_come_from_the_keras_cache_or_fail_clearly",
    "test_views.py::test_views_of_an_array_run",
    "test_views.py::test_views_from_a_predictions_csv_match_views_that_predict",
    "test_views.py::test_views_of_a_folder_run_on_its_own_valid_split",
    # the second measurement (8 s or more on the machine at load 11; 172 s of CPU for the whole tier)
    "test_models.py::test_builder_shape_nan_and_round_trip[resnet50]",
    "test_models.py::test_builder_shape_nan_and_round_trip[efficientnet_b0]",
    "test_models.py::test_builder_shape_nan_and_round_trip[mobilenet_v2]",
    "test_multi_worker.py::test_the_chief_checkpoints_each_epoch_and_a_resumed_run_ends_as_a_straight_one",
    "test_true_figures.py::test_one_epoch_cnn_bn_dropout_on_the_sample",
    "test_true_figures.py::test_the_progress_bar_prints_the_true_figures",
    "test_true_figures.py::test_a_folder_run",
    "test_true_figures.py::test_a_features_head",
    "test_lr_find.py::test_finetune_fits_the_new_top_frozen_as_its_first_phase",
    "test_lr_find.py::test_unfreeze_only_finetune_is_given_in_schedule_units",
    "test_lr_find.py::test_features_fits_the_head_on_the_cache_the_run_then_reuses",
    "test_lr_find.py::test_train_on_arrays",
    "test_lr_find.py::test_finetune_target_is_frozen_and_its_weights_come_back",
    "test_lr_find.py::test_train_on_a_folder",
    "test_lr_find.py::test_sklearn_features_with_pretraining_tests_the_network",
    "test_learner_fastai.py::test_save_never_overwrites_and_load",
    "test_backbones.py::test_explain_matches_keras_for_every_layer",
    "test_backbones.py::test_weights_file_of_a_built_model_round_trips",
    "test_backbones.py::test_imagenet_weights_come_from_the_keras_cache",
    "test_backbones.py::test_structure_cut_points_and_groups[efficientnet_b0]",
    "test_backbones.py::test_structure_cut_points_and_groups[resnet50]",
    "test_bench.py::test_bn_epoch_case_reports_the_overhead_and_true_figures",
    "test_export.py::test_savedmodel_and_tflite_predict_as_the_run",
}
# Names whose use means "another process" (looked up in a test's code, its module's helpers and fixtures).
PROCESS_NAMES = {"subprocess", "Popen", "multiprocessing"}


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _starts_process(fn, module, seen: set[int]) -> bool:
    """Whether `fn`, or a function of `module` it calls (followed transitively), names a process API."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None or id(code) in seen:
        return False
    seen.add(id(code))
    names = _code_names(code)
    if names & PROCESS_NAMES:
        return True
    for name in names:
        helper = getattr(module, name, None)
        if isinstance(helper, types.FunctionType) and helper.__module__ == module.__name__:
            if _starts_process(helper, module, seen):
                return True
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        filename = item.path.name
        if (
            filename in INTEGRATION_FILES
            or {f"{filename}::{item.originalname}", f"{filename}::{item.name}"} & END_TO_END
        ):
            item.add_marker(pytest.mark.integration)
            continue
        module = item.module
        fixtures = getattr(item, "_fixtureinfo", None)
        fixture_funcs = [
            d.func
            for defs in (fixtures.name2fixturedefs.values() if fixtures else ())
            for d in defs
            if getattr(d.func, "__module__", None) == module.__name__
        ]
        seen: set[int] = set()
        if any(_starts_process(fn, module, seen) for fn in [item.function, *fixture_funcs]):
            item.add_marker(pytest.mark.integration)
