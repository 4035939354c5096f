"""The results tables and variant artifacts: the only module that writes under ``results/``.

Per recipe, ``results/<recipe>/`` holds:

* ``quality.csv`` / ``.parquet``: one row per variant x dataset x JPEG quality x protocol;
* ``cost.csv`` / ``.parquet``: one row per variant x resolution (480p30, 720p30, 1080p30);
* ``variants.csv`` / ``.parquet``: quality rows joined with the 720p30 cost row of their variant;
* ``<variant>/``: the variant's artifacts (resolved recipe, plan, weights, quant config, ONNX, done marker).

Tables are long-format with provenance in columns (recipe hash, git SHA, package versions, seed,
time). Appending is atomic and idempotent: under a file lock the table is read, the new rows
replace any row with the same key (a re-run never duplicates), and the result is written to a
temporary file that replaces the table with ``os.replace``. :func:`results_readme` documents every
file and column; ``results/README.md`` is its output.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from compress.fsio import atomic_write, atomic_write_bytes

QUALITY_FILE = "quality.csv"
COST_FILE = "cost.csv"
VARIANTS_FILE = "variants.csv"
DONE_FILE = "done.json"
JOIN_RESOLUTION = "720p30"

PROVENANCE_COLUMNS: dict[str, str] = {
    "recipe_hash": "SHA-256 of the variant's resolved recipe (canonical JSON)",
    "run_key": "SHA-256 of the resolved recipe plus the hashes of its input checkpoints: the cache key",
    "student_checkpoint": "SHA-256 of the student checkpoint file, or 'fresh' for initialised weights",
    "git_sha": "commit of the code that produced the row (+dirty when the tree had changes)",
    "torch_version": "torch version",
    "torch_pruning_version": "torch-pruning version (distribution metadata)",
    "brevitas_version": "brevitas version",
    "nncf_version": "nncf version",
    "onnxruntime_version": "onnxruntime version",
    "seed": "the recipe's global seed",
    "created": "UTC time the variant finished (ISO 8601)",
    "notes": "warnings of the run (e.g. a fallback dataset, a freshly initialised student), '; '-joined",
}

QUALITY_COLUMNS: dict[str, str] = {
    "recipe": "recipe name",
    "variant": "variant id: readable sweep values + first 8 hex digits of the recipe hash",
    "variant_name": "readable part of the variant id",
    "dataset": "dataset actually evaluated (the fallback's name when the requested set was missing)",
    "quality": "JPEG quality of the input",
    "protocol": "evaluation protocol (see compress.protocols)",
    "n_images": "images averaged",
    "comparable": "False when the numbers cannot be set beside published tables (embedded sample images)",
    "psnr": "mean PSNR (dB) of the variant's output",
    "ssim": "mean SSIM of the variant's output",
    "psnrb": "mean PSNR-B (dB) of the variant's output",
    "jpeg_psnr": "mean PSNR (dB) of the JPEG input (the baseline)",
    "jpeg_ssim": "mean SSIM of the JPEG input",
    "jpeg_psnrb": "mean PSNR-B (dB) of the JPEG input",
    **PROVENANCE_COLUMNS,
}

COST_COLUMNS: dict[str, str] = {
    "recipe": "recipe name",
    "variant": "variant id",
    "variant_name": "readable part of the variant id",
    "resolution": "480p30 (720x480), 720p30 (1280x720) or 1080p30 (1920x1080)",
    "width": "frame width (px)",
    "height": "frame height (px)",
    "params": "parameters of the compressed model",
    "layers": "convolution / linear layers",
    "macs": "MACs per frame, thop's count (ConvTranspose2d per output pixel: the published convention)",
    "macs_true": "MACs per frame of convolutions and linear layers, ConvTranspose2d per input pixel",
    "tflops": "published convention: macs x 30 fps / 1e12 (1 MAC counted as 1 FLOP)",
    "tflops_true": "macs_true x 30 fps / 1e12",
    "memory_mb": "torchsummary-style estimated total size (MiB, fp32): input + 2 x outputs + params",
    "peak_activation_mb": "peak live tensor bytes of one fp32 batch-1 inference (MiB)",
    "weight_bits": "weight bit width (32 = float)",
    "act_bits": "activation bit width (32 = float)",
    "quant_backend": "brevitas, nncf, or none",
    "model_bytes": "size of the deployable file, model.onnx (bytes)",
    "weights_bytes": "size of weights.safetensors (bytes; fake-quantized weights are stored as float)",
    "onnx_bytes": "size of model.onnx (bytes)",
    "onnx_path": "the variant's model.onnx, relative to results/<recipe>/ (what the latency targets run)",
    "train_wall_s": "seconds spent in training loops (finetune, distill, QAT) for this variant (a stage "
    "copied from another variant counts the seconds it was trained in)",
    **PROVENANCE_COLUMNS,
    "graph_signature": "SHA-256 of model.onnx's structure without names or weight values (compress.deploy."
    "graph_signature): a latency measured on one variant of a graph holds for the others (fronts use it)",
    **{  # the training budget of the variant (compress.results.train_budget), the same on each resolution row
        "train_steps": "optimizer steps over all training stages (finetune, distill, quantize with mode qat; "
        "0 = nothing trains: prune / ptq calibration takes no optimizer step)",
        "train_batch": "patches per step, when every training stage uses the same (else empty: see train_budget)",
        "train_patch": "training patch side (px), when every training stage uses the same (else empty)",
        "train_pixels": "patch pixels the optimizer saw: sum over training stages of steps x batch x patch^2 (a "
        "total comparable across batch and patch sizes)",
        "train_budget": "each training stage in order as `<stage> <steps>x<batch>x<patch>` joined by ` + ` (stage: "
        "finetune, distill or qat), e.g. `finetune 30000x16x48 + qat 4000x16x48`; `none` when nothing trains",
        "train_cpu": "the machine train_wall_s was measured on (compress.deploy.cpu_name, as latency.csv's cpu); "
        "empty for rows written before the column existed (their budget columns were filled from the variant's "
        "recipe.yaml by `compress card --results DIR --backfill`)",
    },
    **{  # which variants are replicates of one another (compress.results.condition_keys)
        "condition_key": "16 hex digits of SHA-256 of the variant's settings without its name, description, "
        "evaluation sets, stage labels, export-check tolerances and seeds (teachers by their settings, not their "
        "names): variants of any recipe with "
        "the same key are seed replicates of one condition, which `compress summary` pools",
        "replicate_key": "the same with the seeds kept: two variants with the same key are the same run "
        "(summary counts it once)",
    },
}
BUDGET_COLUMNS = ("train_steps", "train_batch", "train_patch", "train_pixels", "train_budget")
"""The cost columns :func:`train_budget` computes from a variant's stages (``train_cpu`` is recorded by the run)."""
KEY_COLUMNS = ("condition_key", "replicate_key")
"""The cost columns :func:`condition_keys` computes from a variant's resolved recipe."""
_INT_COLUMNS = ("train_steps", "train_batch", "train_patch", "train_pixels")  # nullable integers (pandas Int64)

