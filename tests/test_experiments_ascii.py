"""ASCII-art diffusion: builder, pictures, prompt, scorer, render, corpus."""
import random

import pytest
from PIL import Image

from glassgpt.errors import GlassError
from glassgpt.experiments.ascii_diffusion import (HELD_OUT_KINDS, KINDS, TRAIN_KINDS, Schedule, build_corpus,
                                                  build_frames, build_prompt, draw, format_sequence, load_art,
                                                  parse_frames, render_sequences, score_sequence)
from glassgpt.experiments.ascii_diffusion.builder import Frame
from glassgpt.experiments.ascii_diffusion.pictures import RAMP
from glassgpt.experiments.ascii_diffusion.prompt import open_sequence
from glassgpt.experiments.ascii_diffusion.scorer import ink, isolated_share

SCHEDULE = Schedule(((4, 4), (7, 5), (9, 7), (12, 8)), (0.9, 0.6, 0.3, 0.0))


def picture(kind="disc", seed=1):
    return draw(kind, random.Random(seed))


# -- builder ---------------------------------------------------------------------------------------
def test_frames_follow_the_schedule_exactly():
    art = picture("letter")
    frames = build_frames(art, SCHEDULE, seed=3)
    assert [(f.width, f.height) for f in frames] == list(SCHEDULE.sizes)
    for f, p in zip(frames, SCHEDULE.noise):
        assert len(f.rows) == f.height and all(len(r) == f.width for r in f.rows)
        noisy = sum(c not in art.charset for r in f.rows for c in r)
        assert noisy == round(p * f.width * f.height)                     # exactly the scheduled share
        assert f.header() == f"[step {f.step}/4 {f.width}x{f.height} noise {p:.2f}]"
    assert list(frames[-1].rows) == art.at_size(12, 8)                    # the last frame is the picture


def test_noise_replaces_cells_of_the_resampled_picture():
    art = picture("rectangle")
    f = build_frames(art, SCHEDULE, seed=0)[1]
    clean = art.at_size(f.width, f.height)
    kept = [(a, b) for r, c in zip(f.rows, clean) for a, b in zip(r, c) if a in art.charset]
    assert kept and all(a == b for a, b in kept)


def test_builder_is_deterministic_in_its_seed():
    art = picture("triangle")
    assert build_frames(art, SCHEDULE, seed=7) == build_frames(art, SCHEDULE, seed=7)
    assert build_frames(art, SCHEDULE, seed=7) != build_frames(art, SCHEDULE, seed=8)
    assert draw("ring", random.Random(5)).at_size(12, 8) == draw("ring", random.Random(5)).at_size(12, 8)


def test_linear_schedule_grows_from_a_square():
    s = Schedule.linear(12, 8, frames=5, start=4, noise_start=0.8)
    assert s.sizes[0] == (4, 4) and s.sizes[-1] == (12, 8)
    assert s.noise[0] == 0.8 and s.noise[-1] == 0.0
    assert Schedule.parse("3x3,6x4,10x6").sizes == ((3, 3), (6, 4), (10, 6))


@pytest.mark.parametrize("sizes, noise, message", [
    (((4, 4), (4, 4)), (0.5, 0.0), "does not grow"),
    (((6, 4), (5, 8)), (0.5, 0.0), "does not grow"),
    (((4, 4),), (0.0,), "at least 2 frames"),
    (((4, 4), (8, 8)), (0.5, 0.2), "end at 0"),
    (((4, 4), (8, 8)), (0.5,), "one noise level per size"),
    (((4, 4), (200, 8)), (0.5, 0.0), "characters wide"),
])
def test_bad_schedules_are_one_line_errors(sizes, noise, message):
    with pytest.raises(GlassError, match=message) as e:
        Schedule(sizes, noise)
    assert "\n" not in str(e.value)


def test_schedule_parse_rejects_garbage():
    with pytest.raises(GlassError, match="4x4,7x5"):
        Schedule.parse("4by4,7x5")


