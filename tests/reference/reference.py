"""PyTorch reference of the pelab GPT (docs/design.md), for cross-checks and benchmarks.

The math is exactly the C model's, and state_dict keys equal the C tensor names, so a pelab
checkpoint loads with a few lines:

    import h5py, json, torch
    from reference import GPT
    with h5py.File("checkpoints/flipflop-abs-s1/model.h5", "r") as f:
        model = GPT(json.loads(f.attrs["config"])["model"])
        model.load_state_dict({k: torch.from_numpy(f["model"][k][()]) for k in f["model"]})

Positional encodings are small modules with up to three hooks, the same places the C interface
(model/pe.h) has: `embed` (a [T, C] signal added to the token embeddings), `qk` (transforms q
and k before the dot product) and `score` (adds a term to the scaled scores before the causal
softmax). A new encoding is one class and one entry in PE_CLASSES. They are written from the
papers and docs/design.md, not from the C code, so that the cross-check is independent.

MoICE (docs/design.md, config key "moice") replaces a rope model's single rotation: every head
attends once per base and mixes the results with its layer's router weights; the model's loss
then adds aux_weight times the load-balancing loss.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class PositionalEncoding(nn.Module):
    """No position information (NoPE); the base every encoding overrides hooks of.

    Registered as the model's `pe` submodule, so tensors it owns are named "pe.<...>" like the
    C model's shared PE tensors; `build` attaches the ones named elsewhere (wpe, per-layer)."""

    # Its tensors of two or more dimensions that AdamW does not decay (they are biases).
    no_decay = ()

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.d = cfg["n_embd"] // cfg["n_head"]

    def build(self, model):
        """Attaches tensors or buffers the C model names outside "pe." (after the blocks exist)."""

    def embed(self, model, T):
        """Returns the [T, C] signal added to the token embeddings, or None."""
        return None

    def qk(self, model, layer, q, k):
        """q, k: [B, H, T, d]; returns the transformed pair."""
        return q, k

    def score(self, model, layer, s, q, k):
        """s: [B, H, T, T] = q.k / sqrt(d) (the future not masked yet); returns s plus the term."""
        return s


def distances(T, device):
    """[T, T] matrix of i - j (negative above the diagonal, where the mask applies anyway)."""
    t = torch.arange(T, device=device)
    return t[:, None] - t[None, :]


class AbsPE(PositionalEncoding):
    def build(self, model):
        model.wpe = nn.Embedding(self.cfg["seq_len"], self.cfg["n_embd"])

    def embed(self, model, T):
        return model.wpe.weight[:T]