LATENCY_COLUMNS: dict[str, str] = {  # written by compress.deploy (LatencyRecord), documented here with the rest
    "variant": "variant id (joins quality.csv and cost.csv)",
    "target": "hardware target name (recipes/targets/<target>.yaml)",
    "runtime": "onnxruntime or openvino",
    "resolution": "480p30, 720p30 or 1080p30",
    "width": "frame width (px)",
    "height": "frame height (px)",
    "precision": "precision the target was asked to run (fp32, bf16, int8)",
    "precision_effective": "precision the runtime really used (OpenVINO falls back to f32 without bf16 hardware)",
    "quantized_by": "what made the INT8 graph: the variant's own QDQ export, or nncf post-training on the fp32 ONNX",
    "fusion": "onnxruntime Q/DQ fusion check: full, partial (e.g. ConvTranspose kept float) or none; '-' otherwise",
    "threads": "inference threads (fixed)",
    "n": "timed runs after warm-up",
    "warmup": "untimed warm-up runs",
    "ms_median": "median milliseconds per frame",
    "ms_p90": "90th percentile milliseconds per frame",
    "ms_min": "fastest run (ms)",
    "ms_max": "slowest run (ms)",
    "load_avg": "1-minute load average when timing started (a busy machine makes slow numbers)",
    "load_avg_end": "1-minute load average when timing ended",
    "peak_rss_mb": "peak RSS rise of a fresh subprocess running one inference (MiB)",
    "rss_hwm_mb": "that subprocess's RSS high-water mark (MiB)",
    "analytic_peak_mb": "peak_activation_mb of cost.csv at this resolution, for comparison",
    "onnx_path": "the ONNX file timed",
    "onnx_sha256": "its SHA-256",
    "runtime_version": "onnxruntime / openvino version",
    "cpu": "the machine: processor model and its vector extensions in brackets (compress.deploy.cpu_isa, e.g. "
    "`AMD EPYC [avx512+vnni+bf16]`); part of the key, so timings of two machines never mix",
    "timestamp": "when it was measured (UTC)",
    "graph_signature": "SHA-256 of the graph's structure without names or weight values (compress.deploy."
    "graph_signature): variants sharing it cost the same, and fronts use the median of their latencies",
    "probe_gflops": "fp32 matmul GFLOP/s of the CPU probe around the accepted timing (the lower of before / after; "
    "compress.deploy.QuietGuard): how much of the CPU the timing got; empty before the guard existed",
    "probe_ref_gflops": "the guard's reference then: the 90th percentile of its probes in that process",
    "attempts": "timings taken until one was quiet (probe >= 0.75 x reference) or the wait ran out",
}

DEPLOYED_COLUMNS: dict[str, str] = {  # written by compress.deployed
    "recipe": "recipe name",
    "variant": "variant id (joins quality.csv, cost.csv and latency.csv)",
    "variant_name": "readable part of the variant id",
    "target": "hardware target whose runtime scored the graph (recipes/targets/<target>.yaml)",
    "runtime": "onnxruntime or openvino",
    "precision": "precision the graph ran in (int8 for QDQ graphs; fp32 / bf16 hint for float graphs)",
    "dataset": "dataset evaluated",
    "quality": "JPEG quality of the input",
    "protocol": "evaluation protocol",
    "n_images": "images averaged",
    "psnr": "mean PSNR (dB) of the deployed graph's output",
    "ssim": "mean SSIM of the deployed graph's output",
    "psnrb": "mean PSNR-B (dB) of the deployed graph's output",
    "jpeg_psnr": "mean PSNR (dB) of the JPEG input",
    "torch_psnr": "the variant's torch PSNR on the same selection (quality.csv)",
    "delta_psnr": "psnr - torch_psnr (dB): what deployment costs",
    "threads": "runtime threads",
    "onnx_path": "the ONNX file scored, relative to results/<recipe>/",
    "onnx_sha256": "its SHA-256",
    "runtime_version": "onnxruntime / openvino version",
    "cpu": "the machine, as in latency.csv (INT8 kernels differ between CPUs: VNNI or not); part of the key",
    "timestamp": "when it was scored (UTC)",
}

QUALITY_KEY = ("variant", "dataset", "quality", "protocol")
DEPLOYED_KEY = ("variant", "target", "dataset", "quality", "protocol", "cpu")  # one row per machine
DEPLOYED_FILE = "deployed.csv"
COST_KEY = ("variant", "resolution")

ARTIFACTS: dict[str, str] = {
    "recipe.yaml": "the resolved recipe of the variant (no sweep): run alone, it makes the same model",
    "plan.json": "every stage's plan in order (pruning history, distillation and training records, "
    "quant config, export check; reused_from: the variant whose identical finished stage was copied); "
    "with the base model it rebuilds the variant (compress.stages.replay)",
    "weights.safetensors": "the compressed model's state dict (no pickle)",
    "quant.json": "quantization config (backend, bits, per-layer schemes; NNCF's own config) or backend null",
    "model.onnx": "the deployable ONNX graph (fp32, or QDQ for quantized variants), checked in onnxruntime",
    "done.json": "run key, time and outcome: a variant whose run key matches is skipped unless --force",
    "stages/": "per-stage training logs and checkpoints (start.json: the stage key and its start model)",
    "README.md": "the variant's card (compress.cards.render_variant_card), made only from the tables and the "
    "files above: student, stages (one line each, every setting), plan summary (pruned widths, removed layers, "
    "quantization, export check), training budget and wall time, quality rows, cost at 480p / 720p / 1080p, "
    "deployed scores and latency medians when the folder has them, and the command that reproduces it; "
    "`compress run` writes it, `compress deployed` / `compress latency --results` refresh it, and `compress card "
    "--results results/<recipe>` rewrites the cards whose rows changed",
}

