"""Whole-model cross-check of the C GPT against PyTorch autograd (docs/testing.md).

bin/crosscheck builds a small random model, saves it with the real checkpoint writer, runs three
training steps and dumps logits, loss, gradients and updated parameters (see the tool's header).
Here the reference model of reference.py loads that checkpoint and recomputes everything in
float64, so the only differences left are the C side's float32 rounding.

Tolerances. float32 rounds to 6e-8 relative; a sum of n terms adds up to sqrt(n) such errors
and LayerNorm / softmax backward subtract nearly equal numbers, which we allow a factor of a
few hundred for at these sizes (n <= 150 per sum). So logits and loss agree to 1e-5 and
gradients to 1e-4 of the largest entry of their tensor (measured: below 8e-7 and 2e-6, and
1.2e-5 for CoPE's position table at T = 150, whose gradient sums over T^2 query-key pairs).
A real bug (a missing term, a wrong index or scale) is off by 1e-2 or more. Errors are taken
relative to the tensor's largest reference entry, not element-wise, because entries that
cancel to near zero carry absolute, not relative, float32 error.

CoPE's gradient is discontinuous where a position p_ij crosses an integer, and with T = 150
some p land within float32 rounding of one (measured: 0 to 4 of 68k within 2e-5 per step),
where C and reference may stand on different sides: one such position moved the gradients of
ln1 and the qkv bias by 2.4e-4 of their largest entry on an AVX-512 machine. For those few
positions every choice of sides is tried and the best kept (backward_at_kinks), so the
tolerance stays 1e-4 and a real bug still fails.

Ms-PoE (docs/design.md) has no backward: its configs compare one forward (logits, loss) of
right-padded sequences of different lengths, and the ratio every layer gave every sequence's
heads, which must be the reference's exactly (the same ranks give the same double arithmetic).
The score order compares float32 softmax weights with 3x their mean where the reference uses
float64; a weight within rounding of that threshold could flip a rank, which the random configs
here do not meet (a flip would show as differing ratios, not pass silently).

The three AdamW steps feed the C gradients (already checked against the reference at the same
parameters) to torch.optim.AdamW and compare the parameter updates. Feeding the reference its
own gradients instead would not test anything more but would break on one tensor for a reason
no float32 code can avoid: the key bias has an exactly zero gradient (softmax ignores a score
shift shared by a row), float32 leaves ~1e-9 of rounding there, and Adam's normalised step
turns that into an update of up to lr in a random direction.
"""
import itertools
import json
import subprocess

import h5py
import numpy as np
import pytest
import torch  # a missing torch must fail the suite, not skip it

from reference import PE_CLASSES, GPT, MsPoE, adamw_step, decays, make_adamw
from harness import CROSSCHECK as TOOL, registry


LOGIT_TOL = 1e-5
GRAD_TOL = 1e-4
# Updates are ~lr (1e-2) against parameters of up to ~1.3 whose float32 rounding is ~1e-7,
# so the C update itself carries up to ~1e-5 relative error (measured: 7e-6).
UPDATE_TOL = 1e-4

