#!/usr/bin/env python3
"""Example training program: a tiny BERT classifier trained with the Hugging Face ``Trainer``.

The model is built from a config (no download); the data are token sequences generated from the
seed and the partition key (label: does token 7 occur?). It follows the training-guard contract
(docs/trainers.md): ``TrainingArguments(output_dir=<checkpoint dir>)`` so the Trainer's
``checkpoint-N`` folders live in the launcher's checkpoint directory; it resumes from the newest
*valid* one (:func:`newest_valid_checkpoint` skips torn folders); :class:`TrainingGuardCallback`
writes the heartbeat every step and turns SIGTERM into "save at the next step, exit 75".
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from airflow_training_guard.runtime import EXIT_CONFIG_ERROR, TrainingEnvironment
from airflow_training_guard.runtime.integrations.hf import TrainingGuardCallback, newest_valid_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


class TokenRows(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Generated sequences over a 64-token vocabulary; the label says whether token 7 occurs."""

    def __init__(self, rows: int, seq_len: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(8, 64, (rows, seq_len), generator=generator)
        flip = torch.rand(rows, generator=generator) < 0.5
        self.ids[flip, torch.randint(0, seq_len, (int(flip.sum()),), generator=generator)] = 7
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.ids[index],
            "attention_mask": torch.ones_like(self.ids[index]),
            "labels": self.labels[index],
        }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        env = TrainingEnvironment.from_env()
    except ValueError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    seed = args.seed + sum(env.partition_key.encode())
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=args.seq_len,
        num_labels=2,
    )
    torch.manual_seed(args.seed)
    model = BertForSequenceClassification(config)
    steps = env.smoke_steps if env.is_smoke_run else args.steps
    training_args = TrainingArguments(
        output_dir=str(env.checkpoint_dir),
        max_steps=steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-3,
        save_strategy="steps",
        save_steps=env.checkpoint_every,
        save_total_limit=env.checkpoint_keep,
        logging_steps=5,
        seed=args.seed,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=TokenRows(args.rows, args.seq_len, seed),
        callbacks=[TrainingGuardCallback(env)],
    )
    resume = newest_valid_checkpoint(env.checkpoint_dir)  # torn folders are skipped, with the reason
    print(f"training partition_key={env.partition_key} steps={steps} resume_from={resume}", flush=True)
    result = trainer.train(resume_from_checkpoint=resume)
    if env.output_dir is not None and not env.is_smoke_run and trainer.is_world_process_zero():
        trainer.save_model(str(env.output_dir))  # model.safetensors + config.json
        metrics = {"loss": float(result.training_loss), "steps": int(result.global_step)}
        (env.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"done: loss={result.training_loss:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
