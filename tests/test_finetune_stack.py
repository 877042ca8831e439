"""Stacked fine-tuning of sibling cells: every member must equal its cell trained alone.

Tiny random encoders of every tested family on CPU (BERT, DistilBERT, RoBERTa, XLM-R, ELECTRA,
DeBERTa-v2, ModernBERT, ALBERT), dropout on (0.1 everywhere). The reference for each member is
:meth:`FinetuneBackend.fit` on its labeling with the same seed, the per-cell path (``[run] stack =
1``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

from noisegrid.backends import make_backend  # noqa: E402
from noisegrid.backends.finetune import (  # noqa: E402
    FinetuneBackend,
    evaluation,
    steps,
    surgery,
)
from noisegrid.backends.finetune import stack as st  # noqa: E402
from noisegrid.config import ExperimentSpec  # noqa: E402
from tiny_hf import TINY_TYPES, build_tiny, build_tiny_distilbert, synthetic_texts  # noqa: E402

SEED = 7
N_TRAIN = 60


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """Texts, clean labels and three nested noisy labelings of the first 60 (0%, 10%, 20%)."""
    texts, labels = synthetic_texts(100, seed=3)
    order = np.random.default_rng(0).permutation(N_TRAIN)
    labelings = []
    for n_flip in (0, 6, 12):
        y = labels[:N_TRAIN].copy()
        y[order[:n_flip]] = 1 - y[order[:n_flip]]
        labelings.append(y)
    return texts, labels, labelings


@pytest.fixture(scope="module")
def tiny_distilbert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_distilbert(tmp_path_factory.mktemp("tiny") / "distilbert")


def backend_for(
    model: Path, cache: Path, *, stack: int | str = 11, lr: float = 1e-3, **backend
) -> FinetuneBackend:
    spec = ExperimentSpec.from_dict(
        {
            "grid": {"sizes": [N_TRAIN], "noise_rates": [0.0]},
            "backend": {"name": "finetune", "model": str(model), **backend},
            "train": {"learning_rate": lr, "batch_size": 8, "epochs": 3},
            "run": {"stack": stack},
        }
    )
    backend = make_backend(spec, n_classes=2, cache_dir=cache)
    assert isinstance(backend, FinetuneBackend)
    return backend


def alone(backend: FinetuneBackend, data) -> list[tuple[np.ndarray, dict]]:
    """Each labeling's cell trained on its own: test probabilities and info."""
    texts, _, labelings = data
    out = []
    for y in labelings:
        fitted = backend.fit(texts[:N_TRAIN], y, seed=SEED)
        out.append((fitted.predictor.predict_proba(texts[64:]), fitted.info))
    return out


@pytest.fixture(scope="module")
def bert_alone(tiny_model: Path, tmp_path_factory, data) -> list[tuple[np.ndarray, dict]]:
    return alone(backend_for(tiny_model, tmp_path_factory.mktemp("cache")), data)


def assert_same_as_alone(stacked: list[np.ndarray], reference, labels: np.ndarray) -> None:
    assert len(stacked) == len(reference)
    for proba, (solo, _) in zip(stacked, reference, strict=True):
        assert proba.shape == solo.shape
        np.testing.assert_array_equal(proba.argmax(axis=1), solo.argmax(axis=1))
        np.testing.assert_allclose(proba, solo, atol=1e-5)
        accuracy = (proba.argmax(axis=1) == labels).mean()
        assert abs(accuracy - (solo.argmax(axis=1) == labels).mean()) <= 0.005