class SinPE(PositionalEncoding):
    def build(self, model):
        T, C = self.cfg["seq_len"], self.cfg["n_embd"]
        t = torch.arange(T, dtype=torch.float64)[:, None]
        even = torch.arange(0, C, 2, dtype=torch.float64)  # 2m, shared by the sin/cos pair
        angle = t / torch.pow(10000.0, even / C)
        table = torch.empty(T, C, dtype=torch.float64)
        table[:, 0::2] = torch.sin(angle)
        table[:, 1::2] = torch.cos(angle[:, : C // 2])
        # Not persistent: the C model learns nothing here, so its checkpoint has no such key.
        model.register_buffer("sinusoid", table.float(), persistent=False)

    def embed(self, model, T):
        return model.sinusoid[:T]


class RelPE(PositionalEncoding):
    """s_ij += q_i.R[min(i - j, npos - 1)] / sqrt(d), one R [npos, d] for all layers and heads;
    rel_npos 0 means seq_len rows."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.npos = cfg.get("rel_npos") or cfg["seq_len"]
        self.rel = nn.Embedding(self.npos, self.d)

    def score(self, model, layer, s, q, k):
        T = s.shape[-1]
        idx = distances(T, s.device).clamp(0, self.npos - 1)
        z = q @ self.rel.weight.T  # [B, H, T, npos]: q_i.R[r] for every r
        return s + z.gather(-1, idx.expand(*z.shape[:2], T, T)) / math.sqrt(self.d)


class T5PE(PositionalEncoding):
    """s_ij += b[h, bucket(i - j)], b [H, 32] for all layers, not scaled by 1/sqrt(d). Buckets of
    T5's causal relative_position_bucket: exact below 16, log-spaced up to 128, then the last."""

    no_decay = ("pe.t5.weight",)
    BUCKETS, EXACT, MAX_DISTANCE = 32, 16, 128

    def __init__(self, cfg):
        super().__init__(cfg)
        self.t5 = nn.Embedding(cfg["n_head"], self.BUCKETS)

    def bucket(self, n):
        large = self.EXACT + (torch.log(n.clamp(min=1).double() / self.EXACT)
                              / math.log(self.MAX_DISTANCE / self.EXACT)
                              * (self.BUCKETS - self.EXACT)).long()
        return torch.where(n < self.EXACT, n, large.clamp(max=self.BUCKETS - 1))

    def score(self, model, layer, s, q, k):
        b = self.bucket(distances(s.shape[-1], s.device).clamp(min=0))
        return s + self.t5.weight[:, b]  # [H, T, T], broadcast over the batch


def alibi_slopes(n):
    """The ALiBi paper's slopes: 2^(-8(h+1)/n) for n a power of two; otherwise those of the
    nearest lower power of two p, then every other slope of 2p for the remaining heads."""
    if n & (n - 1) == 0:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]
    p = 1 << (n.bit_length() - 1)
    return alibi_slopes(p) + alibi_slopes(2 * p)[0::2][: n - p]


class AlibiPE(PositionalEncoding):
    """s_ij -= m_h (i - j); nothing learned."""

    def score(self, model, layer, s, q, k):
        m = torch.tensor(alibi_slopes(self.cfg["n_head"]), dtype=s.dtype, device=s.device)
        return s - m[:, None, None] * distances(s.shape[-1], s.device).to(s.dtype)


def rope(x, base, positions=None):
    """Rotates x [..., T, d]: dimension m pairs with m + d/2 (rotate-half), angle
    position * base^(-2m/d); positions [..., T] (float64) broadcast against x's leading dims,
    by default t = 0 .. T-1."""
    d = x.shape[-1]
    half = d // 2
    if positions is None:
        positions = torch.arange(x.shape[-2], dtype=torch.float64)
    theta = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / d)
    angle = positions[..., None] * theta  # [..., T, d/2]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class RopePE(PositionalEncoding):
    """Rotates q and k by the positions t = 0 .. T-1, with the model's rope base."""

    def qk(self, model, layer, q, k):
        return rope(q, self.cfg["rope_base"]), rope(k, self.cfg["rope_base"])


class CopePE(PositionalEncoding):
    """Contextual positions (docs/design.md): gates g_ij = sigmoid(q_i.k_j / sqrt(d)) on j <= i,
    p_ij = min(sum_{k=j..i} g_ik, npos - 1), z_i[n] = q_i.E[n] with E [npos, d] per layer,
    e_ij = w z_i[ceil p] + (1 - w) z_i[floor p] with w = p - floor p, s_ij += e_ij / sqrt(d).
    Autograd gives the gradients docs/design.md states: floor and ceil carry none, clamp zeroes the clamped
    gates' gradient, and the gates pass theirs to q and k through s."""

    # The gradient of p jumps where p crosses an integer (z_i[n+1] - z_i[n] above n, z_i[n] -
    # z_i[n-1] below), so a float32 and a float64 computation of the same model may stand on
    # either side where p lies within rounding of an integer. `kinks` records, per layer, the
    # positions of the last forward within KINK of an integer n (1 <= n < npos - 1, so both
    # sides exist); `flip`, when it has a layer, is a bool mask of the kinks to take from the
    # other side than p's own.
    KINK = 2e-5

    def __init__(self, cfg):
        super().__init__(cfg)
        self.npos = cfg.get("cope_npos") or cfg["seq_len"] + 1
        self.kinks, self.flip = {}, {}

    def build(self, model):
        for block in model.blocks:
            block.attn.cope = nn.Embedding(self.npos, self.d)

    def score(self, model, layer, s, q, k):
        T = s.shape[-1]
        future = torch.ones(T, T, dtype=torch.bool, device=s.device).triu(1)
        gates = torch.sigmoid(s).masked_fill(future, 0.0)
        pos = gates.flip(-1).cumsum(-1).flip(-1).clamp(max=self.npos - 1)
        p = pos.detach()
        nearest = p.round()
        self.kinks[layer] = ((p - nearest).abs() < self.KINK) & (nearest >= 1) & \
            (nearest < self.npos - 1) & ~future
        floor = p.floor()
        if layer in self.flip:  # p >= n: floor n - 1 instead of n; p < n: floor n, not n - 1
            floor = torch.where(self.flip[layer], torch.where(p >= nearest, nearest - 1, nearest), floor)
        w = pos - floor  # outside [0, 1] on a flipped kink, by at most KINK
        z = q @ model.blocks[layer].attn.cope.weight.T  # [B, H, T, npos]
        z_floor = z.gather(-1, floor.long())
        z_ceil = z.gather(-1, torch.where(self.kinks[layer] | (w.detach() > 0), floor + 1, floor).long())
        return s + (w * z_ceil + (1 - w) * z_floor) / math.sqrt(self.d)