# -- pictures ----------------------------------------------------------------------------------------
def test_every_builtin_kind_draws_something_with_the_ramp():
    for kind in KINDS:
        rows = picture(kind).at_size(12, 8)
        chars = set("".join(rows))
        assert chars <= set(RAMP) and len(chars) > 1, kind
    assert not set(TRAIN_KINDS) & set(HELD_OUT_KINDS)


def test_images_and_text_art_from_files(tmp_path):
    image = Image.new("L", (40, 20), 0)
    image.paste(255, (0, 0, 20, 20))                      # left half bright
    image.save(tmp_path / "half.png")
    rows = load_art(tmp_path / "half.png").at_size(4, 2)
    assert rows == ["@@  ", "@@  "]
    (tmp_path / "art.txt").write_text("/\\\n\\/\n")
    art = load_art(tmp_path / "art.txt")
    assert art.at_size(4, 4) == ["//\\\\", "//\\\\", "\\\\//", "\\\\//"]
    frames = build_frames(art, Schedule(((2, 2), (4, 4)), (1.0, 0.0)), seed=0)
    assert all(c not in art.charset for c in "".join(frames[0].rows))   # noise is outside the art's chars


def test_bad_picture_files_are_one_line_errors(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(GlassError, match="cannot be read as an image"):
        load_art(tmp_path / "broken.png")
    with pytest.raises(GlassError, match="does not exist"):
        load_art(tmp_path / "missing.png")
    (tmp_path / "wide.txt").write_text("#" * 300 + "\n")
    with pytest.raises(GlassError, match="more than the limit 200"):
        load_art(tmp_path / "wide.txt", max_width=200)
    with pytest.raises(GlassError, match="unknown picture kind"):
        draw("unicorn", random.Random(0))


# -- prompt ------------------------------------------------------------------------------------------
def test_prompt_holds_examples_then_the_open_held_out_sequence():
    examples = [build_frames(picture(k), SCHEDULE, seed=i) for i, k in enumerate(("disc", "letter"))]
    target = build_frames(picture("ring"), SCHEDULE, seed=9)
    prompt = build_prompt(examples, target, given=1)
    assert prompt.count("<picture>") == 3 and prompt.count("</picture>") == 2
    assert prompt.endswith(target[0].text() + "\n")
    assert open_sequence(prompt) == "<picture>\n" + target[0].text() + "\n"
    with pytest.raises(GlassError, match="--given"):
        build_prompt(examples, target, given=4)


# -- scorer ------------------------------------------------------------------------------------------
def continuation(frames: list[Frame]) -> str:
    return "".join(f.text() + "\n" for f in frames)


def held_out():
    art = picture("cross", seed=2)
    return art, build_frames(art, SCHEDULE, seed=4)


def score(art, given_frames, generated, closed=True):
    text = format_sequence(given_frames, closed=False) + generated + ("</picture>\n" if closed else "")
    return score_sequence(text, SCHEDULE, art.charset, art, given=len(given_frames))


def test_a_perfect_continuation_grows_denoises_and_finishes():
    art, frames = held_out()
    s = score(art, frames[:1], continuation(frames[1:]))
    assert s["finished"] and s["grows"] and s["noise_falls"] and not s["stuck"]
    assert s["sizes_follow_schedule"] == 1.0 and s["headers_follow_schedule"] == 1.0
    assert s["final_noise"] == 0.0 and s["final_similarity"] == 1.0
    exact = [round(p * w * h) / (w * h) for p, (w, h) in zip(SCHEDULE.noise, SCHEDULE.sizes)]
    assert [p["noise"] for p in s["per_frame"]] == exact


def test_a_continuation_that_copies_the_last_frame_is_stuck():
    art, frames = held_out()
    copied = continuation([frames[1], frames[1], frames[1]])
    s = score(art, frames[:2], copied, closed=False)
    assert s["stuck"] and s["stuck_at"] == 3
    assert not s["grows"] and not s["finished"]
    # not identical but not larger either: still stuck
    same_size = Frame(3, 4, 7, 5, 0.3, tuple("-" * 7 for _ in range(5)))
    s = score(art, frames[:2], continuation([same_size]), closed=False)
    assert s["stuck"] and s["stuck_at"] == 3


def test_a_continuation_that_stays_noisy_does_not_finish():
    art, frames = held_out()
    noisy = [Frame(f.step, f.total, f.width, f.height, f.noise,
                   tuple("q" * f.width for _ in range(f.height))) for f in frames[1:]]
    s = score(art, frames[:1], continuation(noisy))
    assert s["grows"] and not s["stuck"]                      # the canvas grew ...
    assert not s["finished"] and s["final_noise"] == 1.0      # ... but the noise never fell
    assert not s["noise_falls"]                               # 0.9 -> 1.0 -> 1.0 -> 1.0: it rose
    assert s["final_similarity"] == 0.0


def test_a_continuation_that_grows_off_schedule_and_never_closes():
    art, frames = held_out()
    wrong = Frame(2, 4, 5, 5, 0.6, tuple(art.at_size(5, 5)))
    s = score(art, frames[:1], continuation([wrong]), closed=False)
    assert not s["closed"] and not s["finished"] and not s["stuck"]
    assert s["sizes_follow_schedule"] == 0.0 and not s["grows"]
    assert s["final_similarity"] == 1.0               # clean picture, just at the wrong size


def test_parse_frames_ignores_text_after_the_close():
    art, frames = held_out()
    parsed, closed = parse_frames(format_sequence(frames) + "<picture>\n[step 1/4 4x4 noise 0.90]\nabcd\n")
    assert closed and len(parsed) == 4 and parsed[-1].rows == list(frames[-1].rows)


def test_isolated_share_counts_characters_unlike_all_their_neighbours():
    assert isolated_share(["aaa", "aba", "aaa"]) == 1 / 9            # only the centre
    assert isolated_share(["ab", "cd"]) == 1.0
    assert isolated_share(["  ", "  "]) == 0.0
    assert isolated_share(["a", "ab"]) == 1 / 3                      # ragged rows: 'b' has no twin
    assert isolated_share([]) == 1.0                                  # nothing drawn counts as all noise


def test_ink_is_the_share_of_non_blank_characters():
    assert ink(["  ", "  "]) == 0.0 and ink(["#.", "  "]) == 0.5 and ink([]) == 0.0


def test_isolated_share_falls_with_the_scheduled_noise():
    art, frames = held_out()
    shares = [isolated_share(list(f.rows)) for f in frames]           # noise 0.9, 0.6, 0.3, 0
    assert shares == sorted(shares, reverse=True) and shares[0] > 0.8 and shares[-1] < 0.2
    s = score(art, frames[:1], continuation(frames[1:]))
    assert s["final_isolated"] == shares[-1] and [p["isolated"] for p in s["per_frame"]] == shares


# -- render and corpus -------------------------------------------------------------------------------
def test_render_writes_a_png(tmp_path):
    art, frames = held_out()
    path = render_sequences([("cross", [(f.header(), list(f.rows)) for f in frames])], art.charset,
                            tmp_path / "frames.png")
    with Image.open(path) as image:
        assert image.size[0] > 200 and image.size[1] > 100


def test_corpus_is_deterministic_and_uses_only_training_kinds():
    a = build_corpus(5, SCHEDULE, 2, kinds=("disc",), seed=1, progress=False)
    assert a == build_corpus(5, SCHEDULE, 2, kinds=("disc",), seed=1, progress=False)
    assert a.count("<picture>") == 10 and a.count("</picture>") == 10
    assert a != build_corpus(5, SCHEDULE, 2, kinds=("disc",), seed=2, progress=False)
    with pytest.raises(GlassError, match="unknown picture kind"):
        build_corpus(1, SCHEDULE, kinds=("nope",), progress=False)