POINTS_COLUMNS: dict[str, str] = {  # written by compress.pareto.write_fronts; front.csv lacks the last three
    "target": "hardware target (recipes/targets/<target>.yaml)",
    "illustrative": "true for an analytic target with hypothetical budgets (edge NPU, TV chip), not a measured device",
    "machine": "on a latency axis: whose latency and deployed rows (latency.csv `cpu`, `+`-joined when pooled); "
    "else empty",
    "dataset": "dataset of the quality axis",
    "quality": "JPEG quality of the quality axis",
    "protocol": "evaluation protocol of the quality axis",
    "variants_scored": "variants with a quality row on this dataset, quality and protocol (the points drawn, seeds not "
    "yet pooled)",
    "variants_at_quality": "variants with a quality row at this quality and protocol on any dataset; where it exceeds "
    "`variants_scored` (a set rescored for some variants only, e.g. B200) the plot titles say \"scored for n of the N "
    "variants\" and the front is one among those",
    "cost_axis": "what `x` is: params, tflops, tflops_true, memory_mb, peak_activation_mb, latency_ms or model_bytes",
    "resolution": "resolution of `x` where the cost depends on it (480p30, 720p30, 1080p30), else empty",
    "quality_axis": "what `y` is: psnr, ssim, psnrb, or their gain over the JPEG input (`*_gain`)",
    "key": "the variant's key: its id, or `<results folder>/<id>` where two folders share an id",
    "variant": "variant id (with --seeds mean: the replicate nearest the condition's mean, the one to ship)",
    "results": "the results folder (recipe) of the variant",
    "y": "quality (see quality_axis; with --seeds mean the mean over the condition's seeds)",
    "variant_name": "readable part of the variant id",
    "y_from": "where `y` comes from: torch, the target runtime's deployed score (`<runtime> <precision>`), or "
              "`torch fp32 (runs at <p>; no <p> score)` for a float model down-cast by the target",
    "label": "the point's label in the plots (seed conditions: name and seed count)",
    "weight_bits": "weight bit width (cost.csv)",
    "act_bits": "activation bit width (cost.csv)",
    "params": "parameters (cost.csv)",
    "model_bytes": "size of model.onnx (cost.csv)",
    "x_n": "on a latency axis: measured variants whose median `x` is (variants of one graph share it)",
    "x_timed": "on a latency axis: false for a variant not timed itself, which takes its graph's median",
    "x": "cost (see cost_axis)",
    "precision": "the precision the target runs the variant in (int8, bf16, fp16, fp32; float models may be "
                 "down-cast to the target's fp16 / bf16)",
    "weights_mb_at_precision": "MiB of weights charged against the target's weights budget: params x bytes of "
                               "`precision` (compress.targets.weights_mb_at)",
    "activations_mb_at_precision": "MiB of live activations charged against the target's activations budget: the "
                                   "fp32 analytic peak at the budget's resolution x bytes of `precision` / 4 (empty "
                                   "without such a budget)",
    "settings": "hover text: `k=v; ...` of the cost.csv columns that differ between the variants (metrics excluded)",
    "seeds": "scores averaged into `y` (1 with --seeds each)",
    "y_sd": "standard deviation of the seeds' scores (empty for one)",
    "members": "the keys of the condition's replicates, `;`-separated",
    "reason": "why the variant is not eligible for the target (precision, budget); empty when it is",
    "eligible": "fits the target's precisions and budgets",
    "on_front": "non-dominated among the eligible points (quality up, cost down)",
}

BENCH_MACHINE_COLUMNS: dict[str, str] = {  # compress.bench.machine(), prefixed, and the time of the run
    "machine_cpu": "the machine (compress.deploy.cpu_name: model name and vector extensions)",
    "machine_cores": "logical cores (os.cpu_count)",
    "machine_torch": "torch version",
    "machine_python": "Python version",
    "measured": "when it was measured (local time, ISO 8601)",
}

BENCH_LATENCY_EXTRA: dict[str, str] = {  # compress.deploy.bench_latency adds these to latency.csv's columns
    "fps": "1000 / ms_median",
    "gmacs": "true GMACs of one frame",
    "achieved_gflops": "2 x MACs / median seconds / 1e9",
    "peak_gflops_fp32": "fp32 matmul peak GFLOP/s measured with the same threads in the same run",
    "matmul_size_fp32": "side of the square matrices of that peak measurement",
    "frac_fp32_peak": "achieved_gflops / peak_gflops_fp32",
    "peak_gflops_bf16": "bf16 matmul peak GFLOP/s (emulated where the CPU has no bf16)",
    "matmul_size_bf16": "side of the bf16 peak's matrices",
    "frac_bf16_peak": "achieved_gflops / peak_gflops_bf16",
    "peak_load_avg": "1-minute load average when the peaks were measured",
}

PAIRED_EXTRA: dict[str, str] = {
    "run": "when the paired comparison started (UTC): compare graphs within one run",
    "round": "round number: every graph is timed once per round, in turn",
    "probe_gflops": "fp32 matmul GFLOP/s of the CPU probe after the round",
    "load_avg": "1-minute load average at the round",
}

TRAIN_SPEED_COLUMNS: dict[str, str] = {  # compress.bench.TrainSpeed, then the peaks and the machine
    "model": "registered model name",
    "setting": "fp32, channels_last, bf16 autocast, torch.compile, or their combinations",
    "patch": "training patch side (px)",
    "batch": "patches per step",
    "threads": "torch threads",
    "ms_per_step": "median milliseconds per training step (forward + backward + Adam)",
    "pixels_per_s": "batch x patch^2 / seconds per step",
    "gmacs_per_s": "3 x forward true MACs per step / seconds / 1e9",
    "fraction_of_fp32_peak": "2 x gmacs_per_s / the fp32 matmul peak",
    "fraction_of_bf16_peak": "2 x gmacs_per_s / the bf16 matmul peak",
    "load_avg": "1-minute load average",
    "note": "why a row was not measured (e.g. torch.compile unavailable)",
    "peak_fp32_gflops": "fp32 matmul peak GFLOP/s measured in the same run",
    "peak_bf16_gflops": "bf16 matmul peak GFLOP/s measured in the same run",
}

EVAL_TIME_COLUMNS: dict[str, str] = {
    "model": "model evaluated",
    "dataset": "dataset",
    "quality": "JPEG quality",
    "protocol": "evaluation protocol",
    "n_images": "images",
    "seconds": "wall time of the whole evaluation",
    "seconds_per_image": "seconds / n_images",
    "threads": "torch threads",
    "load_avg": "1-minute load average",
}

LOADER_COLUMNS: dict[str, str] = {
    "reference_patches_per_s": "training patches per second of the reference loader (decodes an image per patch)",
    "fast_patches_per_s": "patches per second of ours (compress.data)",
    "ratio": "fast_patches_per_s / reference_patches_per_s",
    "fast_setup_s": "seconds ours spends once before the first patch (decoding and caching the images)",
    "images": "training images",
    "patch": "patch side (px)",
    "load_avg": "1-minute load average",
}

TTQ_COLUMNS: dict[str, str] = {
    "ablation": "ttq_ablation.csv only: the recipes/ablations/*.yaml file",
    "run": "ttq_ablation.csv only: the run of that file (its settings)",
    "recipe": "the training recipe (`reference-code`: the brief's reference loop re-run here)",
    "model": "architecture trained",
    "seconds": "wall time since the run started",
    "minutes": "seconds / 60",
    "step": "optimizer steps done at the snapshot",
    "dataset": "dataset scored",
    "quality": "JPEG quality",
    "protocol": "evaluation protocol",
    "n_images": "images scored",
    "psnr": "PSNR (dB) of the snapshot",
    "ssim": "SSIM of the snapshot",
    "jpeg_psnr": "PSNR (dB) of the JPEG input",
    "load_avg": "1-minute load average when the snapshot was taken",
    "pixels_seen": "ttq_ablation.csv only: steps x batch x patch^2 at the snapshot (the equal budget)",
    "threads": "torch threads of the run",
    "load_avg_at_start": "1-minute load average when the run started",
    "patch_size": "training patch side (px)",
    "batch_size": "patches per step",
    "steps": "steps of the whole run",
    "lr": "peak learning rate",
    "warmup_steps": "linear warm-up steps",
    "min_lr_ratio": "final learning rate / lr (cosine decay)",
    "loss": "training loss (l1, l2)",
    "init": "initialisation",
    "precision": "fp32 or bf16 autocast",
}