class MsPoE:
    """Ms-PoE (docs/design.md), an evaluation-time change to a rope model, written from the paper.
    Set it as `model.mspoe`; the attention of layers from skip_layers on then
    rotates q and k of head h of sequence b by the positions t / r[b, h] instead of t, with
    r = ratio_min + (ratio_max - ratio_min) * rank / H. Ranks: "plain" is the head index;
    "score" sorts the heads by their position-awareness score, highest first (equal scores by
    head index), so the most position-aware head gets ratio_min. The score is the fraction of the
    keys whose weight, in the causal softmax of q k^T / sqrt(d) WITHOUT the rotation, exceeds 3x
    the row's mean, in the row of the sequence's last scored position (its last row when nothing
    is scored). `ratios` keeps the [B, H] ratios of every affected layer of the last forward."""

    def __init__(self, ratio_min, ratio_max, skip_layers=2, order="score"):
        if order not in ("score", "plain"):
            raise ValueError(f"order must be score or plain, got {order!r}")
        self.ratio_min, self.ratio_max = ratio_min, ratio_max
        self.skip_layers, self.order = skip_layers, order
        self.rows = None  # [B] scored row per sequence, set by GPT.forward
        self.ratios = {}

    def rank(self, q, k):
        B, H, T, d = q.shape
        rank = torch.empty(B, H, dtype=torch.float64)
        for b in range(B):
            if self.order == "plain":
                order = range(H)
            else:
                row = self.rows[b]
                s = torch.einsum("hd,hjd->hj", q[b, :, row], k[b, :, : row + 1]) / math.sqrt(d)
                w = F.softmax(s, dim=-1)
                score = (w > 3 * w.mean(-1, keepdim=True)).double().mean(-1).tolist()
                order = sorted(range(H), key=lambda h: -score[h])  # stable: ties by index
            for j, h in enumerate(order):
                rank[b, h] = j
        return rank

    def qk(self, model, layer, q, k):
        if layer < self.skip_layers:
            return model.pe.qk(model, layer, q, k)
        r = self.ratio_min + (self.ratio_max - self.ratio_min) * self.rank(q, k) / q.shape[1]
        self.ratios[layer] = r
        positions = torch.arange(q.shape[2], dtype=torch.float64) / r[..., None]  # [B, H, T]
        return rope(q, model.cfg["rope_base"], positions), rope(k, model.cfg["rope_base"], positions)


def last_scored_rows(targets, T):
    """Per sequence, its last position with a target >= 0 (T - 1 when none is)."""
    return [int(row.nonzero().max()) if row.any() else T - 1 for row in targets >= 0]


PE_CLASSES = {"none": PositionalEncoding, "abs": AbsPE, "sin": SinPE, "rel": RelPE, "t5": T5PE,
              "alibi": AlibiPE, "rope": RopePE, "cope": CopePE}


