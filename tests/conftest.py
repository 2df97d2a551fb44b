"""Suite-wide settings: one thread per test process; the speed history of training runs in a
temporary file (GLASSGPT_SPEED_HISTORY), so the suite neither reads nor writes the user's.

pytest-xdist runs one worker per core; torch's own thread pool on top of that would
oversubscribe the cores (tiny models then run many times slower while threads spin).
The environment variable reaches the CLI subprocesses the tests start.
"""
import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MKL_NUM_THREADS", "1")
# what training runs measure (precision, compile) stays in the test session, not the user's cache
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

_speed = tempfile.mkdtemp(prefix="glassgpt-speed-")
atexit.register(shutil.rmtree, _speed, True)
os.environ["GLASSGPT_SPEED_HISTORY"] = os.path.join(_speed, "history.json")

import torch  # noqa: E402

torch.set_num_threads(1)


# -- a small trained model and a live glass server (tests of the glass page and its API) ------------
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

GLASS_CORPUS = "the cat sat on the mat. the dog sat on the log. a cat and a dog ran to the mat.\n" * 30


def train_char_model(steps: int = 60, seed: int = 0, window: int = 32, n_layer: int = 2):
    """A 2-layer, 3-head char-level GPT trained a few seconds on a repetitive corpus: its
    predictions are confident where the text is predictable and spread where it is not."""
    from glassgpt import Tokenizer
    from glassgpt.model import GPT, GPTConfig
    tok = Tokenizer.chars(GLASS_CORPUS)
    torch.manual_seed(seed)
    model = GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, context_length=64, d_model=48,
                                 n_layer=n_layer, n_head=3), tokenizer=tok)
    ids = torch.tensor(tok.encode(GLASS_CORPUS))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - window - 1, (16,), generator=g)
        x = torch.stack([ids[s:s + window] for s in starts])
        y = torch.stack([ids[s + 1:s + window + 1] for s in starts])
        loss = model(x, y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def glass_run(tmp_path_factory):
    """(run directory, model) of the small trained char model."""
    from glassgpt.model import load, save
    path = save(train_char_model(), tmp_path_factory.mktemp("glass") / "demo")
    return path, load(path)


@pytest.fixture(scope="session")
def glass_draft():
    """A weaker model with the same tokenizer (1 layer, a few steps): a draft that is sometimes wrong."""
    return train_char_model(steps=12, seed=1, n_layer=1)


@pytest.fixture(scope="session")
def glass_server(glass_run, glass_draft):
    """`glassgpt serve`'s app (OpenAI endpoints, the glass API, the page at /) on a free
    loopback port: (base url, model)."""
    import uvicorn

    from glassgpt.serve import create_app
    path, model = glass_run
    app = create_app({"demo": model}, draft=glass_draft)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the glass server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", model
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
