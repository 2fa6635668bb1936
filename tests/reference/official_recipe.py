"""A PyTorch trainer written to the CoPE paper's official training recipe, as a yardstick for
pelab's training dynamics (not only its math).

What it does as the official trainer does (read from the released code, restated here):
- initialisation: token embeddings N(0, C^-1/2) (learned absolute positions too); every Linear
  layer with PyTorch's default init, weights and biases uniform within 1/sqrt(fan_in) (q, k and
  v are separate C x C layers there, so the fused [3C, C] qkv gets the same bound 1/sqrt(C));
  the attention output and the second MLP layer divided by sqrt(2L) in pre-norm models only;
  the relative table N(0, d^-1/2), CoPE's position tables zeros;
- dropout on the embeddings, the attention probabilities, both residual branches and after the
  MLP activation, all at the same rate;
- data order: a fresh uniform permutation of the training set every epoch, cut in order into
  batches of B, the last short batch kept; each batch padded to its longest sequence;
- Adam (no weight decay, clipping, warmup or schedule), the loss the mean cross-entropy of the
  scored positions of the batch.

The model is the reference GPT (reference.py), whose math the cross-checks pin to pelab's; the
data are a pelab dataset file (bin/train --write-data), so both trainers see the same samples.

    python3 tests/official_recipe.py DATA.h5 CONFIG.json --steps 400 --seed 1 --window 25
prints one JSON list: the mean training loss of each window of steps.
"""
import argparse
import json
import math

import h5py
import torch

from reference import GPT


def init_official(model):
    """The official trainer's initialisation of a reference GPT (see the module docstring)."""
    cfg = model.cfg
    C, L = cfg["n_embd"], cfg["n_layer"]
    d = C // cfg["n_head"]
    gen_scale = 1.0 / math.sqrt(2 * L) if cfg["norm"] == "pre" else 1.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("wte.weight", "wpe.weight"):
                torch.nn.init.normal_(p, 0.0, C ** -0.5)
            elif name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "ln_f.weight":
                torch.nn.init.ones_(p)
            elif name.endswith("ln1.bias") or name.endswith("ln2.bias") or name == "ln_f.bias":
                torch.nn.init.zeros_(p)
            elif name.endswith("attn.cope.weight"):
                torch.nn.init.zeros_(p)
            elif name == "pe.rel.weight":
                torch.nn.init.normal_(p, 0.0, d ** -0.5)
            elif name.endswith(".weight") and p.ndim == 2 and (".attn." in name or ".mlp." in name):
                fan_in = p.shape[1]
                bound = 1.0 / math.sqrt(fan_in)
                if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                    bound *= gen_scale
                torch.nn.init.uniform_(p, -bound, bound)
            elif name.endswith(".bias") and (".attn." in name or ".mlp." in name):
                # the bias of a Linear layer: bound 1/sqrt(fan_in) of its weight
                weight = dict(model.named_parameters())[name[: -len("bias")] + "weight"]
                bound = 1.0 / math.sqrt(weight.shape[1])
                torch.nn.init.uniform_(p, -bound, bound)
            else:
                raise ValueError(f"no official init known for {name}")


def load_train(path):
    """The training set of a pelab dataset file as inputs, targets [N, W] (-1 where not scored)
    and lengths [N]: position t's target is token t+1 where the score mask says so."""
    with h5py.File(path, "r") as f:
        tokens = torch.from_numpy(f["train/tokens"][()]).long()
        mask = torch.from_numpy(f["train/score_mask"][()]).bool()
        lengths = torch.from_numpy(f["train/lengths"][()]).long()
    targets = torch.where(mask, tokens[:, 1:], torch.full_like(mask, -1, dtype=torch.long))
    return tokens[:, :-1], targets, lengths


def batches(n, B, gen):
    """Endless batches of row indices: a uniform permutation per epoch, last short batch kept."""
    while True:
        order = torch.randperm(n, generator=gen)
        for k in range(0, n, B):
            yield order[k : k + B]


def train(data, cfg, steps, seed, window, lr, batch, betas=(0.9, 0.999), eps=1e-8):
    torch.manual_seed(seed)
    inputs, targets, lengths = load_train(data)
    model = GPT(cfg)
    init_official(model)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)
    gen = torch.Generator().manual_seed(seed)
    curve, total = [], 0.0
    for step, rows in zip(range(steps), batches(len(inputs), batch, gen)):
        T = int(lengths[rows].max())
        _, loss = model(inputs[rows, :T], targets[rows, :T])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item()
        if (step + 1) % window == 0:
            curve.append(total / window)
            total = 0.0
    return curve


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="pelab dataset file with a training set")
    ap.add_argument("config", help="JSON of the model config (the 'model' object of a run)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--window", type=int, default=25)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.config) as f:
        cfg = json.load(f)
    print(json.dumps(train(a.data, cfg, a.steps, a.seed, a.window, a.lr, a.batch)))


if __name__ == "__main__":
    main()