def test_stacked_bert_members_equal_their_cells_trained_alone(
    tiny_model: Path, tmp_path: Path, data, bert_alone
) -> None:
    texts, labels, labelings = data
    backend = backend_for(tiny_model, tmp_path)
    outputs = backend.fit_group(texts[:N_TRAIN], labelings, seed=SEED)
    probas = backend.predict_group(outputs, texts[64:])
    assert_same_as_alone(probas, bert_alone, labels[64:])
    # The labelings differ, so the members learned different models.
    assert not np.allclose(probas[0], probas[2])
    for output, (_, solo_info) in zip(outputs, bert_alone, strict=True):
        info = output.info
        assert info["stack_size"] == 3
        assert info["steps"] == solo_info["steps"] == 3 * 8
        assert info["train_tokens"] == solo_info["train_tokens"]
        assert info["padded_tokens"] == solo_info["padded_tokens"]
        for key in ("train_loss_first_epoch", "train_loss_last_epoch"):
            assert info[key] == pytest.approx(solo_info[key], abs=2e-5)
    # A member predicts alone exactly as in the stacked pass.
    np.testing.assert_allclose(outputs[1].predictor.predict_proba(texts[64:]), probas[1], atol=1e-6)


def test_stacked_distilbert_members_equal_their_cells_trained_alone(
    tiny_distilbert: Path, tmp_path: Path, data
) -> None:
    texts, labels, labelings = data
    backend = backend_for(tiny_distilbert, tmp_path)
    reference = alone(backend, (texts, labels, labelings[1:]))
    outputs = backend.fit_group(texts[:N_TRAIN], labelings[1:], seed=SEED)
    assert_same_as_alone(backend.predict_group(outputs, texts[64:]), reference, labels[64:])


@pytest.mark.parametrize(("cap", "sizes"), [(2, [2, 2, 1]), (1, [None, None, None])])
def test_chunks_keep_every_member_equal(
    tiny_model: Path, tmp_path: Path, data, bert_alone, cap: int, sizes: list[int | None]
) -> None:
    """A cap splits the group: 2 + 1 (a new stack for the last chunk; earlier chunks' weights
    wait on the host), or, at 1, one cell at a time on the per-cell path (no stack)."""
    texts, labels, labelings = data
    backend = backend_for(tiny_model, tmp_path, stack=cap)
    outputs = backend.fit_group(texts[:N_TRAIN], labelings, seed=SEED)
    assert [o.info.get("stack_size") for o in outputs] == sizes
    assert_same_as_alone(backend.predict_group(outputs, texts[64:]), bert_alone, labels[64:])


def test_the_resident_stack_is_reset_in_place_for_the_next_group(
    tiny_model: Path, tmp_path: Path, data, bert_alone
) -> None:
    texts, labels, labelings = data
    backend = backend_for(tiny_model, tmp_path)
    other = [np.random.default_rng(1).integers(0, 2, N_TRAIN) for _ in range(3)]
    backend.fit_group(texts[:N_TRAIN], other, seed=SEED + 1)
    resident = backend._resident
    # The next group: same stack object, weights and optimiser state reset in place.
    outputs = backend.fit_group(texts[:N_TRAIN], labelings, seed=SEED)
    assert backend._resident is resident
    assert_same_as_alone(backend.predict_group(outputs, texts[64:]), bert_alone, labels[64:])


@pytest.mark.parametrize("model_type", [t for t in TINY_TYPES if t not in ("bert", "distilbert")])
def test_every_tested_family_stacks_and_equals_its_cells_trained_alone(
    model_type: str, tmp_path: Path, data
) -> None:
    texts, _, labelings = data
    model = build_tiny(tmp_path / model_type, model_type)
    # 1e-4: rounding differences that AdamW amplifies (below) stay small against the tolerance.
    backend = backend_for(model, tmp_path / "cache", lr=1e-4)
    solo = [backend.fit(texts[:N_TRAIN], y, seed=SEED) for y in labelings[1:]]
    outputs = backend.fit_group(texts[:N_TRAIN], labelings[1:], seed=SEED)
    assert [o.info.get("stack_size") for o in outputs] == [2, 2]
    probas = backend.predict_group(outputs, texts[64:])
    # Equal up to rounding: the embedding tables' gradients accumulate in another order, and
    # ALBERT's shared layers sum several calls' gradients in another order (measured here: up to
    # 2.4e-5 on a key bias, whose gradient is pure rounding that AdamW scales up, and 9e-5 in
    # probabilities; DeBERTa 3e-6 and 8e-6; the others 1e-6 or less and identical predictions).
    atol = 5e-4 if model_type == "albert" else 5e-5
    for member, (fitted, proba) in enumerate(zip(solo, probas, strict=True)):
        # The trained weights are the cell's own up to rounding (which AdamW amplifies on weights
        # whose gradient is rounding noise, such as a key bias, which softmax ignores) ...
        stacked = outputs[member].predictor.weights.member_state(member)  # type: ignore[attr-defined]
        model = fitted.predictor.model  # type: ignore[attr-defined]
        for name, param in model.named_parameters():
            torch.testing.assert_close(stacked[name], param.detach(), rtol=0, atol=atol)
        # ... and so are the predictions.
        reference = fitted.predictor.predict_proba(texts[64:])
        np.testing.assert_array_equal(proba.argmax(axis=1), reference.argmax(axis=1))
        np.testing.assert_allclose(proba, reference, atol=atol)


