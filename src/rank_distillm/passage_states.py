"""Precomputed passage states: the split student's lower layers run once per passage (PreTTR).

A student with ``separate_layers = n`` (:class:`~rank_distillm.student.SplitLayersTransformer`)
encodes ``[CLS] query [SEP]`` and ``[CLS] passage [SEP]`` apart in its first ``n`` layers: the
passage's layer-``n`` token states depend on the passage's tokens alone, never on the query.
PreTTR (MacAvaney et al., SIGIR 2020) computes them once, stores them, and at query time runs
only the upper, joint layers on ``[query states; passage states]``. When the lower layers are
frozen the same holds during training: every epoch, fold and experiment re-uses the stored
states, and a training step costs the upper layers alone (forward and backward).

Two pieces, one for each job:

:class:`StateStore`
    Layer-``n`` token states of token segments, keyed by the segment's token ids (so a passage
    that the pair's truncation cuts short is another segment, and a lookup can never return
    the states of other tokens). Stored as ``float32``, ``float16`` or ``int8`` (one scale per
    token: ``x ~ scale * q``, ``scale = max|x| / 127``), at :attr:`StateStore.bytes_per_token`
    bytes a token; saved to and memory-mapped from a folder, with the fingerprint of the
    lower layers that made it (a store made by other weights is refused).

:class:`PassageStates`
    A sentence-transformers module that wraps a student's ``SplitLayersTransformer`` and
    shares its weights. It tokenizes exactly as the student does (``preprocess`` is the
    student's), looks the query and passage segments of each pair up in the store (computing
    the missing ones with the frozen lower layers), and runs the upper layers and the head.
    :func:`precomputed_student` puts it in a ``CrossEncoder`` with the student's head: that
    model scores like the student (``predict``, :func:`rank_distillm.evaluation.rerank`) and
    trains with ``CrossEncoderTrainer`` and the library's listwise losses like the student
    with frozen lower layers. Its lower layers never see dropout (they run once, in eval
    mode); the upper layers train as usual. Training updates the student's own upper-layer
    weights: save the student, not the wrapper.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from sentence_transformers.base.modules import Module

from .student import SplitLayersTransformer, _encoder_layers

DTYPES = ("float32", "float16", "int8")


def segment_key(ids: Sequence[int] | torch.Tensor) -> str:
    """The store's key of a token segment: a hash of its token ids."""
    array = np.asarray(ids.tolist() if isinstance(ids, torch.Tensor) else ids, dtype=np.int32)
    return hashlib.blake2b(array.tobytes(), digest_size=12).hexdigest()


