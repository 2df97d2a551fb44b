"""The glass page in a real browser (headless Chromium driven by Selenium) against a live
server with a small trained model: what the page shows must be what the library computes.

Each test saves a screenshot under artifacts/glass-page/ (ignored by git)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

import pytest
import torch
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from glassgpt.generate import SamplerChain, SamplingParams, Session
from glassgpt.generate.speculative import speculative_step
from glassgpt.inspect.lens import logit_lens
from glassgpt.inspect.page_data import export_html

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("GLASS_ARTIFACTS", REPO / "artifacts" / "glass-page"))
TEXT = "the cat sat on the mat. a dog ran to the"
INSTALL = "apt-get install chromium chromium-driver"


def find_chromium() -> tuple[str | None, str | None]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    return browser, driver


def ensure_chromium() -> tuple[str, str]:
    """Chromium and its driver; installed with apt-get when missing on a CI machine run as root."""
    browser, driver = find_chromium()
    if (browser is None or driver is None) and os.environ.get("CI") and hasattr(os, "geteuid") \
            and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], env=env, check=False,
                       capture_output=True, timeout=900)
        browser, driver = find_chromium()
    if browser is None or driver is None:
        pytest.skip(f"no headless Chromium here: install it with `{INSTALL}` (Debian) to run the page tests")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    path, driver_path = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = path
    profile = tempfile.mkdtemp(prefix="glass-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1700", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
    except WebDriverException as e:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"Chromium did not start ({str(e).splitlines()[0][:100]}): check `{INSTALL}`")
    driver.set_script_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


# -- driving the page -------------------------------------------------------------------------------------
def wait(driver, script: str, timeout: float = 30):
    """Wait until a JS expression is truthy; return its value."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script("return " + script))


def settled(driver, text: str) -> None:
    wait(driver, f"window.glass && window.glass.lastText === {json.dumps(text)} && !window.glass.state.inFlight "
                 f"&& window.glass.state.pending === null")


def open_page(driver, base: str, text: str = "") -> None:
    driver.get(f"{base}/?text={urllib.parse.quote(text)}")
    if text:
        settled(driver, text)
    else:
        wait(driver, "document.getElementById('message').textContent.length > 0")


def set_text(driver, text: str) -> None:
    driver.execute_script("const p = document.getElementById('prompt'); p.value = arguments[0];"
                          "p.dispatchEvent(new Event('input'));", text)


def set_controls(driver, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0) -> None:
    driver.execute_script("""
        for (const [id, v] of Object.entries(arguments[0])) {
          const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event('input'));
        }""", {"temperature": temperature, "top-k": top_k, "top-p": top_p, "min-p": min_p})


def bars(driver, box: str = "bars") -> list[tuple[int, float, bool]]:
    return [tuple(row) for row in driver.execute_script(
        f"return [...document.querySelectorAll('#{box} .bar[data-id]')]"
        ".map(b => [parseInt(b.dataset.id), parseFloat(b.dataset.prob), b.classList.contains('removed')])")]


def select_position(driver, position: int) -> None:
    driver.find_element(By.CSS_SELECTOR, f"#tokens .tok[data-position='{position}']").click()
    wait(driver, f"window.glass.state.pos && window.glass.state.pos.position === {position}")


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def shot(driver, name: str, element_id: str | None = None) -> None:
    if element_id:
        driver.execute_script("document.getElementById(arguments[0]).scrollIntoView()", element_id)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def most_uncertain(t) -> int:
    return int(t.entropy()[:-1].argmax())


