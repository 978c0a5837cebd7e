"""Shared fixtures. Tests that need ../shared skip with a reason when it is absent (fresh clones)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test saying why."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is only on the developers' machines and CI)")
    return p


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture(autouse=True, scope="session")
def _pile_cache_dir(tmp_path_factory):
    """The identity guard's verdict cache lives in a per-session directory, never the user's."""
    import os

    old = os.environ.get("PILE_CACHE_DIR")
    os.environ["PILE_CACHE_DIR"] = str(tmp_path_factory.mktemp("pile-cache"))
    yield
    if old is None:
        os.environ.pop("PILE_CACHE_DIR", None)
    else:
        os.environ["PILE_CACHE_DIR"] = old


# Tests taking about 0.5 s or more on 2 cores (from `pytest --durations=0`, under load), by node id prefix (a
# prefix covers every parameter of a test). One list here rather than decorators spread over the
# files: `pytest -m "not slow"` runs the rest in well under a minute; plain `pytest` (CI, the
# README's command) still runs everything.
SLOW = (
    "tests/job/test_build.py::test_bad_records_raise_or_are_quarantined",
    "tests/job/test_build.py::test_build_both_variants_outputs",
    "tests/job/test_build.py::test_build_toml_holds_absolute_paths",
    "tests/job/test_build.py::test_config_change_invalidates_only_downstream",
    "tests/job/test_build.py::test_corrupt_output_of_same_size_is_rebuilt",
    "tests/job/test_build.py::test_crash_mid_order_then_other_config_verifies",
    "tests/job/test_build.py::test_disk_full_mid_build_then_resume",
    "tests/job/test_build.py::test_dry_run_estimates_order_and_preshuffle",
    "tests/job/test_build.py::test_held_out_inputs_warn",
    "tests/job/test_build.py::test_kill_at_every_stage_then_resume_is_identical",
    "tests/job/test_build.py::test_killed_order_then_other_config_leaves_nothing_behind",
    "tests/job/test_build.py::test_order_refused_for_disk_space_then_resumes",
    "tests/job/test_build.py::test_precedence_is_flag_then_config_file_then_default",
    "tests/job/test_build.py::test_rerun_is_a_noop",
    "tests/job/test_build.py::test_same_bytes_from_a_corpus_in_another_directory",
    "tests/job/test_build.py::test_same_bytes_with_two_workers",
    "tests/job/test_build.py::test_sigkill_at_arbitrary_time_then_resume_is_identical",
    "tests/job/test_build.py::test_stale_variant_left_out_of_a_build_is_reported",
    "tests/job/test_build.py::test_every_file_of_a_build_is_owned_by_a_stage_spec",
    "tests/job/test_build_sample.py::test_default_build_of_bundled_sample",
    "tests/job/test_own_corpus.py::test_dry_run_shows_epochs_and_warns_about_repetition",
    "tests/job/test_own_corpus.py::test_epochs_build_records_train_iters",
    "tests/job/test_own_corpus.py::test_epochs_rerun_and_change",
    "tests/job/test_own_corpus.py::test_next_commands_all_work_when_pasted",
    "tests/job/test_own_corpus.py::test_refused_after_tokenize_then_the_printed_fix_works",
    "tests/job/test_own_corpus.py::test_refused_before_dedup_when_preshuffle_cannot_fit",
    "tests/cli/test_main_cli.py::test_a_closed_pipe_ends_quietly_like_sigpipe",
    "tests/cli/test_main_cli.py::test_stats_workers_same_answer",
    "tests/cli/test_tokenize_cli.py::test_exclude_dedup_dir_must_match_the_input_list",
    "tests/cli/test_tokenize_cli.py::test_exclude_refuses_an_input_rewritten_since_dedup",
    "tests/cli/test_tokenize_cli.py::test_no_append_eod_and_hf_backend",
    "tests/dedup/test_cli.py::test_dedup_command",
    "tests/dedup/test_config.py::test_fingerprint_ignores_scheduling_fields",
    "tests/dedup/test_criterion.py::test_cli_verify_exact_and_summary",
    "tests/dedup/test_criterion.py::test_criterion_wording_per_mode",
    "tests/dedup/test_criterion.py::test_exact_is_deterministic_across_workers",
    "tests/dedup/test_criterion.py::test_exact_keeps_pairs_below_threshold_that_the_estimate_removes",
    "tests/dedup/test_criterion.py::test_lambada_exact_removes_only_pairs_at_the_threshold",
    "tests/dedup/test_criterion.py::test_manifest_records_input_bytes",
    "tests/dedup/test_export.py::test_export_never_overwrites_inputs_or_the_dedup_directory",
    "tests/dedup/test_lsh.py::test_empirical_candidate_rate_follows_s_curve",
    "tests/dedup/test_lsh.py::test_optimiser_matches_datasketch_choice[0.8-256-expected2]",
    "tests/dedup/test_minhash.py::test_agrees_with_datasketch",
    "tests/dedup/test_minhash.py::test_estimator_is_unbiased",
    "tests/dedup/test_shingle.py::test_giant_document_over_10_mb",
    "tests/dedup/test_shingle.py::test_segmented_documents_give_the_same_shingles",
    "tests/dedup/test_shingle.py::test_vectorised_matches_reference_on_unicode_whitespace",
    "tests/dedup/test_stage.py::test_bundled_sample_planted_clusters",
    "tests/dedup/test_stage.py::test_byte_identical_for_workers_and_reruns",
    "tests/dedup/test_stage.py::test_giant_documents",
    "tests/dedup/test_stage.py::test_planted_duplicates_found_and_one_kept_per_cluster",
    "tests/dedup/test_units.py::test_killed_run_reuses_exactly_its_finished_units",
    "tests/dedup/test_units.py::test_skipped_lines_are_quarantined_the_same_per_unit",
    "tests/dedup/test_units.py::test_units_give_the_same_bytes_on_a_multi_frame_file",
    "tests/dedup/test_units.py::test_units_give_the_same_bytes_on_the_sample",
    "tests/engine/test_local.py::test_workers_exit_when_the_main_process_is_killed",
    "tests/order/test_indexmap.py::test_full_build_equals_reference_on_random_inputs",
    "tests/order/test_indexmap.py::test_scaled_synthetic_build_two_epochs_tiles_the_stream",
    "tests/order/test_indexmap.py::test_vectorised_sample_idx_equals_cpp_loop_port_on_random_inputs",
    "tests/order/test_inspect.py::test_preshuffled_damage_is_reported",
    "tests/order/test_inspect.py::test_preshuffled_equals_document_level_for_every_step",
    "tests/order/test_inspect.py::test_provenance_table_equals_parquet_rows",
    "tests/order/test_inspect.py::test_pythia_document_idx_known_answer",
    "tests/order/test_inspect.py::test_samples_tile_the_flat_stream",
    "tests/read/test_memory.py::test_rss_does_not_grow_on_large_input",
    "tests/read/test_reader.py::test_huggingface_datasets_inputs",
    "tests/test_io.py::test_manifest_round_trip_and_errors",
    "tests/test_locks.py::test_killed_tokenize_run_locks_then_leaves_nothing_behind",
    "tests/test_readme.py::test_library_example_runs_and_matches_pile_build",
    "tests/test_sample.py::test_generator_is_deterministic",
    "tests/test_sample.py::test_pile_line_format",
    "tests/test_verify_cross.py::test_dataset_idx_is_hashed_once",
    "tests/test_verify_cross.py::test_maps_and_preshuffled_of_a_retokenized_dataset_are_stale",
    "tests/test_verify_cross.py::test_preshuffled_from_maps_rebuilt_since",
    "tests/test_verify_cross.py::test_quick_mode_compares_size_and_head_tail_hash",
    "tests/test_verify_cross.py::test_shards_next_to_the_dataset_are_listed_by_their_hash_list",
    "tests/tokenize/test_encoder.py::test_default_file_with_wrong_hash_is_integrity_error",
    "tests/tokenize/test_encoder.py::test_encoder_in_process_pool",
    "tests/tokenize/test_encoder.py::test_every_vocabulary_token_is_its_own_hf_bpe",
    "tests/tokenize/test_encoder.py::test_fast_path_preconditions_hold",
    "tests/tokenize/test_encoder.py::test_fast_path_refuses_tables_it_cannot_reproduce",
    "tests/tokenize/test_encoder.py::test_lone_surrogate_is_input_error",
    "tests/tokenize/test_encoder.py::test_tokenizer_without_eod_is_input_error",
    "tests/tokenize/test_encoder.py::test_unsupported_tokenizer_fast_is_config_error_auto_falls_back",
    "tests/tokenize/test_encoder.py::test_user_path_is_not_hash_checked",
    "tests/tokenize/test_encoder_identity.py::test_identity_blns",
    "tests/tokenize/test_encoder_identity.py::test_identity_every_bmp_code_point",
    "tests/tokenize/test_encoder_identity.py::test_identity_lambada",
    "tests/tokenize/test_encoder_identity.py::test_identity_random_strings",
    "tests/tokenize/test_encoder_identity.py::test_round_trip_is_nfc",
    "tests/tokenize/test_stage.py::test_exclude_a_dedup_directory_from_the_library",
    "tests/tokenize/test_stage.py::test_exclude_worker_invariance",
    "tests/tokenize/test_stage.py::test_skip_policy_with_file_cut_into_ranges",
    "tests/tokenize/test_stage.py::test_worker_count_and_backend_invariance",
    "tests/test_verify.py::test_every_single_byte_flip_of_a_manifest_is_caught",
    "tests/dedup/test_rule.py::test_outputs_identical_across_workers_and_task_splits",
    "tests/dedup/test_rule.py::test_planted_pairs_and_chains_precision_and_recall",
    "tests/tokenize/test_derive.py::test_derived_counts_literal_eod_and_empty_sources",
    "tests/tokenize/test_encoder_identity.py::test_identity_novels_subset",
    "tests/tokenize/test_stage.py::test_tasks_are_balanced_by_bytes",
    "tests/tokenize/test_backends.py::test_mismatch_auto_falls_back_with_a_warning",
    "tests/tokenize/test_backends.py::test_cache_reset_keeps_ids_identical",
    "tests/tokenize/test_backends.py::test_mismatch_explicit_backend_is_config_error",
    "tests/tokenize/test_backends.py::test_auto_prefers_gigatoken_and_says_so",
    "tests/exposure/test_contamination.py::test_fail_above_gives_an_exit_code",
    "tests/exposure/test_contamination.py::test_planted_items_are_found_and_unrelated_text_is_not",
    "tests/exposure/test_contamination.py::test_threshold_is_configurable",
    "tests/exposure/test_cli.py::test_exposure_step_table_json_and_plot",
    "tests/cli/test_tokenize_cli.py::test_tokenize_then_verify",
    "tests/read/test_long_lines.py::test_peak_memory_is_bounded_for_a_one_gib_line",
    "tests/dedup/test_distributed.py::test_one_vs_two_workers_identical_with_many_pair_tasks",
    "tests/dedup/test_distributed.py::test_ray_equals_local_with_many_pair_tasks",
    "tests/tokenize/test_identity_cache.py::test_a_changed_key_reruns_the_guard",
    "tests/tokenize/test_identity_cache.py::test_explicit_backend_uses_the_cache_too",
    "tests/tokenize/test_identity_cache.py::test_failing_verdict_is_cached_and_still_falls_back",
    "tests/tokenize/test_identity_cache.py::test_disabled_by_env",
    "tests/tokenize/test_identity_cache.py::test_unwritable_cache_dir_only_costs_a_rerun",
    "tests/tokenize/test_identity_cache.py::test_a_malformed_entry_is_a_miss",
    "tests/exposure/test_inverse.py::test_report_curve_computed_in_memory_equals_the_stored_one",
    "tests/tokenize/test_identity_cache.py::test_a_new_process_with_a_cached_verdict_loads_only_the_backend",
    "tests/tokenize/test_identity_cache.py::test_corrupt_cache_is_ignored_and_rewritten",
    "tests/tokenize/test_identity_cache.py::test_nfc_divergent_probe_is_cached",
    "tests/tokenize/test_identity_cache.py::test_hit_runs_the_guard_once_and_skips_loading_hf",
    "tests/test_errors.py::test_truncated_input_with_two_workers_exits_3_naming_the_file",
    "tests/tokenize/test_backends.py::test_auto_without_gigatoken_uses_fast",
    "tests/tokenize/test_backends.py::test_every_backend_passes_the_guard",
    "tests/cli/test_tokenize_cli.py::test_exclude_npy",
    "tests/order/test_cli.py::test_a_fresh_process_prints_nothing_on_stderr",
    "tests/cli/test_tokenize_cli.py::test_unit_size_and_cache_give_the_same_bytes",
    "tests/tokenize/test_derive.py::test_derived_equals_tokenized_on_the_bundled_sample",
    "tests/read/test_units.py::test_parallel_planning_gives_the_same_plan_and_cache_bytes",
    "tests/read/test_reader.py::test_datasetdict_reads_one_split_train_by_default",
    "tests/dedup/test_criterion.py::test_fingerprint_records_the_mode_and_the_rule",
)


# module-scoped fixtures that run a whole build: every test using one is slow (else the first
# fast test using it pays the build)
SLOW_FIXTURES = {
    "tests/job/test_build.py": "reference",
    "tests/job/test_own_corpus.py": "one_epoch",
    "tests/test_golden.py": "golden_tree",
    "tests/read/test_remote.py": "s3",  # a moto S3 server, the sample uploaded, builds from s3://
    "tests/engine/test_ray.py": "cluster",  # a local Ray cluster (~12 s to start on 2 cores)
}


def pytest_collection_modifyitems(config, items):
    matched = set()
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if SLOW_FIXTURES.get(path) in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        for prefix in SLOW:
            if item.nodeid == prefix or item.nodeid.startswith(prefix + "["):
                item.add_marker(pytest.mark.slow)
                matched.add(prefix)
    # an entry whose file was collected but that names no test is stale (a renamed test)
    files = {item.nodeid.split("::", 1)[0] for item in items}
    for prefix in SLOW:
        if prefix not in matched and prefix.split("::", 1)[0] in files:
            warnings.warn(
                pytest.PytestWarning(f"tests/conftest.py SLOW: {prefix} matches no test"),
                stacklevel=1,
            )
