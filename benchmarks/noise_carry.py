"""Does stage 1 carry the private messages at a given noise? An experiment, not a speed benchmark
(issue 23: "which size or epsilon does").

It trains the platform's own user-level DP-SGD (privacy.dp.train.dp_lora_train, the code the
dp_finetune stage runs) on a registered dataset's training split, with the adapter shape of the
nonprivate baseline (whole records, rank 16 on every linear layer), at a target epsilon the job
form refuses (it caps epsilon at 100): the accountant picks the noise (at most the target; the
noise search stops at sigma 0.1, so a target above epsilon(0.1) trains at sigma 0.1), and the
epsilon printed is the accountant's for the steps taken. Then it samples user turns from the
adapter and measures their fidelity to the held-out split (ksg_web.runs.fidelity_probe, what
`manage.py ksg_fidelity` prints for a job's adapter).

Nothing goes to the ledger: this is a developer's experiment on demo data, outside the platform's
budget, and the adapter it writes is for measuring, never for a run. Use it on demo data only.

    KSG_DATA_DIR=data/r23d .venv/bin/python benchmarks/noise_carry.py --dataset patients \\
        --target-epsilon 1000 --out data/r23d/noise_carry_sigma01
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ksg_web.settings")

ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--target-epsilon", type=float, required=True,
                        help="per privacy unit; above epsilon(sigma 0.1) the noise is sigma 0.1")
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--logical-batch-size", type=int, default=16, help="expected persons a step")
    parser.add_argument("--physical-batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--target-modules", default=ALL_LINEAR, help="comma-separated; default every linear layer")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--count", type=int, default=60, help="user turns to sample")
    parser.add_argument("--no-dp", action="store_true",
                        help="the control: the same LoRA training without clipping or noise, on records; give "
                             "--logical-batch-size in records (64 is what a DP step of 16 persons sees)")
    parser.add_argument("--out", required=True, help="directory for the adapter and result.json")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    from ksg_web.runs.fidelity_probe import ProbeSettings, adapter_path_fidelity
    from privacy.dp.config import DPTrainConfig
    from privacy.dp.train import dp_lora_train, examples_tokenize, lora_wrap
    from privacy.models import PrivateDataset
    from privacy.selectors import dataset_records
    from synthesis.lm.loader import training_model_load

    dataset = PrivateDataset.objects.filter(name=args.dataset).first()
    if dataset is None:
        names = ", ".join(PrivateDataset.objects.values_list("name", flat=True)) or "none"
        sys.exit(f"no dataset named {args.dataset!r} in this KSG_DATA_DIR (registered: {names}); "
                 f"register one with manage.py ksg_dataset_add")
    if not dataset.privacy_unit:
        sys.exit("the dataset has no privacy unit: this experiment trains user-level DP")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base_model = "smollm2-135m-instruct"
    config = DPTrainConfig(
        dp=not args.no_dp, target_epsilon=args.target_epsilon, delta=dataset.budget.delta, accountant=dataset.budget.accountant,
        lora_rank=args.lora_rank, lora_alpha=2 * args.lora_rank, target_modules=tuple(args.target_modules.split(",")),
        learning_rate=args.learning_rate, epochs=args.epochs, logical_batch_size=args.logical_batch_size,
        physical_batch_size=args.physical_batch_size, max_length=args.max_length, max_records_per_unit=4)
    model, tokenizer = training_model_load(base_model, cache_dir=settings.KSG_MODEL_CACHE)
    model = lora_wrap(model, config)
    records = dataset_records(dataset=dataset, split="train")
    examples = examples_tokenize(records, tokenizer, max_length=config.max_length, whole_record=True)
    units = [record["unit"] for record in records]

    # the noise vector's norm against the largest mean clipped gradient (norm C): sigma / B * sqrt(d)
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    noise_to_signal = None

    def done(report) -> None:
        privacy = (f"epsilon {report.epsilon:.3f}, sigma {report.noise_multiplier:.4f}, " if report.epsilon is not None
                   else "no DP, ")
        print(f"step {report.step}/{report.planned_steps}: {privacy}loss {report.loss:.3f}, {report.batch_size} "
              f"records, {report.seconds:.0f} s", flush=True)

    started = time.monotonic()
    result = dp_lora_train(model, examples, config, pad_id=tokenizer.pad_token_id, units=units, on_step_done=done)
    train_seconds = time.monotonic() - started
    if config.dp:
        noise_to_signal = result.noise_multiplier / config.logical_batch_size * trainable ** 0.5
    model.save_pretrained(out / "adapter")
    tokenizer.save_pretrained(out / "adapter")
    del model
    if config.dp:
        described = (f"noise_carry adapter ({trainable} trainable weights, noise norm {noise_to_signal:.1f} C against a "
                     f"mean clipped gradient of norm at most C): sigma {result.noise_multiplier:.4f}, epsilon "
                     f"{result.epsilon:.3f} per {dataset.privacy_unit} ({config.accountant}, delta {config.delta}), "
                     f"{result.steps} steps")
    else:
        described = f"noise_carry control adapter ({trainable} trainable weights): no DP, {result.steps} steps"
    probe = ProbeSettings(count=args.count)
    measured = adapter_path_fidelity(dataset=dataset, adapter_path=out / "adapter", described=described,
                                     base_model=base_model, probe=probe)
    summary = {
        "dataset": dataset.name, "persons": len(set(units)), "records": len(examples),
        "sigma": result.noise_multiplier, "sample_rate": result.sample_rate, "steps": result.steps,
        "sigma_over_B": result.noise_multiplier / config.logical_batch_size if config.dp else None,
        "trainable": trainable, "noise_to_signal": noise_to_signal,
        "epsilon": result.epsilon, "epsilon_unit": dataset.privacy_unit, "delta": config.delta,
        "accountant": config.accountant, "losses": result.losses, "train_seconds": round(train_seconds),
        "config": {key: (list(value) if isinstance(value, tuple) else value) for key, value in vars(config).items()},
        "fidelity": measured["fidelity"], "samples": measured["samples"], "with_name": measured["with_name"],
        "nonempty": measured["nonempty"], "heldout": measured["heldout"],
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    figures = measured["fidelity"]
    print(described)
    if figures.get("problem"):
        print(f"fidelity: not measured: {figures['problem']}")
    for name in ("mauve", "precision", "recall", "density", "coverage"):
        if name in figures:
            interval = figures[f"{name}_interval"]
            print(f"  {name:9} {figures[name]:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]")
    print(f"  {measured['with_name']} of {measured['nonempty']} samples name someone")
    for text in measured["samples"][:8]:
        print("  sample: " + text.replace("\n", " / ")[:200])


if __name__ == "__main__":
    main()