TTQ_SUMMARY_COLUMNS: dict[str, str] = {
    "machine_cpu": "the machine",
    "recipe": "training recipe",
    "model": "architecture",
    "jpeg_psnr": "PSNR (dB) of the JPEG input",
    "best_psnr": "the run's best PSNR (dB)",
    "run_minutes": "length of the run (minutes)",
    "reference": "whether the reference curve was measured on that machine or is issue 9's quoted table",
    "target_jpeg_plus_1db_psnr": "the first mark: JPEG + 1 dB",
    "minutes_to_jpeg_plus_1db": "minutes this run took to reach it (empty: never)",
    "reference_minutes_to_jpeg_plus_1db": "minutes the reference took",
    "speedup_jpeg_plus_1db": "reference minutes / this run's minutes",
    "target_reference_30min_psnr": "the second mark: the reference's PSNR after 30 minutes",
    "minutes_to_reference_30min": "minutes this run took to reach it",
    "reference_minutes_to_reference_30min": "minutes the reference took (30, or its curve's)",
    "speedup_reference_30min": "reference minutes / this run's minutes",
}

SPEED_GOAL_COLUMNS: dict[str, str] = {  # written by compress.speedgoal (compress bench speedgoal)
    "target": "hardware target",
    "resolution": "480p30, 720p30 or 1080p30",
    "floor_psnr": "the quality floor: the goal dataset's JPEG PSNR + goal_min_gain_db",
    "variant": "the fastest timed variant at or above the floor (`<recipe>/<variant id>`)",
    "psnr": "its PSNR (dB; deployed score where deployed.csv has one)",
    "ms": "its median ms per frame (per-graph median, as on the fronts)",
    "seeds": "with --seeds mean: seed replicates averaged into psnr",
    "psnr_sd": "their standard deviation",
    "met": "ms within goal_budget_ms",
    "fastest_variant": "the fastest timed variant of all",
    "fastest_psnr": "its PSNR",
    "fastest_ms": "its ms",
    "best_variant": "the best-scoring timed variant",
    "best_psnr": "its PSNR",
    "best_ms": "its ms",
    "best_seeds": "seeds averaged into best_psnr",
    "short_db": "how far the best timed variant is below the floor when none reaches it (dB)",
    "distance_of": "which variant ms_over_budget / x_budget describe: `qualifying`, or `best` where none qualifies",
    "ms_over_budget": "that variant's ms - goal_budget_ms (negative: inside the budget)",
    "x_budget": "that variant's ms / goal_budget_ms",
    "fastest_gmac_per_s": "true GMAC/s the runtime sustains on the fastest variant",
    "gmac_in_budget": "GMACs per frame that fit the budget at that rate",
    "n_timed": "variants timed themselves",
    "n_with_latency": "plus untimed variants of a timed graph",
    "n_deployed": "variants scored in the target's runtime (deployed.csv)",
    "machine": "whose latency and deployed rows",
    "seed_mode": "mean (replicates are one candidate) or each",
    "goal_dataset": "the goal's dataset",
    "goal_quality": "the goal's JPEG quality",
    "goal_protocol": "the goal's protocol",
    "goal_min_gain_db": "the goal's minimum gain over JPEG (dB)",
    "goal_budget_ms": "the goal's frame budget (ms; 33.3 = 30 fps)",
}

SUMMARY_FILES: dict[str, str] = {  # results/*.md and *.csv, written by compress summary (module compress.summary)
    "study-arcnn-q10.md` / `study-arcnn-q10.csv": "the ARCNN prune / distillation study, LIVE1 and Kodak24 q10: "
    "`compress summary results/prune-arcnn results/prune-distill-arcnn results/study-arcnn-*/ --control "
    "study-arcnn-unpruned --out results/study-arcnn-q10.md --csv results/study-arcnn-q10.csv` (the sweeps first: "
    "their cells name the conditions that the study-arcnn-* seed recipes add replicates to)",
    "fast-arcnn-q10-40.md` / `fast-arcnn-q10-40.csv": "the quality-blind Fast ARCNN at q10-q40: `compress summary "
    "results/baseline-fast-arcnn-q10-40 results/baseline-fast-arcnn-q20 results/baseline-fast-arcnn "
    "results/finetune-fast-arcnn-q10-40 results/prune-fast-arcnn-q10-40 results/qat-fast-arcnn-q10-40 "
    "results/study-fast-arcnn-q10-40-control results/study-fast-arcnn-q10-40-prune --control "
    "finetune-fast-arcnn-q10-40 --out results/fast-arcnn-q10-40.md --csv results/fast-arcnn-q10-40.csv` (the "
    "last two add seeds 0 and 1 to the control and the prune cells)",
    "study-fast-arcnn-s4-q10.md": "stride-4 Fast ARCNN, pruned + INT8 against the unpruned INT8 control, torch "
    "scores: `compress summary results/chain-fast-arcnn-s4-q10 results/finetune-fast-arcnn-s4-q10 --control "
    "finetune-fast-arcnn-s4-q10 --out results/study-fast-arcnn-s4-q10.md`",
    "study-fast-arcnn-s4-q10-cpu-ov-int8.md": "the same as deployed (OpenVINO INT8 scores of deployed.csv): "
    "`... --target cpu-ov-int8 --machine \"$X1\" --machine \"$X2\" --out "
    "results/study-fast-arcnn-s4-q10-cpu-ov-int8.md` (the two Xeon keys of README 'The machines')",
    "study-qat-fast-arcnn-relu.md": "INT8 QAT of the ReLU Fast ARCNN against its fp32 parent, 3 seeds a point: "
    "`compress summary results/baseline-fast-arcnn-relu results/qat-fast-arcnn-relu "
    "results/study-qat-fast-arcnn-relu-seeds --control baseline-fast-arcnn-relu --out "
    "results/study-qat-fast-arcnn-relu.md`",
    "study-qat-fast-arcnn-q10-long.md": "INT8 QAT of fast-arcnn-q10-long against its fp32 parent, 3 seeds for the "
    "points within 0.05 dB (the 4,000-step points start from finetune-fast-arcnn-q10-long's weights, listed "
    "too): `compress summary results/baseline-fast-arcnn-q10-long results/finetune-fast-arcnn-q10-long "
    "results/qat-fast-arcnn-q10-long results/study-qat-fast-arcnn-q10-long-seeds --control "
    "baseline-fast-arcnn-q10-long --out results/study-qat-fast-arcnn-q10-long.md`",
    "study-qat-arcnn.md": "ARCNN INT8 / 4-bit QAT points, the self-distillation point at 3 seeds (its parent "
    "models/arcnn-q10 scores 26.664 on LIVE1 q10): `compress summary results/qat-arcnn "
    "results/study-qat-arcnn-kd1-seeds --out results/study-qat-arcnn.md`",
    "study-depth-fast-arcnn-s4-q10-cpu-ov-int8.md": "depth (layer) pruning against width pruning, as deployed: "
    "`compress summary results/chain-fast-arcnn-s4-q10 results/depth-fast-arcnn-s4-q10 --control "
    "chain-fast-arcnn-s4-q10/ratio0.5-ignored_layers_base.0_base.12 --target cpu-ov-int8 --machine \"$X1\" "
    "--machine \"$X2\" --out "
    "results/study-depth-fast-arcnn-s4-q10-cpu-ov-int8.md`",
}


# ---------------------------------------------------------------------------------------------
# provenance