# Every encoding of the registry as bin/train lists it, so that a new one is compared without
# a line here (and fails until tests/reference/reference.py has its class), then variants with
# their tool flags: rel and cope with tables short enough that distances and positions clamp.
PES = [(pe, []) for pe in registry("pe")] + [
    ("rel", ["--rel-npos", "6"]),
    ("rope", ["--rope-base", "100"]),
    ("cope", ["--cope-npos", "4"]),
    # MoICE: top 2 of 3 bases (spread wide so that the experts differ within 16 positions),
    # and router-only training with top 1 of 4
    ("rope", ["--moice-bases", "10000,300,30", "--moice-topk", "2", "--moice-aux", "0.2"]),
    ("rope", ["--moice-bases", "10000,3000,300,30", "--moice-topk", "1", "--moice-aux", "0.1",
              "--train-only", "routers"]),
]
# Checked in pre-norm only. MoICE with all bases kept: the load-balancing loss is then constant,
# so the routers learn from the mixing alone; post-norm feeds layer 0's router the raw
# embeddings (scale 0.1 here), whose gated product makes that gradient ~1e-8, where float32
# rounding alone is 2e-4 of it (PyTorch in float32 against float64: 1.6e-4). Pre-norm's
# LayerNorm gives the router inputs of unit scale.
PRE_NORM_ONLY = [
    ("rope", ["--moice-bases", "10000,30,3", "--moice-topk", "3", "--moice-aux", "0.3"]),
]
# The tool's default shape is small and fast; "long" crosses the attention's 64-row blocks
# (T = 150, and 113 on step 2) and LayerNorm's 32-column blocks with a width that is not a
# multiple of them, and uses an odd head count.
SHAPES = {
    "small": [],
    "long": ["--seq-len", "150", "--dim", "48", "--heads", "3", "--layers", "1", "--batch", "2"],
}
CONFIGS = ([(pe, flags, norm, act, "small") for pe, flags in PES for norm in ("pre", "post")
            for act in ("gelu", "relu")] +
           [(pe, flags, "pre", act, "small") for pe, flags in PRE_NORM_ONLY
            for act in ("gelu", "relu")] +
           [(pe, flags, "pre", "gelu", "long") for pe, flags in PES + PRE_NORM_ONLY])
IDS = ["-".join([pe, *[f.lstrip("-") for f in flags], norm, act, shape])
       for pe, flags, norm, act, shape in CONFIGS]


def test_every_registered_encoding_has_a_reference():
    missing = sorted(set(registry("pe")) - set(PE_CLASSES))
    assert not missing, (f"encodings without a PyTorch reference: {missing}; add a class to "
                         "tests/reference/reference.py and an entry in PE_CLASSES")


def rel_err(c, ref):
    """max |c - ref| / max |ref|; the reference is float64."""
    scale = np.max(np.abs(ref))
    assert scale > 0, "the reference is all zeros: the comparison would prove nothing"
    return float(np.max(np.abs(np.asarray(c, dtype=np.float64) - ref)) / scale)


def load_reference(path):
    """The few lines a user needs to load a pelab checkpoint into the reference."""
    with h5py.File(path, "r") as f:
        model = GPT(json.loads(f.attrs["config"])["model"])
        state = {k: torch.from_numpy(f["model"][k][()]) for k in f["model"]}
    model.load_state_dict(state)  # strict: a missing or extra name fails here
    return model.double()


def copy_params(model, group):
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(group[name][()]).double())


def check_names(model, group, what):
    ref = {n for n, _ in model.named_parameters()}
    got = set(group.keys())
    assert got == ref, (f"{what}: names differ from the reference; missing {sorted(ref - got)}, "
                        f"unexpected {sorted(got - ref)}")


def worst_grad_err(model, grads, frozen):
    return max(rel_err(grads[n][()], p.grad.numpy()) for n, p in model.named_parameters()
               if n not in frozen)


def backward_at_kinks(model, inputs, targets, grads, frozen, most=8):
    """Forward and backward of the reference, leaving its gradients in .grad; returns (logits,
    loss). CoPE's gradient jumps where a position p crosses an integer, so where the float64
    reference has p within rounding of an integer (reference.py, CopePE.KINK) the float32 C
    model may have taken the other side. Then each choice of sides for those few kinks is tried
    and the one closest to the C gradients kept: the C model must still match one consistent
    reading of every kink, at the full tolerance."""
    def run(flip):
        model.pe.flip = flip
        model.zero_grad(set_to_none=True)
        logits, loss = model(inputs, targets)
        loss.backward()
        return logits, loss

    out = run({})
    kinks = dict(getattr(model.pe, "kinks", {}))
    where = [(layer, tuple(i)) for layer, mask in kinks.items() for i in mask.nonzero().tolist()]
    if not where or worst_grad_err(model, grads, frozen) <= GRAD_TOL:
        return out
    assert len(where) <= most, f"{len(where)} CoPE positions within rounding of an integer"
    best = None
    for sides in itertools.product((False, True), repeat=len(where)):
        flip = {layer: torch.zeros_like(mask) for layer, mask in kinks.items()}
        for (layer, i), side in zip(where, sides):
            flip[layer][i] = side
        run(flip)
        err = worst_grad_err(model, grads, frozen)
        if best is None or err < best[0]:
            best = (err, flip)
    out = run(best[1])
    model.pe.flip = {}
    return out


