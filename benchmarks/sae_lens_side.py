"""The SAELens side of bench_dictionary_trainer.py, run in .venv-sae (SAELens 6 pins
TransformerLens < 4): train SAELens' own SAE on the benchmark's activations at matched settings.

    .venv-sae/bin/python benchmarks/sae_lens_side.py ACTS.safetensors OUT.json KIND WIDTH K L1 LR STEPS BATCH

Matched to zoo's trainer (zoo/dictionaries/sparse_autoencoder.py): squared error summed over the
input and averaged over the batch, the gradient clipped to norm 1 (SAELens' fixed value), Adam at a
constant lr, no warm-up, no activation normalisation, x - b_dec into the encoder. TopK: SAELens'
decoder-norm rescaling and its aux-k loss off, and the decoder rows set to unit norm before every
step (its data provider does it: SAELens calls it after each optimizer step), as zoo's trainer holds
them. Standard: ReLU with the L1 penalty weighted by decoder-row norms. Prints VE, L0 and seconds.
"""
import json
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore")
from safetensors.torch import load_file  # noqa: E402
from sae_lens import LoggingConfig, SAETrainer, StandardTrainingSAEConfig, TopKTrainingSAEConfig  # noqa: E402
from sae_lens.config import SAETrainerConfig  # noqa: E402
from sae_lens.saes import StandardTrainingSAE, TopKTrainingSAE  # noqa: E402


def main() -> None:
    acts_file, out_file, kind, width, k, l1, lr, steps, batch = sys.argv[1:10]
    width, k, steps, batch, l1, lr = int(width), int(k), int(steps), int(batch), float(l1), float(lr)
    tensors = load_file(acts_file)
    train, test = tensors["train"], tensors["test"]
    torch.manual_seed(0)
    d_in = train.shape[1]
    if kind == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=width, k=k,
                                                    rescale_acts_by_decoder_norm=False,
                                                    aux_loss_coefficient=0.0))
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=width, l1_coefficient=l1))
    sae.cfg.metadata.hook_name = "benchmark"
    generator = torch.Generator().manual_seed(0)

    def batches():
        while True:
            order = torch.randperm(len(train), generator=generator)
            for start in range(0, len(train) - batch + 1, batch):
                if kind == "topk":
                    with torch.no_grad():
                        sae.W_dec.data /= sae.W_dec.data.norm(dim=-1, keepdim=True)
                yield train[order[start:start + batch]]

    config = SAETrainerConfig(total_training_samples=steps * batch, train_batch_size_samples=batch,
                              lr=lr, lr_end=lr, lr_scheduler_name="constant", lr_warm_up_steps=0,
                              lr_decay_steps=0, adam_beta1=0.9, adam_beta2=0.999, device="cpu",
                              dead_feature_window=10**9, feature_sampling_window=10**9,
                              logger=LoggingConfig(log_to_wandb=False))
    started = time.perf_counter()
    SAETrainer(cfg=config, sae=sae, data_provider=batches()).fit()
    seconds = time.perf_counter() - started
    if kind == "topk":
        with torch.no_grad():
            sae.W_dec.data /= sae.W_dec.data.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        z = sae.encode(test)
        x_hat = sae.decode(z)
    ve = 1.0 - float(((test - x_hat) ** 2).sum()) / float(((test - test.mean(0)) ** 2).sum())
    json.dump({"variance_explained": ve, "l0": float((z > 0).float().sum(-1).mean()),
               "seconds": seconds}, open(out_file, "w"))


if __name__ == "__main__":
    main()
