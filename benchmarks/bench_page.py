"""The glass page in headless Chromium against a live `glassgpt view` server (its own process) on loopback:
a 6-layer x 384 model and a 256-token prompt.

  keystroke -> redrawn page   one character typed into the prompt; the page traces the new
                              text (/glass/trace), receives it, redraws every view and fetches
                              the open attention head; measured in the page from the input
                              event to the end of the redraw (window.glass.timings)
  control change -> redraw    temperature / top-k / top-p / min-p moved: the sampler chain runs
                              in the page on the position's logits, no server round trip
                              (window.glass.controlTimings)

References measured in the same run: the library work behind one keystroke in-process
(page_data.trace_data + position_data, no HTTP, no browser), and one /glass/position round
trip (what a control change would cost if it asked the server).

    python -m benchmarks page [--quick]

The server inherits the environment: on a shared, loaded machine run it with
OMP_NUM_THREADS=1 (two spinning OpenMP threads per process on an oversubscribed pair of
cores made a trace 5-10x slower, in the server and in the reference alike).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import re
import statistics
import sys
import tempfile
import subprocess
import time
import urllib.parse
import urllib.request

import torch

from benchmarks.common import header, ratio, table


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def build_model(vocab: int):
    from glassgpt import GPT, GPTConfig, Tokenizer
    repo = pathlib.Path(__file__).resolve().parents[1]
    texts = [p.read_text(encoding="utf-8") for p in sorted((repo / "src").rglob("*.py"))]
    tok = Tokenizer.train(texts, vocab_size=vocab)
    torch.manual_seed(0)
    config = GPTConfig.preset("small", vocab_size=tok.vocab_size, n_layer=6, d_model=384, n_head=6,
                              context_length=512)
    return GPT(config, tokenizer=tok).eval(), texts


def prompt_of(tok, texts, n_tokens: int) -> str:
    ids = tok.encode("\n".join(texts[:3]))[:n_tokens]
    text = tok.decode(ids)
    while len(tok.encode(text)) > n_tokens:
        text = text[:-1]
    return text


def serve(model, directory: pathlib.Path):
    """`glassgpt view RUN --no-browser` in its own process, as a person runs it: (process, base url)."""
    from glassgpt.model import save
    run = save(model, directory / "bench")
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "glassgpt", "view", str(run), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    match = re.search(r"http://[0-9.]+:[0-9]+", line)
    if not match:
        proc.kill()
        sys.exit(f"glassgpt view did not start: {line}{proc.stderr.read()}")
    return proc, match.group(0)


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if browser is None or not os.path.exists(driver):
        sys.exit("bench_page needs Chromium: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="glass-bench-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1700", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(driver)), profile


def main(argv: list[str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from glassgpt.inspect import page_data

    quick = "--quick" in argv
    keystrokes, controls = (8, 20) if quick else (30, 60)
    header("glass page: keystroke and control redraw (6 layers x 384, 256-token prompt, headless Chromium)")
    print(f"   load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; torch threads "
          f"{torch.get_num_threads()}")
    model, texts = build_model(4096)
    text = prompt_of(model.tokenizer, texts, 255)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="glass-bench-run-"))
    proc, base = serve(model, workdir)
    driver, profile = chromium()
    wait = WebDriverWait(driver, 60, poll_frequency=0.02)
    try:
        driver.get(f"{base}/?text={urllib.parse.quote(text)}")
        wait.until(lambda d: d.execute_script("return window.glass && window.glass.timings.length > 0"))
        tokens = driver.execute_script("return window.glass.state.trace.ids.length")
        box = driver.find_element(By.ID, "prompt")
        driver.execute_script("window.glass.timings = []")
        letters = "abcdefghijklmnopqrstuvwxyz"
        library_ms = []
        for i in range(keystrokes):                # a keystroke, then the same library work in-process:
            box.send_keys(letters[i % 26] if i % 2 else " ")   # side by side, under the same load
            wait.until(lambda d: d.execute_script(
                "return window.glass.lastText === document.getElementById('prompt').value"
                " && !window.glass.state.inFlight"))
            ids = model.tokenizer.encode(driver.execute_script("return window.glass.lastText"))[-512:]
            start = time.perf_counter()
            data, t, _ = page_data.trace_data(model, ids)
            page_data.position_data(model, t, len(t.ids) - 1)
            page_data.attention_matrix(t, 0, 0)
            library_ms.append(1000 * (time.perf_counter() - start))
        timings = driver.execute_script("return window.glass.timings")
        page_ms = [t["ms"] for t in timings]
        trip_part = statistics.median(t["trip"] for t in timings)
        render_part = statistics.median(t["render"] for t in timings)
        final_tokens = driver.execute_script("return window.glass.state.trace.ids.length")

        driver.execute_script("window.glass.controlTimings = []")
        for i in range(controls):                  # one control moved at a time, as a hand does
            control, value = [("temperature", 0.3 + (i % 17) / 10), ("top-p", [0.9, 0.95, 0.5, 1][i % 4]),
                              ("top-k", [40, 0, 200, 0][i % 4]), ("min-p", [0.05, 0, 0.1, 0][i % 4])][i % 4]
            driver.execute_script("const el = document.getElementById(arguments[0]); el.value = arguments[1];"
                                  "el.dispatchEvent(new Event('input'));", control, value)
        per_change = driver.execute_script("return window.glass.controlTimings")

        # reference for a control change: one /glass/position round trip
        body = json.dumps({"model": "bench", "text": driver.execute_script("return window.glass.lastText"),
                           "position": 3}).encode()
        trip_ms = []
        for _ in range(controls // 2):
            start = time.perf_counter()
            req = urllib.request.Request(f"{base}/glass/position", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
            trip_ms.append(1000 * (time.perf_counter() - start))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"   prompt: {tokens} -> {final_tokens} tokens, vocabulary {model.config.vocab_size} (BPE trained on "
          f"glassgpt's source), {model.num_parameters() / 1e6:.1f}M parameters; {keystrokes} keystrokes, "
          f"{len(per_change)} control changes")
    table([
        ("keystroke -> redraw p50 (ms)", statistics.median(page_ms), statistics.median(library_ms),
         ratio(statistics.median(page_ms), statistics.median(library_ms))),
        ("keystroke -> redraw p95 (ms)", percentile(page_ms, 95), percentile(library_ms, 95),
         ratio(percentile(page_ms, 95), percentile(library_ms, 95))),
        ("control change -> redraw p50 (ms)", statistics.median(per_change), statistics.median(trip_ms),
         ratio(statistics.median(per_change), statistics.median(trip_ms))),
        ("control change -> redraw p95 (ms)", percentile(per_change, 95), percentile(trip_ms, 95),
         ratio(percentile(per_change, 95), percentile(trip_ms, 95))),
    ], columns=("measure", "page", "reference", "page/ref"))
    print(f"   keystroke parts (p50): HTTP round trip with the server's work {trip_part:.0f} ms, "
          f"decode and redraw in the page {render_part:.0f} ms")
    print("   reference: keystroke = the library work in-process (trace_data + position_data + one attention "
          "matrix), no HTTP and no browser; control = one /glass/position HTTP round trip")
    print(f"   targets: keystroke p95 < 300 ms, control change < 50 ms; load average after: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main(sys.argv[1:])