# -- the tests ---------------------------------------------------------------------------------------------
def test_page_loads_and_typing_shows_tokens(browser, glass_server):
    base, model = glass_server
    open_page(browser, base)
    assert "type some text" in browser.find_element(By.ID, "message").text
    prompt = browser.find_element(By.ID, "prompt")
    prompt.send_keys(TEXT)                                         # real keystrokes, one trace each (latest wins)
    settled(browser, TEXT)
    t = model.trace(TEXT)
    chips = browser.execute_script("return [...document.querySelectorAll('#tokens .tok')]"
                                   ".map(e => [parseInt(e.dataset.id), e.firstChild.textContent])")
    assert [c[0] for c in chips] == t.ids
    assert "".join(c[1] for c in chips).replace("␣", " ") == TEXT
    # the pipeline and the attention grid of this model
    stages = browser.find_elements(By.CSS_SELECTOR, "#pipeline .stage")
    assert len(stages) == model.config.n_layer * 6 + 5            # embed, pos, 6 per block, norm, unembed, softmax
    assert len(browser.find_elements(By.CSS_SELECTOR, "#attention-grid .thumb")) == \
        model.config.n_layer * model.config.n_head
    # hover tells probability, rank and entropy
    ActionChains(browser).move_to_element(
        browser.find_element(By.CSS_SELECTOR, "#tokens .tok[data-position='5']")).perform()
    tip = wait(browser, "document.getElementById('tooltip').style.display === 'block' && "
                        "document.getElementById('tooltip').textContent")
    assert f"rank {int(t.next_rank[4])}" in tip and "entropy" in tip
    assert f"p(this token) {t.next_prob[4].item():.4f}" in tip
    # lines from the selected (last) position to the tokens it attends to, as wide as the weight
    lines = browser.execute_script("return [...document.querySelectorAll('#attention-lines path')]"
                                   ".map(p => [parseInt(p.dataset.key), parseFloat(p.dataset.weight)])")
    row = t.attention[0, 0, -1]
    assert lines and {k for k, _ in lines} == {k for k in range(len(t.ids)) if row[k] > 0.01}
    for k, w in lines:
        assert abs(w - row[k].item()) < 1e-5
    # a click on a stage shows its vector and norm
    browser.find_element(By.CSS_SELECTOR, "#pipeline .stage[data-stage='blocks.1.ff']").click()
    caption = wait(browser, "document.getElementById('stage-caption') && "
                            "document.getElementById('stage-caption').textContent")
    with torch.no_grad(), model.probing(read=["blocks.1.ff.out"]) as probes:
        model(torch.tensor([t.ids]))
    assert f"norm {probes['blocks.1.ff.out'][0, -1].norm().item():.3f}" in caption
    shot(browser, "1-tokens-pipeline")
    assert console_errors(browser) == []


def test_temperature_and_filters_equal_the_sampler_chain(browser, glass_server):
    base, model = glass_server
    open_page(browser, base, TEXT)
    t = model.trace(TEXT)
    position = most_uncertain(t)
    select_position(browser, position)
    set_controls(browser, temperature=0.5)
    probs = t.probs(temperature=0.5)[position]
    shown = bars(browser)
    assert len(shown) == min(20, model.config.vocab_size)
    for token, p, removed in shown:
        assert abs(p - probs[token].item()) < 1e-4 and not removed
    assert [s[0] for s in shown] == t.logits[position].topk(len(shown)).indices.tolist()
    shot(browser, "4-temperature-0.5")
    for settings in ({"top_p": 0.9}, {"temperature": 0.7, "top_k": 5, "top_p": 0.9, "min_p": 0.05},
                     {"min_p": 0.2}, {"temperature": 0}):
        set_controls(browser, **{k: settings.get(k, d) for k, d in
                                 (("temperature", 1.0), ("top_k", 0), ("top_p", 1.0), ("min_p", 0.0))})
        chain = SamplerChain(SamplingParams(**settings), model.config.vocab_size)
        logits = t.logits[position][None]
        gone = torch.isinf(chain.process(logits))[0] if settings.get("temperature", 1) != 0 else None
        after = chain.probabilities(logits)[0]
        for token, p, removed in bars(browser):
            assert abs(p - after[token].item()) < 1e-4, settings
            if gone is not None:
                assert removed == bool(gone[token]), (settings, token)
        if gone is not None:
            kept = int(browser.find_element(By.ID, "output-summary").get_attribute("data-kept"))
            assert kept == int((~gone).sum())
        if settings == {"top_p": 0.9}:
            assert any(r for _, _, r in bars(browser)) and not all(r for _, _, r in bars(browser))
            shot(browser, "4-top-p-0.9")
    set_controls(browser)