def git_sha(repo: Path | None = None) -> str:
    """The checked-out commit (read-only git calls), ``+dirty`` with uncommitted changes; ``unknown`` without git."""
    cwd = repo or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    """Versions of the libraries that decide the numbers (from installed distribution metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist, col in (
        ("torch", "torch_version"), ("torch-pruning", "torch_pruning_version"), ("brevitas", "brevitas_version"),
        ("nncf", "nncf_version"), ("onnxruntime", "onnxruntime_version"),
    ):
        try:
            out[col] = version(dist)
        except PackageNotFoundError:
            out[col] = "absent"
    return out


def now_iso() -> str:
    """UTC now, ISO 8601, seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# tables


def _read(path: Path) -> Any:
    """A table, from its parquet twin when present (it keeps dtypes), else the CSV, else None."""
    import pandas as pd

    pq = path.with_suffix(".parquet")
    if pq.is_file():
        return pd.read_parquet(pq)
    if path.is_file():
        return pd.read_csv(path)
    return None


def _write(df: Any, path: Path) -> None:
    atomic_write(path, lambda p: df.to_csv(p, index=False))
    atomic_write(path.with_suffix(".parquet"), lambda p: df.to_parquet(p, index=False))


def _lock(folder: Path) -> Any:
    from filelock import FileLock

    return FileLock(str(folder / ".tables.lock"), timeout=600)


def _remove_stale_temps(tables: Sequence[Path]) -> None:
    """Delete temporary files a killed writer left beside ``tables`` (call under the lock: no writer is live)."""
    for table in tables:
        for t in (table, table.with_suffix(".parquet")):
            for tmp in t.parent.glob(f".{t.name}.*.tmp"):
                tmp.unlink(missing_ok=True)


def _merge(old: Any, rows: Sequence[dict[str, Any]], key: Sequence[str], columns: Sequence[str]) -> Any:
    import pandas as pd

    new = pd.DataFrame(list(rows), columns=list(columns))
    if old is None or old.empty:
        df = new
    else:
        for col in columns:
            if col not in old.columns:
                old[col] = pd.NA
        df = pd.concat([old[list(columns)], new], ignore_index=True)
        for k in key:  # a CSV read back may type a key column differently from fresh rows
            df[k] = df[k].astype(new[k].dtype) if len(new) else df[k]
    df = df.drop_duplicates(subset=list(key), keep="last")
    return _int_columns(df.sort_values(list(key), kind="stable", key=_sort_key).reset_index(drop=True))


def _int_columns(df: Any) -> Any:
    """Integer columns that may be empty stay integers (``Int64``): never ``16.0`` in the CSV."""
    for col in _INT_COLUMNS:
        if col in df.columns:
            df[col] = df[col].astype("Int64")
    return df


def _sort_key(col: Any) -> Any:
    """Resolutions sort by size (480p, 720p, 1080p), everything else as it is."""
    from compress.cost import RESOLUTIONS

    order = {name: i for i, name in enumerate(RESOLUTIONS)}
    return col.map(lambda v: order.get(v, len(order))) if col.name == "resolution" else col


def append_rows(path: Path, rows: Sequence[dict[str, Any]], key: Sequence[str], columns: Sequence[str]) -> Any:
    """Add ``rows`` to the table at ``path`` (CSV + parquet), replacing rows with the same key; returns the table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path.parent):
        _remove_stale_temps([path])
        df = _merge(_read(path), rows, key, columns)
        _write(df, path)
    return df


def _refresh_variants(folder: Path) -> Any:
    """``variants.csv``: quality rows + the 720p30 cost columns of their variant (call under the lock)."""
    import pandas as pd

    quality = _read(folder / QUALITY_FILE)
    cost = _read(folder / COST_FILE)
    if quality is None:
        return None
    if cost is not None:
        keep = [c for c in COST_COLUMNS if c not in PROVENANCE_COLUMNS and c not in ("recipe", "variant_name")
                and c in cost.columns]  # a table from before a column existed lacks it
        c720 = cost[cost["resolution"] == JOIN_RESOLUTION][keep]
        df = quality.merge(c720, on="variant", how="left")
    else:
        df = quality.copy()
        df["resolution"] = pd.NA
    _write(df, folder / VARIANTS_FILE)
    return df


def write_tables(
    folder: Path, quality_rows: Sequence[dict[str, Any]], cost_rows: Sequence[dict[str, Any]]
) -> tuple[Any, Any]:
    """Append a variant's quality and cost rows to ``folder``'s tables and refresh ``variants.csv``, atomically.
    With no cost rows (``compress rescore`` adds scores only) ``cost.csv`` is left as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    with _lock(folder):
        _remove_stale_temps([folder / QUALITY_FILE, folder / COST_FILE, folder / VARIANTS_FILE])
        q = _merge(_read(folder / QUALITY_FILE), quality_rows, QUALITY_KEY, list(QUALITY_COLUMNS))
        _write(q, folder / QUALITY_FILE)
        c = _read(folder / COST_FILE)
        if cost_rows:
            c = _merge(c, cost_rows, COST_KEY, list(COST_COLUMNS))
            _write(c, folder / COST_FILE)
        _refresh_variants(folder)
    return q, c


def drop_variants(folder: Path, variants: Sequence[str]) -> int:
    """Remove every row of these variant ids from ``folder``'s tables (atomically, under the lock).

    For rows whose recipe has changed since they were made (a new key, a fixed stage): the variant's
    artifacts folder is left alone. Returns the number of quality + cost rows removed.
    """
    gone = set(variants)
    removed = 0
    with _lock(folder):
        for name in (QUALITY_FILE, COST_FILE):
            df = _read(folder / name)
            if df is None:
                continue
            keep = ~df["variant"].astype(str).isin(gone)
            removed += int((~keep).sum())
            _write(df[keep].reset_index(drop=True), folder / name)
        _refresh_variants(folder)
    return removed


def fill_cost_signatures(folder: str | Path, signature: Callable[[Path], str], *, recompute: bool = False) -> int:
    """Add ``graph_signature`` to ``folder``'s cost rows written before the column existed.

    A variant gets the signature of its ``model.onnx`` when the file is still here (``signature`` is
    :func:`compress.deploy.graph_signature`), else the one its ``latency.csv`` rows recorded for the
    file that was timed; otherwise it stays empty. Returns the number of variants filled.
    ``recompute``: every variant, not only those without one (recompute ``latency.csv`` first).
    """
    import pandas as pd

    folder = Path(folder)
    with _lock(folder):
        cost = _read(folder / COST_FILE)
        if cost is None or cost.empty:
            return 0
        if "graph_signature" not in cost.columns:
            cost["graph_signature"] = pd.NA
        cost["graph_signature"] = cost["graph_signature"].astype(object)
        timed: dict[str, str] = {}
        lat_path = folder / "latency.csv"
        if lat_path.is_file():
            lat = pd.read_csv(lat_path)
            if "graph_signature" in lat.columns:
                for v, g in zip(lat["variant"].astype(str), lat["graph_signature"], strict=True):
                    if isinstance(g, str) and g:
                        timed.setdefault(v, g)
        if recompute:
            cost["graph_signature"] = ""
        empty = cost["graph_signature"].isna() | (cost["graph_signature"].astype(str) == "")
        filled: set[str] = set()
        for variant in sorted(set(cost.loc[empty, "variant"].astype(str))):
            rows = empty & (cost["variant"].astype(str) == variant)
            onnx = folder / str(cost.loc[rows, "onnx_path"].iloc[0]) if "onnx_path" in cost.columns else None
            sig = signature(onnx) if onnx is not None and onnx.is_file() else timed.get(variant, "")
            if sig:
                cost.loc[rows, "graph_signature"] = sig
                filled.add(variant)
        if filled or recompute:
            _write(cost, folder / COST_FILE)
            _refresh_variants(folder)
    return len(filled)