class Router(nn.Module):
    """MoICE's router of one layer, shared by its heads: W2 (silu(W1 q) * (W3 q)), no biases."""

    def __init__(self, d, n):
        super().__init__()
        self.w1 = nn.Linear(d, n, bias=False)
        self.w3 = nn.Linear(d, n, bias=False)
        self.w2 = nn.Linear(n, n, bias=False)

    def forward(self, q):
        return self.w2(F.silu(self.w1(q)) * self.w3(q))


class Attention(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        C = cfg["n_embd"]
        self.n_head = cfg["n_head"]
        self.layer = layer
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.drop = nn.Dropout(cfg["dropout"])
        self.moice = cfg.get("moice")
        if self.moice:
            self.router = Router(C // self.n_head, len(self.moice["bases"]))

    def attend(self, model, q, k, v):
        """Causal attention of q, k, v [B, H, T, d] with the PE's score term."""
        T, d = q.shape[2], q.shape[3]
        s = (q @ k.transpose(-2, -1)) / math.sqrt(d)
        s = model.pe.score(model, self.layer, s, q, k)
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        a = self.drop(F.softmax(s.masked_fill(future, float("-inf")), dim=-1))
        return a @ v

    def mixture(self, model, q, k, v):
        """MoICE: the router sees q rotated with the first base; softmax, top K, renormalised;
        attention once per base (q and k rotated by it), mixed per (token, head). The routing
        (probabilities, top-K mask) goes to model.routings for the load-balancing loss."""
        bases = self.moice["bases"]
        p = F.softmax(self.router(rope(q, bases[0])), dim=-1)  # [B, H, T, N]
        top = p.topk(self.moice["top_k"], dim=-1).indices
        picked = torch.zeros_like(p, dtype=torch.bool).scatter(-1, top, True)
        kept = torch.where(picked, p, torch.zeros_like(p))
        w = kept / kept.sum(-1, keepdim=True)
        model.routings.append((p, picked))
        return sum(w[..., n, None] * self.attend(model, rope(q, b), rope(k, b), v)
                   for n, b in enumerate(bases))

    def forward(self, x, model):
        B, T, C = x.shape
        H = self.n_head
        d = C // H
        # Rows of the qkv weight are q, then k, then v; head j owns columns j*d..j*d+d-1.
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (z.view(B, T, H, d).transpose(1, 2) for z in (q, k, v))
        if self.moice:
            y = self.mixture(model, q, k, v)
        else:
            q, k = (model.mspoe or model.pe).qk(model, self.layer, q, k)
            y = self.attend(model, q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc = nn.Linear(cfg["n_embd"], cfg["ffn_dim"])
        self.proj = nn.Linear(cfg["ffn_dim"], cfg["n_embd"])
        if cfg["act"] == "gelu":
            self.act = lambda x: F.gelu(x, approximate="tanh")
        elif cfg["act"] == "relu":
            self.act = F.relu
        else:
            raise ValueError(f"act must be gelu or relu, got {cfg['act']!r}")

        # after the activation, as the CoPE paper's trainer has it (config key "ffn_dropout")
        self.drop = nn.Dropout(cfg.get("ffn_dropout", 0.0))

    def forward(self, x):
        return self.proj(self.drop(self.act(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        C = cfg["n_embd"]
        self.pre = cfg["norm"] == "pre"
        self.ln1 = nn.LayerNorm(C, eps=1e-5)
        self.attn = Attention(cfg, layer)
        self.ln2 = nn.LayerNorm(C, eps=1e-5)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg["dropout"])

    def forward(self, h, model):
        if self.pre:
            a = h + self.drop(self.attn(self.ln1(h), model))
            return a + self.drop(self.mlp(self.ln2(a)))
        a = self.ln1(h + self.drop(self.attn(h, model)))
        return self.ln2(a + self.drop(self.mlp(a)))


class GPT(nn.Module):
    """The pelab GPT; cfg is the "model" object of a checkpoint's config JSON."""

    def __init__(self, cfg):
        super().__init__()
        if cfg["norm"] not in ("pre", "post"):
            raise ValueError(f"norm must be pre or post, got {cfg['norm']!r}")
        if not cfg.get("tied", True):
            raise ValueError("the reference has only the tied output head (logits = h wte^T)")
        if cfg["pe"] not in PE_CLASSES:
            raise ValueError(f"the reference has no PE {cfg['pe']!r} (has {', '.join(PE_CLASSES)})")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["n_embd"])
        self.pe = PE_CLASSES[cfg["pe"]](cfg)
        self.drop = nn.Dropout(cfg["dropout"])
        self.blocks = nn.ModuleList(Block(cfg, l) for l in range(cfg["n_layer"]))
        self.pe.build(self)
        self.ln_f = nn.LayerNorm(cfg["n_embd"], eps=1e-5) if cfg["norm"] == "pre" else None
        self.mspoe = None  # an MsPoE, for evaluation of rope models
        self.init_weights()

    def init_weights(self, std=0.02):
        """GPT-2 style, like gpt_init: N(0, std) matrices, residual projections scaled by
        1/sqrt(2L), zero biases, unit LayerNorm gains. PE tables get N(0, std) too, not their
        C initialisation: whatever depends on values loads a checkpoint instead (the benchmark,
        which does not, times the same work with any values)."""
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                scale = 1.0 / math.sqrt(2 * self.cfg["n_layer"]) if name.endswith("proj.weight") else 1.0
                nn.init.normal_(p, 0.0, std * scale)
            elif name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "ln_f.weight":
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)

    def forward(self, inputs, targets=None):
        """inputs, targets: [B, T] int64, targets -1 where not scored. Returns (logits, loss);
        loss is the training objective: the mean cross-entropy over the scored positions (0 if
        there are none), plus with MoICE aux_weight times the load-balancing loss
        N sum_n f_n P_n over the routings of all layers. self.ce_loss and self.aux_loss keep
        the two terms."""
        T = inputs.shape[1]
        self.routings = []
        if self.mspoe is not None:
            if self.cfg["pe"] != "rope":
                raise ValueError(f"Ms-PoE rescales rope's positions; this model uses {self.cfg['pe']}")
            self.mspoe.rows = last_scored_rows(targets, T) if targets is not None else [T - 1] * len(inputs)
        h = self.wte(inputs)
        signal = self.pe.embed(self, T)
        if signal is not None:
            h = h + signal
        h = self.drop(h)
        for block in self.blocks:
            h = block(h, self)
        if self.ln_f is not None:
            h = self.ln_f(h)
        logits = h @ self.wte.weight.T
        if targets is None:
            return logits, None
        scored = targets >= 0
        if not scored.any():
            self.ce_loss = logits.sum() * 0.0
        else:
            self.ce_loss = F.cross_entropy(logits[scored], targets[scored])
        self.aux_loss = logits.new_zeros(())
        if self.routings:
            N = len(self.cfg["moice"]["bases"])
            probs = torch.cat([p.reshape(-1, N) for p, _ in self.routings])
            picked = torch.cat([m.reshape(-1, N) for _, m in self.routings]).to(probs.dtype)
            self.aux_loss = N * (picked.mean(0) * probs.mean(0)).sum()
            return logits, self.ce_loss + self.cfg["moice"]["aux_weight"] * self.aux_loss
        return logits, self.ce_loss


def decays(model, name, p):
    """Whether AdamW decays a tensor: matrices and embeddings, not biases (the T5 bias table
    among them) or LayerNorm gains."""
    return p.ndim >= 2 and name not in model.pe.no_decay


def make_adamw(model, lr, betas, eps, weight_decay, decay=decays):
    """torch.optim.AdamW arranged like train/adamw.c: one param group per tensor, decoupled
    weight decay only on the tensors `decay(model, name, p)` marks."""
    groups = [{"params": [p], "weight_decay": weight_decay if decay(model, n, p) else 0.0}
              for n, p in model.named_parameters()]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False)


def adamw_step(model, opt, max_norm):
    """The optimiser part of one C training step on the gradients in .grad: clip their global
    norm to max_norm (no clipping if max_norm <= 0), then update. Returns the norm before."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    opt.step()
    return norm.item()