def test_clicking_a_head_takes_it_out(browser, glass_server):
    base, model = glass_server
    open_page(browser, base, TEXT)
    set_controls(browser)
    browser.find_element(By.ID, "cut-mode").click()
    browser.find_element(By.CSS_SELECTOR, "#attention-grid .thumb[data-head='0.1']").click()
    wait(browser, "document.getElementById('ablation-loss') !== null && !window.glass.state.inFlight")
    ids = model.tokenizer.encode(TEXT)

    def zero_head(z):
        z = z.clone()
        z[:, 1] = 0
        return z
    with torch.no_grad(), model.probing(edit={"blocks.0.attn.z": zero_head}):
        ablated = model(torch.tensor([ids])).logits[0]
    probs = torch.softmax(ablated[-1], -1)
    for token, p, _ in bars(browser):
        assert abs(p - probs[token].item()) < 1e-4
    loss = torch.nn.functional.cross_entropy(ablated[:-1], torch.tensor(ids[1:])).item()
    shown = browser.find_element(By.ID, "ablation-loss")
    assert float(shown.get_attribute("data-loss")) == pytest.approx(loss, abs=1e-4)
    intact_loss = -model.trace(TEXT).next_log_prob.mean().item()
    assert float(shown.get_attribute("data-intact-loss")) == pytest.approx(intact_loss, abs=1e-4)
    intact = torch.softmax(model.trace(TEXT).logits[-1], -1)
    ticks = browser.execute_script("return [...document.querySelectorAll('#bars .bar[data-id]')]"
                                   ".map(b => [parseInt(b.dataset.id), parseFloat(b.dataset.intactProb)])")
    for token, p in ticks:
        assert abs(p - intact[token].item()) < 1e-4
    assert "removed" in browser.find_element(By.CSS_SELECTOR, ".thumb[data-head='0.1']").get_attribute("class")
    shot(browser, "6-head-0.1-removed", "attention-view")
    browser.find_element(By.ID, "ablation-reset").click()
    wait(browser, "window.glass.state.trace.removed.length === 0 && !window.glass.state.inFlight")
    for token, p, _ in bars(browser):
        assert abs(p - intact[token].item()) < 1e-4
    # a stage of the pipeline: block 1's feed-forward
    browser.find_element(By.CSS_SELECTOR, "#pipeline .stage[data-stage='blocks.1.ff']").click()
    wait(browser, "window.glass.state.trace.removed.includes('feed-forward 1') && !window.glass.state.inFlight")
    with torch.no_grad(), model.probing(edit={"blocks.1.ff.out": torch.zeros_like}):
        probs = torch.softmax(model(torch.tensor([ids])).logits[0, -1], -1)
    for token, p, _ in bars(browser):
        assert abs(p - probs[token].item()) < 1e-4
    browser.find_element(By.ID, "ablation-reset").click()
    wait(browser, "window.glass.state.trace.removed.length === 0 && !window.glass.state.inFlight")
    browser.find_element(By.ID, "cut-mode").click()


def test_rewind_and_substitute_are_the_library_session(browser, glass_server, glass_draft):
    base, model = glass_server
    open_page(browser, base, "the cat")
    set_controls(browser, temperature=0)

    def session_ids():
        return browser.execute_script("return [...document.querySelectorAll('#session-tokens .tok')]"
                                      ".map(e => parseInt(e.dataset.id))")

    def click_and_wait(element_id, n_steps=None):
        before = browser.execute_script("return JSON.stringify(window.glass.state.session)")
        browser.find_element(By.ID, element_id).click()
        wait(browser, f"JSON.stringify(window.glass.state.session) !== {json.dumps(before)}")

    click_and_wait("session-start")
    for _ in range(3):
        click_and_wait("session-sample")
    lib = Session(model)
    lib.append("the cat")
    lib.generate(3, temperature=0)
    assert session_ids() == lib.ids
    browser.find_element(By.CSS_SELECTOR, "#session-tokens .tok[data-position='5']").click()
    click_and_wait("session-rewind")
    lib.rewind_to(5)
    browser.find_element(By.CSS_SELECTOR, "#session-tokens .tok[data-position='4']").click()
    browser.find_element(By.ID, "substitute-text").send_keys("dog")
    click_and_wait("session-substitute")
    lib.substitute(4, "dog")
    assert session_ids() == lib.ids
    # the next-token bars are the library's distribution after this context; a click appends a token
    set_controls(browser, temperature=0.8)
    after = SamplerChain(SamplingParams(temperature=0.8), model.config.vocab_size).probabilities(
        lib.next_logits()[None])[0]
    shown = bars(browser, "session-bars")
    for token, p, _ in shown:
        assert abs(p - after[token].item()) < 1e-4
    pick = shown[2][0]
    before = browser.execute_script("return JSON.stringify(window.glass.state.session)")
    browser.find_element(By.CSS_SELECTOR, f"#session-bars .bar[data-id='{pick}']").click()
    wait(browser, f"JSON.stringify(window.glass.state.session) !== {json.dumps(before)}")
    lib.append([pick])
    assert session_ids() == lib.ids
    steps = browser.find_elements(By.CSS_SELECTOR, "#session-steps li")
    assert len(steps) == 4 and "picked" in steps[-1].text
    steps[0].click()                                               # revisit the first step's distribution
    wait(browser, "document.querySelectorAll('#step-detail .bar').length > 0")
    shot(browser, "7-session", "session-view")
    # 8. a speculative step: the draft's proposals, which the target accepted, its own token
    set_controls(browser, temperature=0)
    browser.find_element(By.ID, "use-draft").click()
    expected = speculative_step(model, glass_draft, lib.ids, temperature=0, draft_tokens=4)
    click_and_wait("session-sample")
    lib.append(expected["tokens"])
    assert session_ids() == lib.ids
    chips = browser.execute_script("return [...document.querySelectorAll('#step-detail .speculative .tok')]"
                                   ".map(e => [parseInt(e.dataset.id), e.className])")
    n = expected["accepted"]
    assert [c[0] for c in chips[:4]] == expected["proposed"]
    assert ["accepted" in c[1] for c in chips[:4]] == [i < n for i in range(4)]
    assert chips[4][0] == expected["tokens"][n] and "target" in chips[4][1]
    shot(browser, "8-speculative", "session-view")
    browser.find_element(By.ID, "use-draft").click()
    set_controls(browser)