def train_budget(stages: Sequence[Any]) -> dict[str, Any]:
    """The :data:`BUDGET_COLUMNS` of a variant from its recipe's stages (typed ``compress.recipe.schema`` stages).

    A stage trains when it takes optimizer steps: ``finetune``, ``distill``, and ``quantize`` with ``mode: qat``
    (``ptq`` and the prune stages only calibrate). ``train_batch`` / ``train_patch`` are empty when the
    training stages differ; ``train_budget`` then tells them apart.
    """
    from compress.recipe.schema import DistillStage, FinetuneStage, QuantizeStage, QuantMode

    parts: list[tuple[str, int, int, int]] = []
    for st in stages:
        if isinstance(st, FinetuneStage | DistillStage):
            tag = str(st.type)
        elif isinstance(st, QuantizeStage) and st.mode is QuantMode.qat:
            tag = "qat"
        else:
            continue
        parts.append((tag, st.steps, st.batch_size, st.patch_size))
    batches = {b for _, _, b, _ in parts}
    patches = {p for _, _, _, p in parts}
    return {
        "train_steps": sum(n for _, n, _, _ in parts),
        "train_batch": batches.pop() if len(batches) == 1 else None,
        "train_patch": patches.pop() if len(patches) == 1 else None,
        "train_pixels": sum(n * b * p * p for _, n, b, p in parts),
        "train_budget": " + ".join(f"{t} {n}x{b}x{p}" for t, n, b, p in parts) or "none",
    }


_EXPORT_CHECK_KEYS = ("check", "atol", "qdq_atol")


def condition_keys(recipe: Any) -> dict[str, str]:
    """The :data:`KEY_COLUMNS` of a resolved (sweep-free) ``compress.recipe.schema.Recipe``.

    Both hash the recipe as its variant id does (:func:`compress.recipe.expand.hashed_dict`), less what
    does not change the trained model or what it is scored on: the recipe's name and description, the
    evaluation sets (each set's rows stay apart in the tables), the stages' labels and the export check's
    tolerances (``check``, ``atol``, ``qdq_atol``: a variant whose check needed a looser tolerance exported the
    same model). A distill stage's
    teacher name is replaced by that teacher's settings and undeclared-but-unused teachers are dropped, so
    two recipes naming one teacher differently agree. ``condition_key`` also drops every seed (the recipe's
    and each stage's); ``replicate_key`` keeps them.
    """
    import hashlib

    from compress.recipe.expand import canonical_json, hashed_dict

    doc = hashed_dict(recipe)
    for k in ("name", "description"):
        doc.pop(k, None)
    doc.get("data", {}).pop("eval", None)
    teachers = doc.pop("teachers", {}) or {}
    for stage in doc.get("stages", []):
        stage.pop("label", None)
        if stage.get("type") == "export":  # how closely the export is checked against torch, not what it exports
            for k in _EXPORT_CHECK_KEYS:
                stage.pop(k, None)
        if isinstance(stage.get("teacher"), str) and stage["teacher"] in teachers:
            stage["teacher"] = teachers[stage["teacher"]]

    def digest(d: Any) -> str:
        return hashlib.sha256(canonical_json(d).encode()).hexdigest()[:16]

    replicate = digest(doc)
    doc.pop("seed", None)
    for stage in doc.get("stages", []):
        stage.pop("seed", None)
    return {"condition_key": digest(doc), "replicate_key": replicate}


def variant_budget(variant_folder: str | Path) -> dict[str, Any] | None:
    """:func:`train_budget` and :func:`condition_keys` of a finished variant, from its ``recipe.yaml``; None
    without one.

    The steps the variant's ``plan.json`` records for its training stages (when it has one) must be the
    recipe's: the table states the budget that was trained.

    Raises:
        CompressError: the recipe does not validate, or its steps differ from the plan's.
    """
    import yaml

    from compress.errors import CompressError
    from compress.recipe.schema import Recipe

    d = Path(variant_folder)
    if not (d / "recipe.yaml").is_file():
        return None
    try:
        recipe = Recipe.model_validate(yaml.safe_load((d / "recipe.yaml").read_text()))
    except ValueError as exc:
        raise CompressError(f"{d / 'recipe.yaml'}: not a valid resolved recipe: {exc}") from None
    budget = {**train_budget(recipe.stages), **condition_keys(recipe)}
    plan_path = d / "plan.json"
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        trained = [int(s["plan"]["steps"]) for s in plan.get("stages", [])
                   if isinstance(s.get("plan"), dict) and int(s["plan"].get("steps", 0) or 0) > 0]
        if sum(trained) != budget["train_steps"]:
            raise CompressError(f"{d}: plan.json records {sum(trained)} training steps, recipe.yaml states "
                                f"{budget['train_steps']} ({budget['train_budget']})")
    return budget


def fill_cost_budget(folder: str | Path, *, recompute: bool = False) -> int:
    """Add the :data:`BUDGET_COLUMNS` and :data:`KEY_COLUMNS` to ``folder``'s cost rows written before they
    existed (no re-run).

    Each variant's budget comes from :func:`variant_budget` (its ``recipe.yaml``, checked against its
    ``plan.json``); a variant without a folder stays empty, and so does ``train_cpu`` (the machine was not
    recorded). Under the tables' lock, from the table as it is now; ``variants.csv`` is refreshed. Returns
    the number of variants filled. ``recompute``: every variant, not only those without a budget.
    """
    import pandas as pd

    folder = Path(folder)
    with _lock(folder):
        cost = _read(folder / COST_FILE)
        if cost is None or cost.empty:
            return 0
        added = [c for c in (*BUDGET_COLUMNS, "train_cpu", *KEY_COLUMNS) if c not in cost.columns]
        for col in added:
            cost[col] = pd.NA
        cost = _int_columns(cost)
        for col in ("train_budget", "train_cpu", *KEY_COLUMNS):
            cost[col] = cost[col].astype(object)
        todo = (cost["train_budget"].notna() | True if recompute
                else cost["train_budget"].isna() | cost["condition_key"].isna())
        filled: set[str] = set()
        for variant in sorted(set(cost.loc[todo, "variant"].astype(str))):
            budget = variant_budget(folder / variant)
            if budget is None:
                continue
            rows = todo & (cost["variant"].astype(str) == variant)
            for col, value in budget.items():
                cost.loc[rows, col] = pd.NA if value is None else value
            filled.add(variant)
        if filled or added:
            _write(cost, folder / COST_FILE)
            _refresh_variants(folder)
    return len(filled)


def read_table(path: str | Path) -> Any:
    """A results table as a DataFrame (parquet twin preferred), or None when absent."""
    return _read(Path(path))


# ---------------------------------------------------------------------------------------------
# variant artifacts