def lower_fingerprint(backbone: SplitLayersTransformer) -> str:
    """A hash of the weights that make the stored states: the embeddings and the first ``n`` layers."""
    h = hashlib.sha1(f"separate_layers={backbone.separate_layers}".encode())
    modules = [backbone.model.embeddings, *_encoder_layers(backbone.model)[: backbone.separate_layers]]
    for module in modules:
        for name, p in module.state_dict().items():
            h.update(name.encode())
            h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class StateStore:
    """Token states of segments, keyed by :func:`segment_key`, in ``float32``, ``float16`` or ``int8``.

    ``put(key, states)`` takes a ``[tokens, hidden]`` float tensor; ``get(key)`` gives it back as
    ``float32`` (exact for ``float32``; ``float16`` keeps about 3 significant digits; ``int8``
    keeps each token's vector to ``max|x| / 254``). :meth:`save` writes a folder atomically;
    :meth:`load` memory-maps it.
    """

    def __init__(self, dtype: str = "float32", hidden: int | None = None, fingerprint: str | None = None):
        if dtype not in DTYPES:
            raise ValueError(f"passage states: unknown dtype {dtype!r} (use one of {', '.join(DTYPES)})")
        self.dtype, self.hidden, self.fingerprint = dtype, hidden, fingerprint
        self._states: dict[str, np.ndarray] = {}
        self._scales: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: str) -> bool:
        return key in self._states

    @property
    def bytes_per_token(self) -> int:
        """Bytes a stored token takes: ``4 h``, ``2 h`` or ``h + 4`` (int8 plus its float32 scale)."""
        if self.hidden is None:
            raise ValueError("passage states: the store holds no states yet (hidden size unknown)")
        return {"float32": 4 * self.hidden, "float16": 2 * self.hidden, "int8": self.hidden + 4}[self.dtype]

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self._states.values())

    @property
    def nbytes(self) -> int:
        """Bytes of the stored states (keys and index not counted)."""
        return self.tokens * self.bytes_per_token if self._states else 0

    def put(self, key: str, states: torch.Tensor) -> None:
        x = states.detach().to("cpu", torch.float32).numpy()
        if x.ndim != 2:
            raise ValueError(f"passage states: expected [tokens, hidden] states, got shape {x.shape}")
        if self.hidden is None:
            self.hidden = x.shape[1]
        elif x.shape[1] != self.hidden:
            raise ValueError(f"passage states: hidden size {x.shape[1]} does not match the store's {self.hidden}")
        if self.dtype == "int8":
            scale = np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-12) / 127.0
            self._states[key] = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
            self._scales[key] = scale.astype(np.float32)
        else:
            self._states[key] = x.astype(self.dtype)

    def get(self, key: str) -> torch.Tensor:
        x = self._states[key]
        if self.dtype == "int8":
            return torch.from_numpy(x.astype(np.float32) * self._scales[key])
        return torch.from_numpy(np.array(x, dtype=np.float32))

    # ----------------------------------------------------------------------- files

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``states.npy`` (all tokens, one row each), ``scales.npy`` (int8), ``index.json``; atomically."""
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        keys = list(self._states)
        lengths = [len(self._states[k]) for k in keys]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        if keys:
            np.save(tmp / "states.npy", np.concatenate([self._states[k] for k in keys]))
            if self.dtype == "int8":
                np.save(tmp / "scales.npy", np.concatenate([self._scales[k] for k in keys]))
        index = {k: [offsets[i], lengths[i]] for i, k in enumerate(keys)}
        meta = {"dtype": self.dtype, "hidden": self.hidden, "fingerprint": self.fingerprint, "segments": len(keys),
                "tokens": int(offsets[-1]), "bytes_per_token": self.bytes_per_token if keys else None}
        (tmp / "index.json").write_text(json.dumps({"meta": meta, "index": index}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, fingerprint: str | None = None) -> "StateStore":
        """A saved store, memory-mapped; ``fingerprint``, when given, must match the one it was made with."""
        folder = Path(folder)
        path = folder / "index.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no passage-state store here (StateStore.save writes it)")
        try:
            saved = json.loads(path.read_text())
            meta, index = saved["meta"], saved["index"]
        except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{path}: not a passage-state index ({e})") from e
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise ValueError(
                f"{path}: these states were made by other lower-layer weights (fingerprint {meta.get('fingerprint')}, "
                f"the model's is {fingerprint}); compute them again"
            )
        store = cls(meta["dtype"], meta["hidden"], meta.get("fingerprint"))
        if index:
            states = np.load(folder / "states.npy", mmap_mode="r")
            if len(states) != meta["tokens"]:
                raise ValueError(f"{folder / 'states.npy'}: {len(states)} token rows, index.json says {meta['tokens']}")
            scales = np.load(folder / "scales.npy", mmap_mode="r") if meta["dtype"] == "int8" else None
            for key, (start, length) in index.items():
                store._states[key] = states[start : start + length]
                if scales is not None:
                    store._scales[key] = scales[start : start + length]
        return store


class PassageStates(Module):
    """The student's upper layers on stored lower-layer states (see the module docstring).

    ``backbone`` is the student's ``SplitLayersTransformer`` (``cross_encoder[0]``); its weights
    are shared, not copied. ``store`` defaults to an empty ``float32`` store; states missing from it
    are computed on demand (``batch_size`` segments at a time) and added.
    """

    def __init__(self, backbone: SplitLayersTransformer, store: StateStore | None = None, batch_size: int = 64):
        super().__init__()
        if not isinstance(backbone, SplitLayersTransformer) or not backbone.separate_layers:
            raise ValueError(
                "passage states need a student whose first layers encode query and passage apart "
                "(training.separate_layers >= 1, head segment-cosine)"
            )
        tokenizer = backbone.tokenizer
        if tokenizer.padding_side != "right":
            raise ValueError(f"passage states: the tokenizer pads on the {tokenizer.padding_side}, expected right")
        self.backbone = backbone
        self.n = backbone.separate_layers
        self.layers = _encoder_layers(backbone.model)
        self.fingerprint = lower_fingerprint(backbone)
        self.store = store if store is not None else StateStore("float32", backbone.model.config.hidden_size, self.fingerprint)
        if self.store.fingerprint not in (None, self.fingerprint):
            raise ValueError(
                f"passage states: the store was made by other lower-layer weights ({self.store.fingerprint}, "
                f"the student's are {self.fingerprint})"
            )
        self.store.fingerprint = self.fingerprint
        self.batch_size = batch_size
        self.freeze_lower()

    # sentence-transformers asks the first module for these
    def preprocess(self, inputs, *args, **kwargs):
        return self.backbone.preprocess(inputs, *args, **kwargs)

    @property
    def tokenizer(self):
        return self.backbone.tokenizer

    @property
    def processor(self):
        return self.backbone.processor

    @property
    def max_seq_length(self):
        return self.backbone.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value):
        self.backbone.max_seq_length = value

    @property
    def modalities(self):
        return self.backbone.modalities

    def freeze_lower(self) -> None:
        """Freeze the embeddings and the first ``n`` layers (the stored states come from them)."""
        for module in (self.backbone.model.embeddings, *self.layers[: self.n]):
            for p in module.parameters():
                p.requires_grad_(False)

    def save(self, output_path: str, *args, **kwargs) -> None:
        raise NotImplementedError("save the student (its weights are shared with these passage states), not the wrapper")

    # ----------------------------------------------------------------------- the lower layers

    @torch.no_grad()
    def _lower(self, segments: list[torch.Tensor]) -> list[torch.Tensor]:
        """Layer-``n`` states of each segment encoded alone (positions from 0, token type 0), as the student does."""
        from torch.nn.utils.rnn import pad_sequence
        from transformers.masking_utils import create_bidirectional_mask

        model = self.backbone.model
        was_training = model.training
        model.eval()
        try:
            ids = pad_sequence(segments, batch_first=True, padding_value=self.tokenizer.pad_token_id or 0)
            lengths = torch.tensor([len(s) for s in segments])
            mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
            device = next(model.parameters()).device
            ids, mask = ids.to(device), mask.to(device)
            hidden = model.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
            attention = create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=mask)
            for layer in self.layers[: self.n]:
                hidden = layer(hidden, attention)
        finally:
            model.train(was_training)
        return [hidden[i, : int(n)] for i, n in enumerate(lengths)]

    def _segments(self, features: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        ids, mask = features["input_ids"].cpu(), features["attention_mask"].cpu().bool()
        passage = features["token_type_ids"].cpu().bool() & mask
        return [ids[i][mask[i] & ~passage[i]] for i in range(len(ids))], [ids[i][passage[i]] for i in range(len(ids))]

    def add(self, segments: Iterable[torch.Tensor], progress: bool = False) -> int:
        """Compute and store every segment the store lacks (longest first, ``batch_size`` at a time); returns how many."""
        from tqdm.auto import tqdm

        todo = {}
        for s in segments:
            key = segment_key(s)
            if key not in self.store and key not in todo:
                todo[key] = s
        keys = sorted(todo, key=lambda k: -len(todo[k]))
        for start in tqdm(range(0, len(keys), self.batch_size), desc=f"passage states (layers 1-{self.n})",
                          unit="batch", disable=not progress or not keys):
            chunk = keys[start : start + self.batch_size]
            for key, states in zip(chunk, self._lower([todo[k] for k in chunk])):
                self.store.put(key, states)
        return len(keys)

    def precompute(self, pairs: Sequence[tuple[str, str]], progress: bool = True, chunk: int = 2048) -> dict:
        """Store the query and passage segments of ``pairs`` as the student tokenizes them; returns figures.

        ``{"pairs", "segments_added", "segments", "tokens", "bytes", "bytes_per_token", "seconds"}``.
        """
        start = time.perf_counter()
        added = 0
        for i in range(0, len(pairs), chunk):
            queries, passages = self._segments(self.preprocess(list(pairs[i : i + chunk])))
            added += self.add([*queries, *passages], progress=progress)
        return {
            "pairs": len(pairs), "segments_added": added, "segments": len(self.store), "tokens": self.store.tokens,
            "bytes": self.store.nbytes, "bytes_per_token": self.store.bytes_per_token,
            "seconds": round(time.perf_counter() - start, 2),
        }

    # ----------------------------------------------------------------------- the upper layers

    def upper_attention_mask(self, hidden: torch.Tensor, features: dict):
        """The upper layers' attention mask: every unpadded token of the pair (as the student's joint layers)."""
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.backbone.model.config, inputs_embeds=hidden,
                                         attention_mask=features["attention_mask"])

    def forward(self, features: dict, **kwargs) -> dict:
        """``token_embeddings`` of the pairs: stored layer-``n`` states through the upper layers."""
        queries, passages = self._segments(features)
        self.add([*queries, *passages])
        mask = features["attention_mask"]
        model = self.backbone.model
        device = mask.device
        hidden = torch.zeros(*mask.shape, model.config.hidden_size, device=device)
        for i, (q, p) in enumerate(zip(queries, passages)):
            hidden[i, : len(q)] = self.store.get(segment_key(q)).to(device)
            hidden[i, len(q) : len(q) + len(p)] = self.store.get(segment_key(p)).to(device)
        upper = self.layers[self.n :]
        if len(upper):
            hidden = hidden.to(next(upper.parameters()).dtype)
            attention = self.upper_attention_mask(hidden, features)
            for layer in upper:
                hidden = layer(hidden, attention)
        features["token_embeddings"] = hidden
        return features


def precomputed_student(student, store: StateStore | None = None, batch_size: int = 64):
    """A ``CrossEncoder`` that scores and trains like ``student`` on stored lower-layer states.

    ``student`` is a split student (``build_student(..., separate_layers=n)``, or a saved one);
    its embeddings and first ``n`` layers are frozen. The returned model shares the student's
    weights and head: train it (``CrossEncoderTrainer``, any listwise loss) and save ``student``.
    ``model[0]`` is the :class:`PassageStates` module (``model[0].precompute(pairs)``,
    ``model[0].store``).
    """
    from sentence_transformers.cross_encoder import CrossEncoder

    states = PassageStates(student[0], store, batch_size=batch_size)
    modules = [states, *[student[i] for i in range(1, len(student))]]
    return CrossEncoder(modules=modules, activation_fn=student.activation_fn, device=str(student.device))