def test_bad_input_shows_a_message(browser, glass_server):
    base, model = glass_server
    open_page(browser, base, "the")
    long = "the cat sat on the mat. " * 4                          # 96 characters, context 64
    set_text(browser, long)
    settled(browser, long)
    message = browser.find_element(By.ID, "message")
    assert "warning" in message.get_attribute("class") and "cropped" in message.text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")) == model.config.context_length
    shot(browser, "bad-long-prompt")
    browser.execute_script("const p = document.getElementById('prompt');"     # a broken paste: a lone surrogate
                           "p.value = 'the ' + String.fromCharCode(0xD800) + ' cat';"
                           "p.dispatchEvent(new Event('input'));")
    wait(browser, "document.getElementById('message').className === 'error'")
    assert "not valid Unicode" in browser.find_element(By.ID, "message").text
    set_text(browser, "")
    wait(browser, "document.getElementById('message').textContent.includes('type some text')")
    driver_url = f"{base}/?model=nope&text=the"
    browser.get(driver_url)
    settled(browser, "the")
    assert "no model named \"nope\"" in browser.find_element(By.ID, "message").text
    assert browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")             # never a blank page
    shot(browser, "bad-unknown-model")


def test_static_export_shows_the_same_numbers(browser, glass_run, tmp_path):
    _, model = glass_run
    path = tmp_path / "glass.html"
    path.write_text(export_html("demo", model, TEXT), encoding="utf-8")
    console_errors(browser)                                        # reading the log empties it
    browser.get(path.as_uri())
    wait(browser, f"window.glass && window.glass.lastText === {json.dumps(TEXT)}")
    t = model.trace(TEXT)
    for token, p, _ in bars(browser):
        assert abs(p - t.probs()[-1, token].item()) < 1e-4
    position = most_uncertain(t)
    select_position(browser, position)
    set_controls(browser, temperature=0.5, top_p=0.9)
    after = SamplerChain(SamplingParams(temperature=0.5, top_p=0.9), model.config.vocab_size).probabilities(
        t.logits[position][None])[0]
    for token, p, _ in bars(browser):
        assert abs(p - after[token].item()) < 1e-4
    lens = logit_lens(model, t)
    rows = browser.execute_script("return [...document.querySelectorAll('#lens tr[data-depth]')]"
                                  ".map(r => r.children[1].textContent)")
    assert len(rows) == model.config.n_layer + 1
    assert [r.replace("␣", " ") for r in rows] == [lens.top_tokens[d][position] for d in range(len(rows))]
    browser.find_element(By.CSS_SELECTOR, "#attention-grid .thumb[data-head='1.2']").click()
    wait(browser, "window.glass.state.matrix && window.glass.state.matrix.layer === 1")
    shot(browser, "export")
    assert console_errors(browser) == []