def test_a_model_whose_code_defeats_stacking_fits_one_cell_at_a_time(
    tiny_model: Path,
    tmp_path: Path,
    data,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pooler that reads its weight directly (``x @ W.T``) instead of calling its layer: the
    self-check finds the members differ from the model alone, and the group trains per cell."""
    from transformers.models.bert import modeling_bert

    def pooler(self, hidden_states):  # type: ignore[no-untyped-def]
        first = hidden_states[:, 0]
        return torch.tanh(first @ self.dense.weight.mT[0] + self.dense.bias[..., 0, :])

    def solo_pooler(self, hidden_states):  # type: ignore[no-untyped-def]
        weight = self.dense.weight
        if weight.dim() == 3:
            return pooler(self, hidden_states)
        return torch.tanh(hidden_states[:, 0] @ weight.T + self.dense.bias)

    monkeypatch.setattr(modeling_bert.BertPooler, "forward", solo_pooler)
    texts, _, labelings = data
    backend = backend_for(tiny_model, tmp_path / "cache")
    with caplog.at_level("WARNING", logger="noisegrid"):
        outputs = backend.fit_group(texts[:N_TRAIN], labelings[:2], seed=SEED)
    message = [r.getMessage() for r in caplog.records if "does not stack" in r.getMessage()]
    assert len(message) == 1
    assert message[0].startswith("note: model type 'bert' does not stack (member 1 differs")
    assert message[0].endswith("training one cell at a time")
    assert all("stack_size" not in o.info for o in outputs)
    solo = backend.fit(texts[:N_TRAIN], labelings[1], seed=SEED).predictor.predict_proba(texts[64:])
    np.testing.assert_array_equal(backend.predict_group(outputs, texts[64:])[1], solo)


def test_the_self_check_names_a_parameter_holder_without_a_stacked_form(tiny_model: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    model.bert.pooler.scale = torch.nn.Parameter(torch.ones(32))  # a raw parameter holder
    reason = surgery.self_check(model, vocab=120, pad_id=0)
    assert reason == ("bert.pooler (BertPooler) holds parameters (scale) that have no stacked form")


def test_the_grid_gives_the_same_results_stacked_and_one_cell_at_a_time(
    tiny_model: Path, tmp_path: Path
) -> None:
    import pandas as pd

    from noisegrid.results import load_results
    from noisegrid.runner import run_experiment

    texts, labels = synthetic_texts(120, seed=4)
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"text": texts[:80], "label": labels[:80]}).to_parquet(folder / "train.parquet")
    pd.DataFrame({"text": texts[80:], "label": labels[80:]}).to_parquet(folder / "test.parquet")
    tables = {}
    for stack in (3, 1):
        spec = ExperimentSpec.from_dict(
            {
                "dataset": {"source": str(folder)},
                "grid": {"sizes": [24, 40], "noise_rates": [0.0, 0.125, 0.25]},
                "backend": {"name": "finetune", "model": str(tiny_model)},
                "train": {"epochs": 2, "learning_rate": 1e-3, "batch_size": 8},
                "eval": {"test_size": 40},
                "run": {
                    "store": str(tmp_path / f"runs-{stack}.sqlite"),
                    "cache_dir": str(tmp_path / "cache"),
                    "stack": stack,
                },
            }
        )
        summary = run_experiment(spec)
        assert (summary.n_done, summary.n_failed) == (6, 0)
        table = load_results(spec).sort_values(["train_size", "noise_level"])
        tables[stack] = table.reset_index(drop=True)
    stacked, single = tables[3], tables[1]
    np.testing.assert_allclose(stacked["eval_accuracy"], single["eval_accuracy"], atol=0.005)
    np.testing.assert_allclose(stacked["eval_log_loss"], single["eval_log_loss"], atol=1e-5)
    assert stacked["info"].str.contains('"group_size": 3').all()
    assert single["info"].str.contains('"group_size": 1').all()


# -- the parts -----------------------------------------------------------------------------------


def test_layout_round_trips_the_weights_and_keeps_each_table_contiguous(tiny_model: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    stacked = surgery.stack_model(model, 3)
    layout = st.Layout.of(model, stacked)
    weights = st.StackedWeights.zeros(layout, 3, torch.device("cpu"))
    state = dict(model.named_parameters())
    weights.load_state(state)
    for member in range(3):
        for name, tensor in weights.member_state(member).items():
            torch.testing.assert_close(tensor, state[name].detach(), rtol=0, atol=0)
    word = "bert.embeddings.word_embeddings.weight"
    assert layout.slots[word].group == f"embed:{word}"
    assert weights.tensors()[word].is_contiguous()  # one (K·V, D) lookup, no copy
    assert layout.slots["bert.encoder.layer.0.output.LayerNorm.weight"].group == "nodecay"
    assert layout.slots["classifier.weight"].group == "decay:linear"
    assert layout.slots["classifier.bias"].group == "nodecay:linear"
    assert layout.low == {"decay:linear", "nodecay:linear"}
    assert f"embed:{word}" in layout.decayed
    n_params = sum(p.numel() for p in model.parameters())
    assert sum(layout.sizes.values()) == n_params == st.arch_of(model.config, model).n_params()


def test_stack_size_follows_the_cap_and_the_memory(tiny_model: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model, num_labels=2)
    arch = st.arch_of(config)
    cpu = torch.device("cpu")
    kwargs = {"batch_size": 16, "width": 64, "low_precision": False, "fused_attention": False}
    per = st.member_bytes(arch, **kwargs)
    assert per < st.member_bytes(arch, **{**kwargs, "width": 128})
    assert per > st.member_bytes(arch, **{**kwargs, "fused_attention": True})
    big = 10**12
    # A CPU trains one at a time unless [run] stack says otherwise.
    assert st.choose_stack(arch, 11, device=cpu, cap=None, free_bytes=big, **kwargs) == 1
    assert st.choose_stack(arch, 11, device=cpu, cap=3, free_bytes=big, **kwargs) == 3
    # A GPU stacks what 85% of its free memory less 1 GiB holds (the device is not touched).
    gpu = torch.device("cuda")
    assert st.choose_stack(arch, 11, device=gpu, cap=None, free_bytes=big, **kwargs) == 11
    assert st.choose_stack(arch, 2, device=gpu, cap=None, free_bytes=big, **kwargs) == 2
    five = int((5.5 * per + 2**30) / 0.85)
    assert st.choose_stack(arch, 11, device=gpu, cap=None, free_bytes=five, **kwargs) == 5
    assert st.choose_stack(arch, 11, device=gpu, cap=None, free_bytes=2**30, **kwargs) == 1
    assert st.choose_stack(arch, 11, device=gpu, cap=4, free_bytes=big, **kwargs) == 4
    assert st.chunk_sizes(11, 4) == [4, 4, 3]
    assert st.chunk_sizes(5, 11) == [5]


def test_batched_kernels_equal_the_member_by_member_ones(tiny_model: Path) -> None:
    """The GPU's batched forward (one bmm over members) equals the CPU's member-by-member one."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2).eval()
    state = {n: p.detach() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (4, 16), generator=gen)
    mask = torch.ones(4, 16, dtype=torch.int64)
    mask[2, 10:] = 0
    logits = []
    for per_member in (False, True):
        s = surgery.stack_model(model, 3, per_member=per_member)
        tensors = {
            leaf.name: torch.stack([state[leaf.name] + 0.01 * m for m in range(3)])
            for leaf in s.leaves
        }
        surgery.bind(s, tensors)
        with torch.no_grad():
            logits.append(surgery.stacked_logits(s, ids, mask, training=False))
    torch.testing.assert_close(logits[0], logits[1], rtol=0, atol=1e-5)
    assert not torch.allclose(logits[0][0], logits[0][2])


def test_fused_adamw_on_cpu_reproduces_the_unfused_loop(
    tiny_model: Path, tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's fused AdamW (every device) stays within 1e-6 of the unfused update."""
    from noisegrid.backends.finetune import loop

    texts, _, labelings = data
    fused = backend_for(tiny_model, tmp_path).fit(texts[:N_TRAIN], labelings[1], seed=SEED)
    real = loop.make_adamw

    def unfused(groups, *, lr, device, capturable=False):  # type: ignore[no-untyped-def]
        return real(groups, lr=lr, device=torch.device("meta"), capturable=capturable)

    monkeypatch.setattr(loop, "make_adamw", unfused)
    plain = backend_for(tiny_model, tmp_path).fit(texts[:N_TRAIN], labelings[1], seed=SEED)
    a = dict(fused.predictor.model.named_parameters())  # type: ignore[attr-defined]
    b = dict(plain.predictor.model.named_parameters())  # type: ignore[attr-defined]
    diff = max(float((a[n] - b[n]).detach().abs().max()) for n in a)
    assert 0 < diff <= 1e-6


def test_cuda_graphs_option_is_ignored_on_cpu(tiny_model: Path, tmp_path: Path, data) -> None:
    texts, _, labelings = data
    backend = backend_for(tiny_model, tmp_path, cuda_graphs=True)
    outputs = backend.fit_group(texts[:N_TRAIN], labelings[:2], seed=SEED)
    assert backend._resident is not None and not backend._resident.cuda_graphs
    assert all("cuda_graphs" not in o.info for o in outputs)


def test_a_stack_that_runs_out_of_memory_retries_half_as_stacked(
    tiny_model: Path, tmp_path: Path, data, bert_alone, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels, labelings = data
    real = st.StackedTrainer.fit

    def fit(self, ids, chunk, *, seed):  # type: ignore[no-untyped-def]
        if self.k > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, ids, chunk, seed=seed)

    monkeypatch.setattr(st.StackedTrainer, "fit", fit)
    backend = backend_for(tiny_model, tmp_path)
    outputs = backend.fit_group(texts[:N_TRAIN], labelings, seed=SEED)
    # 3 → 1 (half of 3, rounded down): one cell at a time, on the per-cell path
    assert [o.info.get("stack_size") for o in outputs] == [None, None, None]
    assert backend.stack_size(11) == 1
    assert_same_as_alone(backend.predict_group(outputs, texts[64:]), bert_alone, labels[64:])


@pytest.mark.parametrize("dtype", [None, "bf16"])
def test_a_compiled_step_equals_the_eager_step(
    tiny_model: Path, data, monkeypatch: pytest.MonkeyPatch, dtype: str | None
) -> None:
    """Forward, loss and backward traced and compiled as one graph per width (the ``aot_eager``
    backend here: the graph capture and its autograd, without a C++ compiler's minutes on a
    CPU) train the same members as the eager step. Dropout off: a traced graph draws its masks
    in another way (the same distribution); benchmarks/step_ops.py compares inductor's kernels
    with dropout on, drawing as eager does."""
    from transformers import AutoModelForSequenceClassification

    from noisegrid.config import TrainSpec

    monkeypatch.setattr(steps, "COMPILE_BACKEND", "aot_eager")
    from transformers import AutoTokenizer

    texts, _, labelings = data
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = [np.asarray(tokenizer(t)["input_ids"]) for t in texts[:N_TRAIN]]
    train = TrainSpec(steps=10, learning_rate=1e-3, batch_size=8)
    kwargs = {
        "device": torch.device("cpu"),
        "dtype": torch.bfloat16 if dtype else None,  # bf16: with its working copies
        "train": train,
        "max_grad_norm": 1.0,
        "pad_id": 0,
        "pad_multiple": 16,  # few widths: few graphs
        "max_width": 64,
        "group_by_length": True,
        "per_member": False,  # the GPU's batched forward
    }
    from torch._dynamo.utils import counters

    probas = {}
    widths = {len(x) // 16 for x in ids}
    assert len(widths) >= 3  # batches of several widths
    for compiled in (False, True):
        counters.clear()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = AutoModelForSequenceClassification.from_pretrained(
                tiny_model, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
            )
            trainer = st.StackedTrainer(model, 3, compile=compiled, **kwargs)
            trainer.fit(ids, np.stack(labelings), seed=SEED)
            # Evaluation in batches of 24: several widths and a short last batch.
            probas[compiled] = trainer.predict(trainer.snapshot(), ids, batch_size=24)
        # One graph for the forward and loss (its backward with it), one for the clipping, one
        # for evaluation, whatever the width and batch length.
        assert counters["stats"]["unique_graphs"] == (3 if compiled else 0)
        assert trainer.compiled is compiled
    np.testing.assert_allclose(probas[True], probas[False], rtol=0, atol=1e-5)
    assert not np.allclose(probas[False][0], probas[False][2])


def test_a_step_that_does_not_compile_trains_eagerly_with_a_warning(
    tiny_model: Path, data, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A model or torch build the compiler fails on trains and evaluates eagerly (one warning
    each), with the eager step's results; an error of the model itself still stops the run."""
    from torch._dynamo.exc import Unsupported
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from noisegrid.config import TrainSpec

    def failing_compile(fn):
        def compiled(*args, **kwargs):
            raise Unsupported("a construct the compiler does not support")

        return compiled

    texts, _, labelings = data
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = [np.asarray(tokenizer(t)["input_ids"]) for t in texts[:N_TRAIN]]
    kwargs = {
        "device": torch.device("cpu"),
        "dtype": None,
        "train": TrainSpec(steps=4, learning_rate=1e-3, batch_size=8),
        "max_grad_norm": 1.0,
        "pad_id": 0,
        "pad_multiple": 16,
        "max_width": 64,
        "group_by_length": True,
        "per_member": False,
    }
    probas = {}
    for compiled in (False, True):
        monkeypatch.setattr(st, "compile_step", failing_compile)
        monkeypatch.setattr(evaluation, "compile_step", failing_compile)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
            trainer = st.StackedTrainer(model, 3, compile=compiled, **kwargs)
            trainer.fit(ids, np.stack(labelings), seed=SEED)
        probas[compiled] = trainer.predict(trainer.snapshot(), ids, batch_size=24)
        assert not trainer.compiled
    np.testing.assert_allclose(probas[True], probas[False], rtol=0, atol=1e-6)
    # The evaluation of a stack that trained compiled falls back the same way.
    weights = trainer.snapshot()
    evaluated = evaluation.predict_stacked(
        trainer.eval_surgery,
        weights,
        ids,
        device=torch.device("cpu"),
        dtype=None,
        pad_id=0,
        batch_size=24,
        n_classes=2,
        pad_multiple=16,
        max_width=64,
        compiled=True,
    )
    np.testing.assert_allclose(evaluated, probas[True], rtol=0, atol=0)
    assert trainer.eval_surgery.eager_only
    warnings = [r.getMessage() for r in caplog.records if "does not compile" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "stacked step does not compile (Unsupported: a construct" in warnings[0]
    assert "evaluation does not compile (Unsupported)" in warnings[1]

    def broken_compile(fn):
        def compiled(*args, **kwargs):
            raise ValueError("the model's own error")

        return compiled

    monkeypatch.setattr(st, "compile_step", broken_compile)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    trainer = st.StackedTrainer(model, 3, compile=True, **kwargs)
    with pytest.raises(ValueError, match="the model's own error"):
        trainer.fit(ids, np.stack(labelings), seed=SEED)


@pytest.mark.parametrize("bias", [True, False])
def test_the_stacked_matmul_has_autograds_gradients_in_the_weights_layout(bias: bool) -> None:
    """StackedLinear's matrix product computes each weight's gradient as gyᵀ x, (K, out, in) like
    the weight: the same values autograd derives for bmm(x, Wᵀ), in fp64 exactly up to rounding
    and under bf16 autocast within bf16 rounding."""
    matmul = surgery._classes().StackedMatmul.apply
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 10, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(3, 4, generator=gen, dtype=torch.float64) if bias else None
    gy = torch.randn(3, 10, 4, generator=gen, dtype=torch.float64)

    def grads(fn, dtype, autocast):
        inputs = (x, w, b) if bias else (x, w)
        leaves = [t.detach().to(dtype).clone().requires_grad_() for t in inputs]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = fn(*leaves) if bias else fn(*leaves, None)
        y.backward(gy.to(y.dtype))
        assert all(t.grad.dtype == dtype for t in leaves)  # each gradient in its leaf's dtype
        return [y.detach().double()] + [t.grad.double() for t in leaves]

    def reference(xx, ww, bb):
        if bb is None:
            return torch.bmm(xx, ww.transpose(1, 2))
        return torch.baddbmm(bb.unsqueeze(1), xx, ww.transpose(1, 2))

    for dtype, autocast, tol in ((torch.float64, False, 1e-12), (torch.float32, True, 0.05)):
        ours, theirs = grads(matmul, dtype, autocast), grads(reference, dtype, autocast)
        for a, e in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, e, rtol=tol, atol=tol)


def test_bf16_working_copies_train_bit_for_bit_as_autocast(tiny_model: Path, data) -> None:
    """The linear layers' bf16 working copies (refreshed after each AdamW step, gradients cast
    to the fp32 masters once per buffer) give exactly autocast's arithmetic: the same masters
    after training."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from noisegrid.config import TrainSpec

    texts, _, labelings = data
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = [np.asarray(tokenizer(t)["input_ids"]) for t in texts[:N_TRAIN]]
    kwargs = {
        "device": torch.device("cpu"),
        "dtype": torch.bfloat16,
        "train": TrainSpec(steps=6, learning_rate=1e-3, batch_size=8),
        "max_grad_norm": 1.0,
        "pad_id": 0,
        "pad_multiple": 16,
        "max_width": 64,
        "group_by_length": True,
        "per_member": False,  # the GPU's batched forward
    }
    masters = {}
    for working in (False, True):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
            trainer = st.StackedTrainer(model, 3, working_copies=working, **kwargs)
            start = trainer.snapshot()
            trainer.fit(ids, np.stack(labelings), seed=SEED)
        masters[working] = trainer.snapshot()
        assert set(trainer.working) == (trainer.layout.low if working else set())
    for group, tensor in masters[True].flat.items():
        torch.testing.assert_close(tensor, masters[False].flat[group], rtol=0, atol=0)
        assert tensor.dtype == torch.float32
    for group, copy in trainer.working.items():
        assert copy.dtype == torch.bfloat16
        torch.testing.assert_close(copy, trainer.weights.flat[group].bfloat16(), rtol=0, atol=0)
    assert not torch.equal(start.flat["decay:linear"], masters[True].flat["decay:linear"])


def test_compile_auto_is_off_on_a_cpu_and_true_compiles(tiny_model: Path, tmp_path: Path) -> None:
    """``[backend] compile = "auto"`` compiles on a GPU under bf16 only: a CPU (minutes of C++
    compiling) and the exact recipe (fp32) keep the eager step; ``true`` compiles anywhere."""
    assert backend_for(tiny_model, tmp_path / "a").compiles is False
    assert backend_for(tiny_model, tmp_path / "b", compile=True).compiles is True
    assert backend_for(tiny_model, tmp_path / "c", compile=False).compiles is False