@pytest.mark.parametrize("pe,flags,norm,act,shape", CONFIGS, ids=IDS)
def test_matches_pytorch(pe, flags, norm, act, shape, tmp_path):
    assert TOOL.exists(), f"{TOOL} is missing: run `make bin/crosscheck` first"
    run = subprocess.run([str(TOOL), "--pe", pe, "--norm", norm, "--act", act, "--out",
                          str(tmp_path), *flags, *SHAPES[shape]], capture_output=True, text=True)
    assert run.returncode == 0, f"bin/crosscheck failed ({run.returncode}): {run.stderr}"
    model = load_reference(tmp_path / "model.h5")
    failures = []

    def expect(err, tol, what):
        if not err <= tol:  # also catches NaN
            failures.append(f"{what}: relative error {err:.3g} > {tol:g}")

    with h5py.File(tmp_path / "dump.h5", "r") as d:
        grads1 = d["step1/grads"]
        decay = {n: bool(grads1[n].attrs["weight_decay"]) for n in grads1}
        frozen = {n for n in grads1 if not grads1[n].attrs["trainable"]}
        assert ("--train-only" in flags) == bool(frozen), f"frozen tensors: {sorted(frozen)}"
        initial = {n: p.detach().clone() for n, p in model.named_parameters()}
        for name, p in model.named_parameters():
            p.requires_grad_(name not in frozen)
        for name, p in model.named_parameters():
            assert decay[name] == decays(model, name, p), (
                f"{name}: the C optimiser {'decays' if decay[name] else 'does not decay'} it; "
                "AdamW must decay the matrices and embeddings, not biases (the T5 bias table "
                "among them) or LayerNorm gains")
        opt = make_adamw(model, lr=float(d.attrs["lr"]),
                         betas=(float(d.attrs["beta1"]), float(d.attrs["beta2"])),
                         eps=float(d.attrs["eps"]), weight_decay=float(d.attrs["weight_decay"]),
                         decay=lambda m, n, p: decay[n])
        clipped = []
        for step in (1, 2, 3):
            s = d[f"step{step}"]
            check_names(model, s["grads"], f"step {step} gradients")
            check_names(model, s["params"], f"step {step} parameters")
            inputs = torch.from_numpy(s["inputs"][()].astype(np.int64))
            targets = torch.from_numpy(s["targets"][()].astype(np.int64))
            logits, loss = backward_at_kinks(model, inputs, targets, s["grads"], frozen)
            expect(rel_err(s["logits"][()], logits.detach().numpy()), LOGIT_TOL,
                   f"step {step} logits")
            # loss: the cross-entropy; objective: what backward differentiated (+ MoICE's aux)
            expect(rel_err(s.attrs["loss"], model.ce_loss.item()), LOGIT_TOL, f"step {step} loss")
            expect(rel_err(s.attrs["objective"], loss.item()), LOGIT_TOL, f"step {step} objective")
            if model.routings:
                expect(rel_err(s.attrs["aux_loss"], model.aux_loss.item()), LOGIT_TOL,
                       f"step {step} load-balancing loss")
            for name, p in model.named_parameters():
                if name in frozen:  # no gradient product may have written there
                    assert not np.any(s["grads"][name][()]), f"frozen {name} has a gradient"
                    continue
                expect(rel_err(s["grads"][name][()], p.grad.numpy()), GRAD_TOL,
                       f"step {step} gradient of {name}")

            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name not in frozen:
                        p.grad.copy_(torch.from_numpy(s["grads"][name][()]))
            max_norm = float(s.attrs["max_norm"])
            grad_norm = adamw_step(model, opt, max_norm)
            expect(rel_err(s.attrs["grad_norm"], grad_norm), LOGIT_TOL, f"step {step} grad norm")
            clipped.append(0 < max_norm < grad_norm)
            for name, p in model.named_parameters():
                if name in frozen:  # bit for bit the initial weights
                    assert np.array_equal(s["params"][name][()], initial[name].float().numpy()), name
                    continue
                c_update = s["params"][name][()].astype(np.float64) - before[name].numpy()
                expect(rel_err(c_update, (p.detach() - before[name]).numpy()), UPDATE_TOL,
                       f"step {step} AdamW update of {name}")
            # The next step's forward starts from the C parameters, so each step's gradients
            # are checked at exactly the point the C model computed them.
            copy_params(model, s["params"])
        assert any(clipped) and not all(clipped), f"clipping should act on some steps only: {clipped}"

    assert not failures, (f"{pe} {flags} {norm}/{act}/{shape} differs from PyTorch:\n  "
                          + "\n  ".join(failures))


