"""Train and evaluate HBI video question answering on MSRVTT-QA-format data.

    torchrun --nproc_per_node=2 main_vqa.py --do_train --train_csv data/msrvtt_qa/train.jsonl \
        --val_csv data/msrvtt_qa/test.jsonl --data_path data/msrvtt_qa/train_ans2label.json \
        --features_path data/msrvtt/videos --clip_path pretrained/ViT-B-16.pt --estimator E --kl 2 --skl 1 ...
    python main_vqa.py --config config/demo_vqa.yaml

Accuracy is reported under two protocols side by side: the standard one (every test question; an answer outside
the vocabulary is wrong) and the reference's (such questions dropped). The last line printed is a JSON object.
"""
from __future__ import annotations

import sys
from pathlib import Path

from dataloaders.tokenizer import ClipTokenizer
from dataloaders.qa.msrvtt_qa import build_qa_dataset, load_answer_vocab, load_questions, majority_label
from dataloaders.synthetic.qa import generate_demo_qa
from main_retrieval import clip_weights_path, finish_run, start_run
from models.vqa import HBIQAModel, load_qa_model
from models.clip.adapter import ClipConfig
from models.weights import read_state_dict
from modules.engine.config import parse_with_config
from modules.engine.distributed import DistInfo, barrier
from modules.engine.optim import freeze_clip_layers
from modules.engine.run_log import RunLog
from modules.engine.trainer import Selection, Trainer, TrainSettings
from modules.evaluation.qa import evaluate_qa
from modules.vqa import qa_model_options, vqa_parser
from modules.evaluation.qa_metrics import qa_table


def build_model(cfg, num_answers: int) -> HBIQAModel:
    """From --init_model, else OpenAI CLIP weights (--clip_path / --base_encoder), else --clip_arch sizes;
    the teacher estimator from --estimator."""
    kwargs = dict(num_hidden_layers=cfg.num_hidden_layers, agg_module=cfg.agg_module, **qa_model_options(cfg))
    weights = Path(cfg.init_model) if cfg.init_model else clip_weights_path(cfg)
    if cfg.init_model or weights.is_file():
        model = load_qa_model(weights, num_answers, **kwargs)
    elif cfg.clip_arch:
        model = HBIQAModel(ClipConfig(**cfg.clip_arch), num_answers, **kwargs)
    else:
        raise SystemExit(f"CLIP weights not found at {weights}: pass --clip_path (an OpenAI CLIP .pt file), "
                         "--init_model, or --clip_arch for a randomly initialised model")
    if cfg.estimator:
        model.load_estimator(cfg.estimator)
    return model


def question_sets(cfg, path: str, vocab: dict[str, int], image_size: int, train: bool) -> list:
    """Training: one "pairs" set of the questions whose answer has a class. Evaluation: "texts" and "videos"."""
    common = dict(max_words=cfg.max_words, max_frames=cfg.max_frames, video_framerate=cfg.video_framerate,
                  image_size=image_size, slice_framepos=cfg.slice_framepos, backend=cfg.video_backend,
                  seed=cfg.seed)
    if train:
        return [build_qa_dataset(path, cfg.features_path, vocab, ClipTokenizer(), "pairs", drop_out_of_vocab=True,
                                 train=bool(cfg.train_augment), skip_bad_videos=bool(cfg.skip_bad_videos),
                                 **common)]
    return [build_qa_dataset(path, cfg.features_path, vocab, ClipTokenizer(), mode, **common)
            for mode in ("texts", "videos")]


def majority_answer(cfg, vocab: dict[str, int], log: RunLog) -> int | None:
    """The most frequent training answer (the baseline), when --train_csv is there."""
    if not Path(cfg.train_csv).is_file():
        log.info(f"no majority-answer baseline: {cfg.train_csv} not found")
        return None
    _, questions = load_questions(cfg.train_csv, cfg.features_path)
    return majority_label([vocab.get(q.answer, -1) for q in questions])


def make_evaluator(cfg, path: str, split: str, vocab, majority, dist: DistInfo, image_size: int, output_dir: Path):
    question_set, video_set = question_sets(cfg, path, vocab, image_size, train=False)

    def run(model) -> dict | None:
        return evaluate_qa(model, question_set, video_set, dist, cfg.batch_size_val, cfg.workers, cfg.precision,
                           majority, output_dir, split)
    return run


def train(cfg, model, vocab, dist: DistInfo, log: RunLog, output_dir: Path, evaluate) -> None:
    train_set, = question_sets(cfg, cfg.train_csv, vocab, model.clip.config.image_size, train=True)
    log.info(f"training on {len(train_set)} questions of {len(train_set.video_ids)} videos"
             + (f" ({train_set.dropped} with answers outside the vocabulary left out)" if train_set.dropped else ""))
    trainer = Trainer(model, train_set, TrainSettings.from_config(cfg), dist, log, output_dir, evaluate,
                      Selection("acc_top1"))
    best = trainer.fit()
    log.info(f"best acc_top1 {best['acc_top1']:.2f} at epoch {best['epoch']}")
    barrier()
    best_file = output_dir / "pytorch_model.bin.best"
    if best_file.is_file():  # the final evaluation uses the best epoch, as the reference does
        model.load_reference_state_dict(read_state_dict(best_file))


def main(argv: list[str] | None = None) -> dict | None:
    cfg = parse_with_config(vqa_parser(), argv)
    if not (cfg.do_train or cfg.do_eval):
        raise SystemExit("nothing to do: pass --do_train and/or --do_eval")
    if cfg.train_patch_embedding and cfg.freeze_layer_num >= 0:  # otherwise the flag would do nothing
        raise SystemExit(f"--train_patch_embedding 1 needs --freeze_layer_num -1: --freeze_layer_num "
                         f"{cfg.freeze_layer_num} freezes CLIP's embeddings, the patch embedding among them")
    dist, output_dir, log = start_run(cfg)
    if cfg.demo_data:
        if dist.is_main:
            generate_demo_qa(cfg.demo_data)
        barrier()
    log.info(f"{dist.world_size} process(es) on {dist.device}; run folder {output_dir}")
    vocab = load_answer_vocab(cfg.data_path)
    model = build_model(cfg, len(vocab)).to(dist.device)
    freeze_clip_layers(model.clip, cfg.freeze_layer_num)
    frozen = sum(not p.requires_grad for p in model.clip.parameters())  # the patch embedding counts too
    log.info(f"{len(vocab)} answers; {frozen} CLIP tensors frozen (--freeze_layer_num {cfg.freeze_layer_num}, "
             f"--train_patch_embedding {cfg.train_patch_embedding})")
    if cfg.do_train and cfg.skl and not cfg.estimator:
        log.info("no --estimator: distilling an untrained teacher, as the reference does (or pass --skl 0)")
    majority = majority_answer(cfg, vocab, log)
    image_size = model.clip.config.image_size
    if cfg.do_train:
        evaluate_val = make_evaluator(cfg, cfg.val_csv, "val", vocab, majority, dist, image_size, output_dir)
        train(cfg, model, vocab, dist, log, output_dir, evaluate_val)
    test_csv = cfg.test_csv or cfg.val_csv
    metrics = make_evaluator(cfg, test_csv, "test", vocab, majority, dist, image_size, output_dir)(model)
    return finish_run(dist, log, metrics, qa_table)


if __name__ == "__main__":
    main(sys.argv[1:])