def write_json(path: Path, data: Any) -> Path:
    """Pretty JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=False, default=str) + "\n").encode())
    return path


def write_yaml(path: Path, data: Any, header: str = "") -> Path:
    """Safe-dumped YAML (keys in order), with an optional comment header, atomically."""
    import yaml

    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    atomic_write_bytes(path, (header + body).encode())
    return path


def write_weights(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """A state dict as safetensors (no pickle), atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def read_done(folder: Path) -> dict[str, Any] | None:
    """The done marker of a variant folder, or None."""
    p = folder / DONE_FILE
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_done(folder: Path, record: dict[str, Any]) -> Path:
    """Mark a variant done (written last: a crashed run leaves no marker and re-runs)."""
    return write_json(folder / DONE_FILE, record)


# ---------------------------------------------------------------------------------------------
# documentation


def _column_table(columns: dict[str, str]) -> list[str]:
    lines = ["| column | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in columns.items()]
    return lines


def results_readme() -> str:
    """The text of ``results/README.md``: every file and every column of the results tables."""
    from compress.deploy import PAIRED_COLUMNS
    from compress.summary import SUMMARY_COLUMNS

    lines = [
        "# results/",
        "",
        "Written only by `compress run` (module `compress.results`); generated by "
        "`compress.results.write_results_readme`, do not edit by hand.",
        "",
        "Each recipe writes `results/<recipe>/`:",
        "",
        f"- `{QUALITY_FILE}` (+ `.parquet`): one row per variant x dataset x JPEG quality x protocol; key "
        f"`{', '.join(QUALITY_KEY)}`.",
        f"- `{COST_FILE}` (+ `.parquet`): one row per variant x resolution; key `{', '.join(COST_KEY)}`.",
        f"- `{VARIANTS_FILE}` (+ `.parquet`): `{QUALITY_FILE}` joined with the {JOIN_RESOLUTION} row of "
        f"`{COST_FILE}` (for plots and fronts).",
        "- `<variant>/`: the variant's artifacts (below).",
        "",
        "Rows are appended atomically under a file lock; a re-run replaces its rows (same key), never "
        "duplicates them. The parquet twin keeps column types; the CSV is for reading.",
        "",
        "## Variant folder",
        "",
        "| file | content |",
        "|---|---|",
        *[f"| `{k}` | {v} |" for k, v in ARTIFACTS.items()],
        "",
        f"## {QUALITY_FILE}",
        "",
        *_column_table(QUALITY_COLUMNS),
        "",
        f"## {COST_FILE}",
        "",
        *_column_table(COST_COLUMNS),
        "",
        f"## {VARIANTS_FILE}",
        "",
        f"The columns of `{QUALITY_FILE}`, then the cost columns of `{COST_FILE}` at {JOIN_RESOLUTION} "
        "(without repeating the provenance), the training budget (`train_*`) included.",
        "",
        "## latency.csv",
        "",
        "Written by `compress latency` / `compress main` (module `compress.deploy`): one row per variant x target "
        "x resolution x machine, measured one at a time with fixed threads; key `variant, target, resolution, cpu`. "
        "Rows of another machine are kept beside this one's (timing again on a new CPU adds rows); fronts and the "
        "speed goal use one machine's rows (`--machine`, default the one that timed most recently).",
        "",
        *_column_table(LATENCY_COLUMNS),
        "",
        f"## {DEPLOYED_FILE}",
        "",
        f"`{DEPLOYED_FILE}` (+ `deployed.parquet`), written by `compress deployed` (module `compress.deployed`): "
        "each variant's `model.onnx` scored in the "
        "runtime of every measured target that runs it, one row per variant x target x dataset x quality x "
        f"protocol; key `{', '.join(DEPLOYED_KEY)}`. Fronts and the speed goal take a target's quality from here "
        "when it has a row (else from the torch score of quality.csv).",
        "",
        *_column_table(DEPLOYED_COLUMNS),
        "",
        "## fronts/<dataset>-q<quality>-<protocol>/ (and any `compress pareto --out` folder)",
        "",
        "`fronts/` is drawn from the AMX Xeon's latency and deployed rows (`--machine 'Intel(R) Xeon(R) Processor "
        "[avx512+vnni+bf16+amx]' --machine 'Intel(R) Xeon(R) Processor (family 6 model 167) "
        "[avx512+vnni+bf16+amx]'`: the second key is session 16's AMX Xeon, pooled for the INT8 scores of the "
        "variants run there, which equal the first key's to 1e-6 dB where both scored a graph; the first key's "
        "rows win, so the latencies are sessions 9-14's), `fronts-avx2/` from session 15's AVX2 EPYC's "
        "(`--machine 'AMD EPYC "
        "(family 23 model 1) [avx2]'`, live1 q10, the five targets timed there), whose fronts hold only the "
        "variants it timed (those whose ONNX is committed, and their graphs' other variants).",
        "",
        "Written by `compress pareto` / `compress main` (module `compress.pareto`) from the tables above only:",
        "",
        "- `points.csv`: every variant per target with its cost `x` and quality `y`, `machine` (whose latency and "
        "deployed rows, on a latency axis), `eligible` (fits the target's "
        "precisions and budgets), the `reason` when not, and `on_front`; `y_from` says whether `y` is the torch "
        "score or the target runtime's (deployed.csv); on a latency axis `x_n` counts the measured variants whose "
        "median `x` is (variants of one graph structure share it) and `x_timed` is false for a variant that was "
        "not timed itself and takes its graph's median. By default (`--seeds mean`) the seed replicates of a "
        "condition (variant names that differ only in `seedN`) are one row: `y` the mean of their scores, `x` the "
        "median of their costs, `seeds` how many scores, `y_sd` their standard deviation, `members` their keys "
        "(`;`-separated), and `key` / `variant` the replicate whose score is nearest the mean (the one to ship; among "
        "the replicates whose `model.onnx` is in the folder, where any is, since only front members' are committed).",
        "- `front.csv`: the non-dominated eligible variants per target (quality up, cost down).",
        "- `front-<target>.png` / `.svg`: the front (log cost axis, every variant labelled up to 15 points, else "
        "the front members only, published reference "
        "points drawn apart as 'published, not re-measured'; when a few points lie far below the rest, the y axis "
        "keeps the top 2 dB and marks those at its lower edge with their value).",
        "- `fronts.html`: one self-contained interactive page (plotly.js inline); a selector switches targets. "
        "`compress pareto --all` writes one `fronts.html` beside the selection folders instead, with every "
        "selection's fronts and two selectors (data set x quality x protocol, and target; `fronts.html#<selection>/"
        "<target>` opens one): one copy of plotly.js (4.8 MB) instead of one per selection.",
        "",
        "### points.csv / front.csv columns",
        "",
        "`front.csv` has the columns of `points.csv` but `reason`, `eligible` and `on_front`.",
        "",
        *_column_table(POINTS_COLUMNS),
        "",
        "## Study summaries: `results/*.md`, `results/*.csv`",
        "",
        "Written by `compress summary RESULTS... --control C [--target T] --out MD [--csv CSV]` (module "
        "`compress.summary`) from the tables only: the variants of each recipe grouped into conditions (seed "
        "replicates averaged; a recipe that only adds seeds to another recipe's cell, same `condition_key` in "
        "cost.csv, is pooled with it and named in the `pooled` column and as `(+ recipe)` in the markdown), one "
        "markdown section per dataset x quality x protocol; `--csv` writes the table.",
        "",
        "| file | content and command |",
        "|---|---|",
        *[f"| `{k}` | {v} |" for k, v in SUMMARY_FILES.items()],
        "",
        "Columns of the CSV (files written before a column existed lack it: `control_seeds`, `below_noise` and "
        "`machine` are newer than `study-arcnn-q10.csv` and `fast-arcnn-q10-40.csv`); the markdown shows the same "
        "numbers (`†` marks `below_noise`):",
        "",
        *_column_table(SUMMARY_COLUMNS),
        "",
        "## bench/",
        "",
        "Written by `nox -s bench` (`compress bench`), each with the machine and load average in columns:",
        "",
        "| file | content |",
        "|---|---|",
        "| `loader.csv` | input pipeline: patches/s of the reference loader (decode per patch) and of ours, ratio |",
        "| `train_speed.csv` | training step (forward + backward + Adam) per model x setting (fp32, channels_last, "
        "bf16 autocast, torch.compile) x patch size: ms/step, pixels/s, GMAC/s (3x forward true MACs), fraction "
        "of the matmul peak measured in the same run; `note` says why a row was not measured |",
        "| `eval_time.csv` | wall time of a whole LIVE1 evaluation per model |",
        "| `avx512-bf16/` | the same files measured on a second machine (`compress bench ... --out "
        "results/bench/avx512-bf16`: AVX-512 with VNNI and BF16), and that machine's `speed_goal.md` / `.csv` "
        "(`compress bench speedgoal --machine 'AMD EPYC [avx512+vnni+bf16]' --out results/bench/avx512-bf16`); "
        "the top-level files are the first AVX2 machine's, except `speed_goal.*`, which are the AMX Xeon's |",
        "| `avx2/speed_goal.*` | the speed goal on the AVX2 EPYC of session 15 (`compress bench speedgoal --machine "
        "'AMD EPYC (family 23 model 1) [avx2]' --out results/bench/avx2`) |",
        "| `xeon-f6m167/speed_goal.*` | the speed goal on session 16's AMX Xeon (`compress bench speedgoal --machine "
        "'Intel(R) Xeon(R) Processor (family 6 model 167) [avx512+vnni+bf16+amx]' --out results/bench/xeon-f6m167`): "
        "the stride-4 graphs timed there on the OpenVINO INT8 targets only |",
        "| `avx512-amx/latency.csv` | `compress bench latency` on the third machine (Xeon with AMX, shared with busy "
        "neighbours: see `probe_gflops`) |",
        "| `latency.csv` | per-target ms/frame at 720p and the fraction of the matmul peak reached |",
        "| `paired_latency.csv` | `compress latency A.onnx B.onnx ... --paired ROUNDS`: graphs timed in turn, one "
        "row per graph x target x round (`run` = when the comparison started, `round`, `ms_median` / `ms_min` / "
        "`ms_max` of `n` runs, `probe_gflops` after the round, `load_avg`, `onnx_sha256`, `graph_signature`, "
        "`cpu`); compare a run's graphs by the ratio of their medians over rounds, not across runs |",
        "| `speed_goal.csv` / `.md` | `compress bench speedgoal`, from the results folders' `quality.csv` + "
        "`latency.csv` only: per target x resolution, the fastest timed variant with LIVE1 q10 `idcn-rgb` PSNR >= "
        "JPEG + 1 dB (`variant`, `psnr`, `ms`, `met` = within 33.3 ms; with `--seeds mean`, the default, the seed "
        "replicates of a condition are one candidate at their mean PSNR and median ms, `seeds` / `psnr_sd` say how "
        "many and how far apart, `seed_mode` which way), the fastest variant of all and the best one "
        "(`fastest_*`, `best_*`), `short_db` (how far the best timed variant is below the floor when none reaches "
        "it), `fastest_gmac_per_s` / `gmac_in_budget` (true GMAC/s the runtime sustains on the fastest variant, and "
        "the GMACs per frame that fit the budget at that rate), `n_timed` (variants timed themselves), "
        "`n_with_latency` (plus untimed variants of a timed graph), `n_deployed` (variants scored in "
        "the target's runtime: deployed.csv, used instead of the torch PSNR), and the goal's settings (`goal_*`); "
        "ms are per-graph medians as on the fronts |",
        "| `ttq.csv` | time to quality: one row per snapshot of a training run (recipe, `seconds` of wall time "
        "since the run started, `step`, LIVE1 `psnr` / `ssim` / `jpeg_psnr` under `protocol`, the recipe's "
        "patch / batch / lr / loss / init / precision, `load_avg` when the snapshot was taken, `machine_cpu`); "
        "the recipe `reference-code` is the brief's reference training loop re-run on that machine |",
        "| `ttq_summary.csv` | per machine and recipe: minutes to JPEG + 1 dB and to the reference's 30-minute PSNR "
        "(`target_*_psnr`), the reference's minutes to the same and the speed-up; `reference` says whether the "
        "reference curve was measured on that machine or is issue 9's quoted table |",
        "| `ttq.png` | PSNR against wall time of the latest machine's runs, with that machine's reference curve |",
        "| `ttq_ablation.csv` | equal-budget ablations of the training recipe's choices, one row per run of a "
        "`recipes/ablations/*.yaml` file (`ablation`, `run`): the settings, `pixels_seen`, LIVE1 `psnr` / `ssim` / "
        "`jpeg_psnr` of the final weights, load average and machine |",
        "",
        "Columns `machine_cpu`, `machine_cores`, `machine_torch`, `machine_python` and `measured` "
        "(compress.bench.machine) close the rows of `loader.csv`, `train_speed.csv`, `eval_time.csv`, `ttq.csv` and "
        "`ttq_ablation.csv`:",
        "",
        *_column_table(BENCH_MACHINE_COLUMNS),
        "",
        "### loader.csv",
        "",
        *_column_table(LOADER_COLUMNS),
        "",
        "### train_speed.csv",
        "",
        *_column_table(TRAIN_SPEED_COLUMNS),
        "",
        "### eval_time.csv",
        "",
        *_column_table(EVAL_TIME_COLUMNS),
        "",
        "### latency.csv (bench/ and bench/avx512-amx/)",
        "",
        "The columns of `latency.csv` above (`compress bench latency`: `variant` is the model name; rows from "
        "before `graph_signature` lack it), then:",
        "",
        *_column_table(BENCH_LATENCY_EXTRA),
        "",
        "### paired_latency.csv",
        "",
        *_column_table({c: PAIRED_EXTRA.get(c) or LATENCY_COLUMNS[c] for c in PAIRED_COLUMNS}),
        "",
        "### speed_goal.csv (bench/, bench/*/)",
        "",
        "Files from before seed averaging lack `seeds`, `psnr_sd`, `best_seeds` and `seed_mode`.",
        "",
        *_column_table(SPEED_GOAL_COLUMNS),
        "",
        "### ttq.csv / ttq_ablation.csv",
        "",
        *_column_table(TTQ_COLUMNS),
        "",
        "### ttq_summary.csv",
        "",
        *_column_table(TTQ_SUMMARY_COLUMNS),
        "",
    ]
    return "\n".join(lines)


def write_results_readme(folder: str | Path = "results") -> Path:
    """Write :func:`results_readme` to ``<folder>/README.md``."""
    p = Path(folder) / "README.md"
    atomic_write_bytes(p, results_readme().encode())
    return p
