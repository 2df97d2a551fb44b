"""Half-precision decode weights: decoding reads float16/bfloat16 copies, everything else stays fp32."""
from __future__ import annotations

import pytest
import torch

from glassgpt.errors import ConfigError
from glassgpt.generate import generate
from glassgpt.model import GPT, GPTConfig
from glassgpt.model.linear import DECODE_ROWS


def model_and_ids(T=20, seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig.preset("tiny", vocab_size=101, context_length=48, d_model=64, n_head=4),
                verbose=False).eval()
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


@pytest.mark.parametrize("dtype, tolerance", [("float16", 1e-2), ("bfloat16", 8e-2)])
def test_half_decode_weights_close_to_fp32_and_change_nothing_else(dtype, tolerance):
    model, x = model_and_ids()
    exact = cached_logits(model, x, prefill=12)
    with torch.no_grad():
        full = model(x).logits

    model.set_decode_dtype(dtype)
    assert model.decode_dtype == getattr(torch, dtype)
    half = cached_logits(model, x, prefill=12)
    assert not torch.equal(half, exact)                                  # the copies were read
    torch.testing.assert_close(half, exact, atol=tolerance, rtol=0)
    assert torch.equal(half.argmax(-1), exact.argmax(-1))
    with torch.no_grad():
        assert torch.equal(model(x).logits, full)                        # > DECODE_ROWS positions: fp32
        few = x[:, :DECODE_ROWS]                                         # several rows: fp32 too
        torch.testing.assert_close(model(few).logits, full[:, :DECODE_ROWS], atol=1e-5, rtol=1e-5)
    loss = model(x[:, :-1], targets=x[:, 1:]).loss                       # training: fp32 with gradients
    loss.backward()
    assert model.blocks[0].attention.qkv.weight.grad is not None

    model.set_decode_dtype(None)
    torch.testing.assert_close(cached_logits(model, x, prefill=12), exact, atol=1e-5, rtol=1e-5)


def test_half_copies_follow_weight_changes():
    model, x = model_and_ids(T=1)                                        # one row: the half copies are read
    model.set_decode_dtype("fp16")
    with torch.no_grad():
        before = model(x).logits
        for p in model.parameters():
            p.mul_(1.1)                                                  # e.g. an optimiser step
        after = model(x).logits
        model.set_decode_dtype(None)
        exact_after = model(x).logits
    assert not torch.allclose(before, after, atol=1e-2)
    torch.testing.assert_close(after, exact_after, atol=5e-2, rtol=0)


def test_generate_with_half_weights_matches_fp32_greedy():
    model, x = model_and_ids()
    prompt = x[0, :8].tolist()
    exact = generate(model, prompt, max_new_tokens=24, temperature=0)[0].ids
    model.set_decode_dtype("float16")
    assert generate(model, prompt, max_new_tokens=24, temperature=0)[0].ids == exact


@pytest.mark.parametrize("name", ["int8", "float64", torch.int8])
def test_unknown_decode_dtype_is_a_one_line_error(name):
    model, _ = model_and_ids()
    with pytest.raises(ConfigError, match="choose float32, float16 or bfloat16"):
        model.set_decode_dtype(name)


@pytest.mark.parametrize("shape", [(16, 48), (48, 16), (24, 24)])          # wide, narrow, square
@pytest.mark.parametrize("rows", [1, 3, DECODE_ROWS + 1])
def test_fp32_decode_paths_equal_the_plain_linear_and_follow_weight_changes(shape, rows):
    from torch.nn import functional as F

    from glassgpt.model.linear import Linear

    torch.manual_seed(0)
    layer, x = Linear(*shape), torch.randn(2, rows, shape[0])[:1]
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-6, rtol=1e-5)
        layer.weight.mul_(-2.0)                                            # copies must be remade
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(64, 17000), (17000, 64)])             # > SPLIT_BYTES, odd sizes
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_one_row_split_across_threads_equals_the_plain_linear(shape, threads):
    from torch.nn import functional as F

    from glassgpt.model.linear import SPLIT_BYTES, Linear

    torch.manual_seed(0)
    layer, x = Linear(*shape), torch.randn(1, 1, shape[0])
    assert layer.weight.numel() * 4 >= SPLIT_BYTES
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
            layer.weight.mul_(-2.0)
            torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("fused", [False, True])
def test_inference_copies_follow_optimizer_steps_even_fused_ones(fused):
    """Fused AdamW updates weights without bumping their version counter: copies must still follow."""
    from torch.nn import functional as F

    from glassgpt.model.linear import Linear

    torch.manual_seed(0)
    layer = Linear(24, 48)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1, fused=fused)
    for rows in (1, 3, 20):
        x = torch.randn(rows, 24)
        with torch.no_grad():
            layer(x)                                                       # copies made
        layer(torch.randn(4, 24)).square().sum().backward()
        optimizer.step()
        with torch.no_grad():
            torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rows", [2, 5, 8, 40])
def test_several_rows_without_gradients_equal_the_plain_linear(rows):
    from torch.nn import functional as F

    from glassgpt.model.linear import Linear

    torch.manual_seed(0)
    layer, x = Linear(64, 96), torch.randn(2, rows, 64)[1]                 # a non-contiguous-origin view
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))    # with gradients: nn.Linear


def test_a_model_nobody_trains_keeps_its_copies_while_another_trains():
    """A distillation teacher runs without gradients beside a training student: the student's
    optimizer steps must not make the teacher rebuild its copies every step."""
    from glassgpt.model.linear import Linear

    torch.manual_seed(0)
    teacher, student = Linear(24, 48), Linear(24, 48)
    optimizer = torch.optim.AdamW(student.parameters(), fused=True)
    x = torch.randn(3, 24)
    with torch.no_grad():
        teacher(x)
    before = teacher._copy("packed")[0]
    student(x).sum().backward()
    optimizer.step()
    assert teacher._copy("packed")[0] is before


def copies_held(model) -> int:
    return sum(len(m.__dict__.get("_decode_copies", {})) for m in model.modules())


def test_weight_copies_can_be_turned_off_same_logits_no_copies_kept():
    model, x = model_and_ids()
    fast = cached_logits(model, x, prefill=12)
    assert copies_held(model) > 0                                     # prompt rows and single rows made copies
    model.set_weight_copies(False)
    assert copies_held(model) == 0                                    # freed at once
    plain = cached_logits(model, x, prefill=12)
    assert copies_held(model) == 0                                    # and not made again
    assert torch.allclose(plain, fast, atol=1e-5, rtol=1e-5)
    model.set_decode_dtype("float16")                                 # asked-for half copies still exist
    half = cached_logits(model, x, prefill=12)
    assert copies_held(model) > 0 and torch.allclose(half, fast, atol=1e-2, rtol=1e-2)
    model.set_decode_dtype(None).set_weight_copies(True)
    assert torch.allclose(cached_logits(model, x, prefill=12), fast, atol=1e-6, rtol=1e-6)