# Ms-PoE on rope: (ratios, skip layers, order, norm, act, shape). "long" has one layer, so it
# skips none; a ratio range of 1:3 there rotates the far positions well away from plain rope.
MSPOE_CONFIGS = [
    ("1.2:1.8", 0, "score", "pre", "gelu", "small"),
    ("1.2:1.8", 1, "score", "post", "relu", "small"),
    ("1.2:1.8", 1, "plain", "pre", "gelu", "small"),
    ("1:3", 0, "score", "pre", "gelu", "long"),
]
MSPOE_IDS = [f"{r}-skip{skip}-{order}-{norm}-{act}-{shape}"
             for r, skip, order, norm, act, shape in MSPOE_CONFIGS]


@pytest.mark.parametrize("ratios,skip,order,norm,act,shape", MSPOE_CONFIGS, ids=MSPOE_IDS)
def test_mspoe_matches_pytorch(ratios, skip, order, norm, act, shape, tmp_path):
    assert TOOL.exists(), f"{TOOL} is missing: run `make bin/crosscheck` first"
    run = subprocess.run([str(TOOL), "--pe", "rope", "--norm", norm, "--act", act, "--out",
                          str(tmp_path), "--mspoe", ratios, "--mspoe-skip", str(skip),
                          "--mspoe-order", order, *SHAPES[shape]], capture_output=True, text=True)
    assert run.returncode == 0, f"bin/crosscheck failed ({run.returncode}): {run.stderr}"
    model = load_reference(tmp_path / "model.h5")
    with h5py.File(tmp_path / "dump.h5", "r") as d:
        g = d["mspoe"]
        assert g.attrs["skip_layers"] == skip and g.attrs["order"].decode() == order
        model.mspoe = MsPoE(float(g.attrs["ratio_min"]), float(g.attrs["ratio_max"]), skip, order)
        inputs = torch.from_numpy(g["inputs"][()].astype(np.int64))
        targets = torch.from_numpy(g["targets"][()].astype(np.int64))
        with torch.no_grad():
            logits, loss = model(inputs, targets)
        assert rel_err(g["logits"][()], logits.numpy()) <= LOGIT_TOL
        assert rel_err(g.attrs["loss"], loss.item()) <= LOGIT_TOL
        c_ratios = g["ratios"][()]
    rows = model.mspoe.rows
    assert len(set(rows)) == len(rows), f"the sequences should rank at different rows: {rows}"
    assert sorted(model.mspoe.ratios) == list(range(skip, len(c_ratios)))
    reordered = False
    for layer, c in enumerate(c_ratios):
        if layer < skip:
            assert not c.any(), f"layer {layer} is skipped but has ratios {c}"
            continue
        ref = model.mspoe.ratios[layer].numpy()
        assert np.array_equal(c, ref), f"layer {layer}: C ratios {c} differ from {ref}"
        plain = np.sort(ref, axis=1)
        assert np.array_equal(np.sort(c, axis=1), plain), "each sequence uses every ratio once"
        reordered |= not np.array_equal(c, plain)
    # The score order must actually reorder heads somewhere, or the ranks were not tested.
    assert reordered == (order == "score"), f"reordered: {reordered}, order {order}"
