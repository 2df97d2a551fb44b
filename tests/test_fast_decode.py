"""The decoding engine's scope (generate/fast.py): faster layouts of the same products, entered
per call, freed on exit, never hiding a weight edit; the model itself stays plain nn.Linear."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import glassgpt.generate.fast as fast
from glassgpt.generate import kernels
from glassgpt.errors import ConfigError, GlassError
from glassgpt.generate import Session, generate, generate_batch
from glassgpt.generate.fast import DECODE_ROWS, PROMPT_ROWS, SPLIT_BYTES, active_scope, fast_decode
from glassgpt.model import GPT, GPTConfig


def model_and_ids(T=20, seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig.preset("tiny", vocab_size=101, context_length=48, d_model=64, n_head=4)).eval()
    with torch.no_grad():                    # trained-looking logits: a few clearly preferred tokens
        model.unembed.weight.mul_(8.0)
    x = torch.randint(0, 101, (1, T), generator=torch.Generator().manual_seed(seed + 1))
    return model, x


def cached_logits(model, x, prefill: int):
    """Prefill `prefill` positions, then decode the rest one position at a time: (T - prefill, V)."""
    cache = model.new_kv_cache(1)
    with torch.no_grad():
        model(x[:, :prefill], kv_cache=cache)
        return torch.cat([model(x[:, t:t + 1], kv_cache=cache).logits[0] for t in range(prefill, x.shape[1])])


def routed(model) -> bool:
    return any("forward" in m.__dict__ for m in model.modules())


def test_the_model_is_plain_pytorch_and_importing_glassgpt_registers_no_optimizer_hook():
    import glassgpt  # noqa: F401
    model, _ = model_and_ids()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is nn.Linear for m in linears)
    layer = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(1, 3)).sum().backward()
    optimizer.step()
    assert not hasattr(layer.weight, "_optimizer_steps")
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
    assert not _global_optimizer_post_hooks and not _global_optimizer_pre_hooks


@pytest.mark.parametrize("shape", [(16, 48), (48, 16), (24, 24)])          # wide, narrow, square
@pytest.mark.parametrize("rows", [1, 3, DECODE_ROWS, DECODE_ROWS + 1, PROMPT_ROWS])
def test_every_layout_equals_the_plain_product(shape, rows):
    torch.manual_seed(0)
    layer, x = nn.Linear(*shape), torch.randn(2, rows, shape[0])[:1]
    expected = F.linear(x, layer.weight, layer.bias)
    with torch.no_grad(), fast_decode(layer, kernel=False) as scope:      # PyTorch's products (the kernel: below)
        for _ in range(3):                                                  # plain, then copies made and read
            torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=1e-5)
        made = scope.bytes_held
    onednn = torch.backends.mkldnn.is_available()
    assert (made > 0) == (rows == 1 and shape[1] > shape[0] or rows > 1 and onednn)
    assert not routed(layer) and scope.bytes_held == 0                     # restored and freed on exit


@pytest.mark.parametrize("shape", [(64, 17000), (17000, 64)])             # > SPLIT_BYTES, odd sizes
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_one_row_split_across_threads_equals_the_plain_product(shape, threads):
    torch.manual_seed(0)
    layer, x = nn.Linear(*shape), torch.randn(1, 1, shape[0])
    assert layer.weight.nbytes >= SPLIT_BYTES
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with torch.no_grad(), fast_decode(layer, kernel=False):
            for _ in range(2):
                torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
    finally:
        torch.set_num_threads(before)


# -- the compiled one-row kernel (generate/kernels/rowdot.cpp) --------------------------------------
def built_kernel():
    op = kernels.rowdot()
    if op is None:
        pytest.skip("the decode kernel needs a C++ compiler and ninja: apt-get install g++ (ninja comes with glassgpt)")
    return op


@pytest.mark.parametrize("shape", [(16, 48), (48, 16), (37, 5), (384, 1536), (64, 17000)])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_the_kernel_equals_the_plain_product_for_every_weight_dtype(shape, threads, bias):
    op = built_kernel()
    torch.manual_seed(0)
    layer, x = nn.Linear(*shape, bias=bias), torch.randn(1, shape[0])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            weight = layer.weight.detach().to(dtype)
            expected = F.linear(x.double(), weight.double(), None if layer.bias is None else layer.bias.double())
            got = op(weight, x, None if layer.bias is None else layer.bias.detach())
            assert got.shape == (1, shape[1]) and got.dtype == torch.float32
            torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)   # float32 sums of the same
    finally:
        torch.set_num_threads(before)


def test_one_row_products_go_through_the_kernel_without_copies_and_see_every_edit():
    built_kernel()
    model, x = model_and_ids()
    exact = cached_logits(model, x, prefill=12)
    with fast_decode(model) as scope:
        assert scope.kernel is not None
        torch.testing.assert_close(cached_logits(model, x, prefill=12), exact, atol=1e-5, rtol=1e-5)
        assert scope.bytes_held == 0 or all(kind == "packed" for _, kind in scope.copies)   # one row: no copies
    with fast_decode(model, dtype="float16") as scope:
        half = cached_logits(model, x, prefill=12)
        assert any(kind == "half" for _, kind in scope.copies)
    torch.testing.assert_close(half, exact, atol=1e-2, rtol=0)


def test_without_the_kernel_pytorch_products_give_the_same_logits(monkeypatch):
    model, x = model_and_ids()
    with fast_decode(model) as scope:
        with_kernel = cached_logits(model, x, prefill=12)
    monkeypatch.setattr(kernels, "rowdot", lambda: None)                  # as where it cannot be built
    with fast_decode(model) as scope:
        assert scope.kernel is None
        torch.testing.assert_close(cached_logits(model, x, prefill=12), with_kernel, atol=1e-5, rtol=1e-5)


def test_a_kernel_that_cannot_be_built_says_so_in_one_line_and_decoding_goes_on(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    def no_compiler(**kwargs):
        raise RuntimeError("Error building extension: c++: not found\nlots of compiler output")
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    monkeypatch.setattr(kernels, "build_name", lambda: "glassgpt_rowdot_never_built")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    with pytest.warns(kernels.KernelNotice) as notices:
        assert kernels.rowdot.__wrapped__() is None
    lines = [str(n.message) for n in notices if "could not be built" in str(n.message)]
    assert len(lines) == 1 and "c++: not found" in lines[0] and "\n" not in lines[0]
    monkeypatch.setenv("GLASSGPT_DECODE_KERNEL", "0")
    assert kernels.rowdot.__wrapped__() is None                           # switched off: not even tried


@pytest.mark.parametrize("broken", ["onednn_linear", "onednn_pack"])
def test_a_refusing_onednn_op_falls_back_to_the_plain_product(monkeypatch, broken):
    def refuse(*args, **kwargs):
        raise RuntimeError("oneDNN refuses")
    monkeypatch.setattr(fast, broken, refuse)
    torch.manual_seed(0)
    layer, x = nn.Linear(24, 40), torch.randn(5, 24)
    with torch.no_grad(), fast_decode(layer) as scope:
        for _ in range(3):
            torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-6, rtol=1e-5)
        assert scope.onednn is False


def test_onednn_is_used_where_it_works():
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this PyTorch build has no oneDNN (a CPU build of PyTorch from pytorch.org has it)")
    layer, x = nn.Linear(24, 40), torch.randn(5, 24)
    with torch.no_grad(), fast_decode(layer) as scope:
        layer(x), layer(x)
        assert scope.onednn and any(kind == "packed" for _, kind in scope.copies)


@pytest.mark.parametrize("dtype, tolerance", [("float16", 1e-2), ("bfloat16", 8e-2)])
def test_half_decode_weights_are_close_to_fp32_and_change_nothing_else(dtype, tolerance):
    model, x = model_and_ids()
    exact = cached_logits(model, x, prefill=12)
    with torch.no_grad():
        full = model(x).logits
    with fast_decode(model, dtype=dtype) as scope:
        assert scope.dtype == getattr(torch, dtype)
        half = cached_logits(model, x, prefill=12)
        with torch.no_grad():
            torch.testing.assert_close(model(x).logits, full, atol=1e-5, rtol=1e-5)   # a prompt: fp32 products
    assert not torch.equal(half, exact)                                  # the copies were read
    torch.testing.assert_close(half, exact, atol=tolerance, rtol=0)
    assert torch.equal(half.argmax(-1), exact.argmax(-1))
    torch.testing.assert_close(cached_logits(model, x, prefill=12), exact, atol=1e-5, rtol=1e-5)


def test_generate_inside_a_held_half_scope_matches_fp32_greedy():
    model, x = model_and_ids()
    prompt = x[0, :8].tolist()
    exact = generate(model, prompt, max_new_tokens=24, temperature=0)[0].ids
    with fast_decode(model, dtype="float16") as scope:
        assert generate(model, prompt, max_new_tokens=24, temperature=0)[0].ids == exact
        assert active_scope(model) is scope and any(kind == "half" for _, kind in scope.copies)
    assert active_scope(model) is None and not routed(model)


@pytest.mark.parametrize("name", ["int8", "float64", torch.int8])
def test_unknown_decode_dtype_is_a_one_line_error(name):
    model, _ = model_and_ids()
    with pytest.raises(ConfigError, match="choose float32, float16 or bfloat16"):
        with fast_decode(model, dtype=name):
            pass


def test_gradients_inside_the_scope_are_refused():
    model, x = model_and_ids()
    with fast_decode(model), pytest.raises(GlassError, match="train outside the scope"):
        model(x[:, :-1], targets=x[:, 1:]).loss.backward()
    loss = model(x[:, :-1], targets=x[:, 1:]).loss                       # outside: training works
    loss.backward()
    assert model.blocks[0].attention.qkv.weight.grad is not None


def test_without_copies_nothing_is_held_and_the_logits_are_the_same():
    model, x = model_and_ids()
    with fast_decode(model, kernel=False) as scope:          # PyTorch's products read copies
        copied = cached_logits(model, x, prefill=12)
        assert scope.bytes_held > 0
    with fast_decode(model, copies=False) as scope:
        plain = cached_logits(model, x, prefill=12)
        assert scope.bytes_held == 0 and not routed(model)
    torch.testing.assert_close(plain, copied, atol=1e-5, rtol=1e-5)


def edit_in_place(model, how: str) -> None:
    w = model.blocks[1].feed_forward.down.weight
    if how == "data":
        w.data.mul_(-3.0)                                 # .data: the version counter does not move
    else:
        with torch.no_grad():
            w.mul_(-3.0)


@pytest.mark.parametrize("how", ["data", "no_grad"])
def test_an_in_place_weight_edit_between_two_calls_is_always_seen(how):
    model, x = model_and_ids()
    prompt = x[0, :8].tolist()
    before = generate(model, prompt, max_new_tokens=12, temperature=0, logprobs=1)[0]
    trace_before = model.trace(prompt).log_probs()
    edit_in_place(model, how)
    after = generate(model, prompt, max_new_tokens=12, temperature=0, logprobs=1)[0]
    with fast_decode(model, copies=False):
        plain = generate(model, prompt, max_new_tokens=12, temperature=0, logprobs=1)[0]
    assert after.ids == plain.ids
    torch.testing.assert_close(torch.tensor([r.logprob for r in after.logprobs]),
                               torch.tensor([r.logprob for r in plain.logprobs]), atol=1e-5, rtol=0)
    assert [r.logprob for r in after.logprobs] != [r.logprob for r in before.logprobs]
    assert not torch.equal(model.trace(prompt).log_probs(), trace_before)


def test_batches_sessions_and_drafts_enter_a_scope_per_call_and_leave_nothing_behind():
    model, x = model_and_ids()
    draft, _ = model_and_ids(seed=3)
    prompts = [x[0, :5].tolist(), x[0, :9].tolist()]
    generate_batch(model, prompts, max_new_tokens=6, temperature=0)
    generate(model, prompts[0], max_new_tokens=6, temperature=0, draft=draft)
    Session(model, temperature=0).append(prompts[1]) and None
    s = Session(model, temperature=0)
    s.append(prompts[1])
    s.generate(5)
    assert active_scope(model) is None and active_scope(draft) is None
    assert not routed(model) and not routed(draft)


# -- the engine's one-token step, op by op (FastDecode.step) --------------------------------------
VARIANTS = [dict(positional=p, norm=n, activation=a, bias=b, tie_embeddings=t) for p, n, a, b, t in [
    ("learned", "pre", "gelu", True, True), ("sinusoidal", "post", "relu", False, False),
    ("rope", "pre", "gelu_exact", False, True), ("none", "post", "gelu", True, False),
    ("rope", "post", "relu", True, False), ("learned", "pre", "gelu", False, False)]]


def variant_model(seed=0, **fields):
    torch.manual_seed(seed)
    config = GPTConfig.preset("tiny", vocab_size=89, context_length=40, d_model=32, n_head=4, n_layer=2, **fields)
    model = GPT(config).eval()
    with torch.no_grad():
        model.unembed.weight.mul_(8.0)
    return model


@pytest.mark.parametrize("fields", VARIANTS, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_the_op_by_op_step_equals_the_model_for_every_config(fields):
    model = variant_model(**fields)
    x = torch.randint(0, 89, (3, 14), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cache = model.new_kv_cache(3)
        model(x[:, :6], kv_cache=cache)
        expected = torch.stack([model(x[:, t:t + 1], kv_cache=cache).logits[:, 0] for t in range(6, 14)])
        with fast_decode(model) as scope:
            for _ in range(2):                                    # plain products, then the copies
                cache = model.new_kv_cache(3)
                model(x[:, :6], kv_cache=cache)
                got = torch.stack([scope.step(x[:, t:t + 1], cache) for t in range(6, 14)])   # (8, 3, V)
                assert cache.length == 14
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    prompt = x[0, :5].tolist()
    with fast_decode(model, op_by_op=False):
        plain = generate(model, prompt, max_new_tokens=30, temperature=0)[0].ids
    assert generate(model, prompt, max_new_tokens=30, temperature=0)[0].ids == plain


def test_the_step_leaves_probes_hooks_and_dropout_to_the_model():
    model, x = model_and_ids()
    ids = x[:, :1]
    with torch.inference_mode(), fast_decode(model) as scope:
        cache = model.new_kv_cache(1)
        assert scope.step(ids, cache) is not None and cache.length == 1
        with model.probing(read=["blocks.0.attn.pattern"]):
            assert scope.step(ids, cache) is None
        model.train()
        assert scope.step(ids, cache) is not None                 # training mode without dropout: same math
    dropping = GPT(model.config.replace(dropout=0.1)).train()
    with torch.inference_mode(), fast_decode(dropping) as scope:
        assert scope.step(ids, dropping.new_kv_cache(1)) is None
    handle = model.blocks[1].feed_forward.register_forward_hook(lambda module, args, out: out * 0)
    try:
        with torch.inference_mode(), fast_decode(model) as scope:
            assert scope.step(ids, model.new_kv_cache(1)) is None
    finally:
        handle.remove()
    with torch.inference_mode(), fast_decode(model, op_by_op=False) as scope:
        assert scope.step(ids, model.new_kv_cache(1)) is None


def test_probing_during_generate_sees_every_step_of_the_model():
    model, x = model_and_ids()
    seen = []
    with model.probing(edit={"blocks.0.resid_pre": lambda r: seen.append(r.shape) or r}):
        generate(model, x[0, :6].tolist(), max_new_tokens=5, temperature=0)
    assert [s[1] for s in seen] == [6, 1, 1, 1, 1]                 # the prompt, then every fed token


def test_same_seed_same_text_with_and_without_the_step():
    model = variant_model(positional="rope")
    settings = dict(max_new_tokens=25, temperature=0.9, top_p=0.9, seed=7)
    first = generate(model, [1, 2, 3], **settings)[0].ids
    assert generate(model, [1, 2, 3], **settings)[0].ids == first
    with fast_decode(model, op_by_op=False):
        assert generate(model, [1, 2, 3], **settings)[0].ids == first


def test_the_cli_prints_the_kernel_notice_on_one_line(capsys):
    from glassgpt.cli import notices_on_one_line
    others = []
    show = notices_on_one_line(lambda *args: others.append(args))
    show(kernels.KernelNotice("building the decode kernel"), kernels.KernelNotice, "kernels.py", 60)
    show(UserWarning("something else"), UserWarning, "x.py", 1)
    assert capsys.readouterr().err == "glassgpt: building the decode kernel\n"
    assert len(others) == 1                                               # other warnings: as Python shows them
