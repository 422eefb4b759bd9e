"""Tiny deterministic llama models as GGUF files, written with the `gguf` package.

A 2-layer llama whose attention and feed-forward outputs are zero, so each position's hidden
state is its own token's embedding. Embeddings are one-hot (each token of the script gets a
dimension of its own) and the output matrix maps each token to a chosen successor, so greedy
decoding (and sampling at any usual temperature: the successor's logit leads by ~30) writes
`script` after the prompt, then the end-of-sequence token.

The vocabulary is SentencePiece-style: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>,
the chat markers of the template below, then one token per piece of the script. Non-ASCII
characters are written as byte tokens (one per UTF-8 byte) unless listed in `whole`, so a
character can be split across tokens; each piece of the script must occur once, since a token
has one successor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
MARKERS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
UNK, BOS, EOS = 0, 1, 2
_BYTE0 = 3
_STRENGTH = 4.0  # output weight of the successor: its logit is about 4 * sqrt(n_embd)

Ftype = Literal["f16", "q8_0", "f32"]


@dataclass(frozen=True)
class TinyModel:
    path: Path
    script: str
    pieces: tuple[str, ...]  # the vocabulary text of each reply token, in order
    context_length: int

    @property
    def reply_bytes(self) -> list[bytes]:
        """The bytes each reply token stands for."""
        return [piece_bytes(p) for p in self.pieces]


# The text the shared tiny models write: 日 and 🎉 are split across byte tokens, 本 is one token.
SPLIT_SCRIPT = "Hello, world! é日本🎉"
SPLIT_WHOLE = "本"


def piece_bytes(piece: str) -> bytes:
    match = re.fullmatch(r"<0x([0-9A-F]{2})>", piece)
    return bytes([int(match.group(1), 16)]) if match else piece.replace("\u2581", " ").encode("utf-8")


def script_pieces(script: str, whole: str = "") -> list[str]:
    """The reply's tokens as vocabulary texts: ASCII words and marks, byte tokens for other characters."""
    pieces: list[str] = []
    for run in re.findall(r"[\x00-\x7f]+|[^\x00-\x7f]", script):
        if run.isascii():
            for piece in re.findall(r" ?[A-Za-z0-9']+|\s|[^\sA-Za-z0-9']", run):
                pieces.append(piece.replace(" ", "\u2581") if piece != "\n" else "<0x0A>")
        elif run in whole:
            pieces.append(run)
        else:
            pieces.extend(f"<0x{b:02X}>" for b in run.encode("utf-8"))
    return pieces


def build_tiny_llama(
    path: Path,
    *,
    ftype: Ftype,
    script: str,
    whole: str = "",
    chat_template: str | None = CHAT_TEMPLATE,
    after: str = "<|assistant|>",
    loop: bool = False,
    context_length: int = 512,
    n_layer: int = 2,
    name: str = "tiny-llama",
    architecture: str = "llama",
    pieces: list[str] | None = None,
    noise: float = 0.0,
    seed: int = 0,
) -> TinyModel:
    """Write the model to `path`: after the token `after`, greedy decoding writes `script`.

    `after` is the vocabulary text of the prompt's last token: `<|assistant|>` with the chat
    template, `<0x5D>` (the "]" of `[/INST]`) for the Llama-2 format when `chat_template` is None.
    `loop`: the script starts again instead of ending (for replies stopped by the cap only).
    `architecture`: another name than llama makes a file llama.cpp refuses (unknown architecture).
    `pieces`: the reply's tokens as vocabulary texts, instead of cutting `script` into words: a
    token may then hold several words and newlines, so a text can repeat words across tokens.
    `noise`: the scale of random normal values (from `seed`) added to the embeddings and the output
    matrix: at 1 or more the script is lost and the model writes noise over the whole vocabulary.
    """
    import gguf

    pieces = pieces if pieces is not None else script_pieces(script, whole)
    if len(set(pieces)) != len(pieces):
        repeated = sorted({p for p in pieces if pieces.count(p) > 1})
        raise ValueError(f"the script repeats the tokens {repeated}; each token can have one successor")
    vocab = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *MARKERS]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.CONTROL] * len(MARKERS)
    for piece in pieces:
        if piece not in vocab:
            vocab.append(piece)
            types.append(gguf.TokenType.NORMAL)
    ids = {text: i for i, text in enumerate(vocab)}
    if after not in ids:
        raise ValueError(f"{after!r} is not in the vocabulary")
    chain = [ids[after], *(ids[p] for p in pieces)]
    if ids[after] in chain[1:]:
        raise ValueError(f"the script uses {after!r}, the token it follows")
    n_vocab = len(vocab)
    n_embd = max(64, -(-len(chain) // 32) * 32)
    n_head, n_ff = 4, 64

    embed = np.zeros((n_vocab, n_embd), dtype=np.float32)
    output = np.zeros((n_vocab, n_embd), dtype=np.float32)
    for dim, token in enumerate(chain):
        embed[token, dim] = 1.0
        successor = chain[dim + 1] if dim + 1 < len(chain) else (chain[1] if loop else EOS)
        output[successor, dim] = _STRENGTH
    if noise:
        rng = np.random.default_rng(seed)
        embed += rng.normal(scale=noise, size=embed.shape).astype(np.float32)
        output += rng.normal(scale=noise, size=output.shape).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type({"f32": 0, "f16": 1, "q8_0": 7}[ftype])
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab)
    writer.add_token_scores([0.0] * n_vocab)
    writer.add_token_types([int(t) for t in types])
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_unk_token_id(UNK)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def matrix(name: str, values: np.ndarray) -> None:
        if ftype == "f16":
            writer.add_tensor(name, values.astype(np.float16))
        elif ftype == "q8_0":
            qtype = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, values)

    def zeros(rows: int, cols: int) -> np.ndarray:
        return np.zeros((rows, cols), dtype=np.float32)

    ones = np.ones(n_embd, dtype=np.float32)
    matrix("token_embd.weight", embed)
    writer.add_tensor("output_norm.weight", ones)
    matrix("output.weight", output)
    for layer in range(n_layer):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", ones)
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            matrix(f"{block}.{part}.weight", zeros(n_embd, n_embd))
        writer.add_tensor(f"{block}.ffn_norm.weight", ones)
        matrix(f"{block}.ffn_gate.weight", zeros(n_ff, n_embd))
        matrix(f"{block}.ffn_up.weight", zeros(n_ff, n_embd))
        matrix(f"{block}.ffn_down.weight", zeros(n_embd, n_ff))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return TinyModel(path=path, script=script, pieces=tuple(pieces), context_length=context_length)
