"""The JupyterLab workflow in a real browser (``browser`` tier, ``make test-browser``).

JupyterLab runs from this venv on a free local port with a random token, rooted in a temporary folder; headless
Chromium, driven by selenium, opens a copy of a notebook there, runs it with the Run menu's "Run All Cells" and
checks what a reader sees: every cell ran, its figure is drawn, no cell shows an error. The notebook is
table3_squad, the cheapest one that draws a figure: offline (``HF_HUB_OFFLINE=1``) it reads no run folder and
runs in seconds, so the check is the browser, not the compute. A second check opens a committed executed
notebook (``notebooks/executed/small/``) and waits for its figures to render. Nothing in the repository is
written: the copy's parameters cell points ``run_dir`` and ``out_dir`` into the temporary folder.

Chromium and chromedriver come from Debian's ``chromium`` and ``chromium-driver`` (``.ci/install-browser``,
called by ``make test-browser``); where they cannot be installed the tests skip with the reason. On a failure
the browser's screenshot and page, and the server's log, are left in the test's tmp folder (paths printed).
"""
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SMOKE_NOTEBOOK = "table3_squad"
# The committed executed notebooks the reader opens: small's, else micro's (issue 29, item 1).
EXECUTED = next((ROOT / "notebooks" / "executed" / scale for scale in ("small", "micro")
                 if list((ROOT / "notebooks" / "executed" / scale).glob("*.ipynb"))),
                ROOT / "notebooks" / "executed" / "small")
# Written by .ci/install-browser when Chromium could not be installed: the reason to skip with.
INSTALL_STATUS = Path(sys.prefix) / ".browser-install"
KERNEL = "elmlib"
# Generous: the machines are shared, and a red CI blocks everyone. A healthy run takes seconds per step.
SERVER_START_S, PAGE_S, KERNEL_S, RUN_ALL_S, RENDER_S = 180, 180, 300, 900, 180
# JupyterLab settings for a fresh profile: every cell attached to the page (no windowing, so every output is in
# the DOM to be checked) and no news or update requests.
LAB_SETTINGS = {"notebook-extension/tracker": {"windowingMode": "none"},
                "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}
# A Python exception in an output, as IPython prints it (error outputs render as stderr text in JupyterLab 4).
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*\w*(Error|Exception)\b.*$", re.M)


# --------------------------------------------------------------------------- what the tier needs

@pytest.fixture(scope="module")
def chrome():
    """(selenium.webdriver, chromium binary, chromedriver binary), or a skip saying why there are none."""
    reason = INSTALL_STATUS.read_text().strip() if INSTALL_STATUS.exists() else ""
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed (the `browser` extra): run `make test-browser`")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        reason = reason or "chromium or chromedriver not on PATH (run `make test-browser`)"
        pytest.skip(f"no headless browser: {reason}")
    return webdriver, browser, driver


@dataclass
class Lab:
    process: subprocess.Popen
    url: str  # http://127.0.0.1:<port>/
    token: str
    root: Path  # the server's root folder
    log: Path

    def api(self, path: str):
        with urllib.request.urlopen(f"{self.url}api/{path}?token={self.token}", timeout=30) as r:
            return json.loads(r.read() or b"null")

    def page(self, rel: str) -> str:
        return f"{self.url}lab/tree/{rel}?reset&token={self.token}"  # reset: no tabs restored from a workspace

    def log_tail(self, lines=40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_env(tmp: Path) -> dict:
    """The server's (and its kernels') environment: this checkout's elmlib, a fresh Jupyter profile, no hub, and
    elmlib's default folders moved to stray folders that must stay empty."""
    settings = tmp / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    paths = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": paths, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"), "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"), "ELMLIB_RESULTS": str(tmp / "stray-results"),
            "ELMLIB_FIGURES": str(tmp / "stray-figures"), "ELMLIB_RUNS": str(tmp / "stray-runs")}


def start_lab(tmp: Path) -> Lab:
    root, token, log = tmp / "lab-root", secrets.token_hex(16), tmp / "jupyterlab.log"
    root.mkdir()
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab"] if jupyter.exists() else [sys.executable, "-m", "jupyterlab"]
    cmd += ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={free_port()}", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}"] + (["--allow-root"] if os.geteuid() == 0 else [])
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=root, env=lab_env(tmp), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    # The server writes jpserver-<pid>.json (its real port: it moves on if ours was taken) once it listens.
    info = tmp / "jupyter-runtime" / f"jpserver-{process.pid}.json"
    lab = Lab(process, "", token, root, log)
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {process.returncode} before serving:\n{lab.log_tail()}")
        if info.exists():
            with contextlib.suppress(ValueError, OSError):
                lab.url = f"http://127.0.0.1:{json.loads(info.read_text())['port']}/"
                lab.api("status")
                return lab
        time.sleep(0.5)
    stop_lab(lab)
    raise AssertionError(f"JupyterLab did not answer within {SERVER_START_S} s:\n{lab.log_tail()}")


def stop_lab(lab: Lab):
    """Shut the server down with its kernels (its REST call, then SIGTERM, then SIGKILL), and end any process it
    started that is still alive (kernels run in sessions of their own)."""
    import psutil  # ipykernel's dependency

    children = []
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(lab.process.pid).children(recursive=True)
    if lab.process.poll() is None and lab.url:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(urllib.request.Request(f"{lab.url}api/shutdown?token={lab.token}", method="POST"),
                                   timeout=30).close()
    for stop in (lab.process.terminate, lab.process.kill):
        try:
            lab.process.wait(timeout=30)
            break
        except subprocess.TimeoutExpired:
            stop()
    lab.process.wait(timeout=30)
    gone, alive = psutil.wait_procs([c for c in children if c.is_running()], timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


@pytest.fixture
def lab(chrome, tmp_path):
    lab = start_lab(tmp_path)
    specs = lab.api("kernelspecs")["kernelspecs"]
    try:
        assert KERNEL in specs, f"JupyterLab finds no '{KERNEL}' kernel (found {sorted(specs)}): run `make kernel`"
        yield lab
    finally:
        stop_lab(lab)


@pytest.fixture
def browser(chrome, tmp_path):
    webdriver, binary, chromedriver = chrome
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    service = Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)  # explicit paths: Selenium Manager stays offline
    driver.set_page_load_timeout(PAGE_S)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def evidence(driver, lab: Lab, folder: Path):
    """On a failure, leave the browser's screenshot and page beside the server's log, and print where."""
    try:
        yield
    except pytest.skip.Exception:
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(folder / "failure.png"))
            (folder / "failure.html").write_text(driver.page_source)
        print(f"browser tier evidence: {folder / 'failure.png'}, {folder / 'failure.html'}, {lab.log}\n"
              f"--- JupyterLab log (tail) ---\n{lab.log_tail()}")
        raise


# --------------------------------------------------------------------------- driving JupyterLab

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def wait(driver, seconds, condition, message):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.5).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"after {seconds} s: {message}") from None


def dialog_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return " | ".join(d.text for d in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog"))


def open_notebook(driver, lab: Lab, rel: str, n_cells: int):
    """Open ``rel`` and wait until all its cells are on the page and its kernel is idle."""
    from selenium.webdriver.common.by import By

    driver.get(lab.page(rel))
    wait(driver, PAGE_S, lambda d: len(d.find_elements(By.CSS_SELECTOR, f"{PANEL} .jp-Cell")) == n_cells,
         f"{rel}: JupyterLab did not show its {n_cells} cells")

    def idle(d):
        if dialog_text(d):
            raise AssertionError(f"{rel}: JupyterLab shows a dialog: {dialog_text(d)}")
        kernels = [s["kernel"] for s in lab.api("sessions") if s.get("path") == rel]
        indicator = d.find_elements(By.CSS_SELECTOR, f"{PANEL} .jp-Notebook-ExecutionIndicator")
        shown = [e.get_attribute("data-status") for e in indicator]
        return bool(kernels) and (kernels[0]["name"], kernels[0]["execution_state"]) == (KERNEL, "idle") \
            and shown == ["idle"]

    wait(driver, KERNEL_S, idle, f"{rel}: the '{KERNEL}' kernel did not start and go idle")


def menu(driver, bar: str, command: str):
    """Click the menu bar's ``bar`` menu, then its item for JupyterLab command ``command``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    driver.find_element(By.XPATH, f"//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='{bar}']").click()
    item = wait(driver, 30, EC.element_to_be_clickable((By.CSS_SELECTOR, f"li.lm-Menu-item[data-command='{command}']")),
                f"no '{command}' item in the {bar} menu")
    item.click()


def prompts(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text.strip() for e in driver.find_elements(By.CSS_SELECTOR, f"{PANEL} .jp-CodeCell .jp-InputPrompt")]


def run_all(driver, lab: Lab, rel: str):
    """Run > Run All Cells, then wait until no cell is running or queued and the kernel has been idle twice in a
    row (Run All stops at a cell that fails: the cells after it keep an empty prompt)."""
    menu(driver, "Run", "runmenu:run-all")
    settled = []

    def done(d):
        if dialog_text(d):
            raise AssertionError(f"{rel}: JupyterLab shows a dialog: {dialog_text(d)}")
        shown = prompts(d)
        states = [s["kernel"]["execution_state"] for s in lab.api("sessions") if s.get("path") == rel]
        started = any(re.fullmatch(r"\[\d+\]:", p) for p in shown)
        settled.append(started and "[*]:" not in shown and states == ["idle"])
        return settled[-2:] == [True, True]

    wait(driver, RUN_ALL_S, done, f"{rel}: Run All Cells did not finish (prompts {prompts(driver)})")


def error_outputs(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    css = f"{PANEL} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    stderr = driver.find_elements(By.CSS_SELECTOR, css)
    return [e.text for e in stderr if TRACEBACK.search(e.text)]


def rendered_images(driver, rel: str, expected: int) -> list[int]:
    """Widths of the decoded image/png outputs, once ``expected`` of them are on the page, each scrolled into view."""
    from selenium.webdriver.common.by import By

    css = f"{PANEL} .jp-OutputArea-output[data-mime-type='image/png'] img"
    wait(driver, RENDER_S, lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= expected,
         f"{rel}: expected {expected} figure(s), the page shows {len(driver.find_elements(By.CSS_SELECTOR, css))}")
    def decoded(d, img, i):
        complete, width = d.execute_script("return [arguments[0].complete, arguments[0].naturalWidth];", img)
        if complete and not width:
            raise AssertionError(f"{rel}: figure {i + 1} is a broken image")
        return width

    widths = []
    for i, img in enumerate(driver.find_elements(By.CSS_SELECTOR, css)):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
        widths.append(wait(driver, RENDER_S, lambda d: decoded(d, img, i), f"{rel}: figure {i + 1} did not render"))
    return widths


def read_notebook(path: Path) -> dict:
    """The notebook at ``path``; an empty one while a save is half written."""
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {"cells": []}


def outputs_of(nb: dict, kind: str | None = None) -> list[dict]:
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
            if kind in (None, o["output_type"])]


def images_in(nb: dict) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs_of(nb))


def git_status() -> str | None:
    git = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                         text=True)
    return git.stdout if git.returncode == 0 else None


# --------------------------------------------------------------------------- the checks

def smoke_copy(folder: Path) -> tuple[Path, dict]:
    """The smoke notebook copied into the server's root, its parameters cell writing under ``folder``."""
    nb = json.loads((ROOT / "notebooks" / f"{SMOKE_NOTEBOOK}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    source = "".join(cell["source"])
    for name in ("run_dir", "out_dir"):
        source, n = re.subn(rf'^{name} = "[^"\n]*"', f"{name} = {json.dumps(str(folder / name))}", source, flags=re.M)
        assert n == 1, f"{SMOKE_NOTEBOOK}'s parameters cell has no `{name} = \"...\"` line to point at {folder}"
    assert re.search(r'^scale = "smoke"', source, re.M), f"{SMOKE_NOTEBOOK}'s parameters cell is not at smoke"
    cell["source"] = source.splitlines(keepends=True)
    path = folder / f"{SMOKE_NOTEBOOK}.ipynb"
    path.write_text(json.dumps(nb, indent=1))
    return path, nb


def test_a_smoke_notebook_runs_in_jupyterlab_and_shows_its_figure(lab, browser, tmp_path):
    before = git_status()
    path, nb = smoke_copy(lab.root)
    rel, n_code = path.name, sum(c["cell_type"] == "code" for c in nb["cells"])
    with evidence(browser, lab, tmp_path):
        open_notebook(browser, lab, rel, len(nb["cells"]))
        run_all(browser, lab, rel)
        errors = error_outputs(browser)
        assert not errors, f"{rel}: a cell shows an error in the browser:\n" + "\n---\n".join(errors)
        shown = prompts(browser)
        assert len(shown) == n_code and all(re.fullmatch(r"\[\d+\]:", p) for p in shown), \
            f"{rel}: not every cell ran (prompts {shown})"
        widths = rendered_images(browser, rel, 1)
        assert all(w >= 200 for w in widths), f"{rel}: figure widths {widths} px: not a drawn figure"
        menu(browser, "File", "docmanager:save")  # the copy as the browser holds it, to read its outputs
        wait(browser, PAGE_S, lambda d: images_in(read_notebook(path)), f"{rel}: File > Save did not write its figure")
    saved = read_notebook(path)
    assert not outputs_of(saved, "error"), f"{rel}: saved with an error output: {outputs_of(saved, 'error')}"
    assert images_in(saved) >= 1
    figures = lab.root / "out_dir" / "figures"
    assert (figures / f"{SMOKE_NOTEBOOK}.png").stat().st_size > 1000, f"no figure written to {figures}"
    assert (lab.root / "out_dir" / "results" / f"{SMOKE_NOTEBOOK}.csv").exists()
    stray = [p for p in tmp_path.glob("stray-*/**/*") if p.is_file()]
    assert not stray, f"written outside the notebook's run_dir/out_dir: {stray}"
    assert git_status() == before, f"the repository changed:\n{git_status()}"


@pytest.mark.skipif(not list(EXECUTED.glob("*.ipynb")), reason="no committed executed notebooks yet (issue 29, item 1)")
def test_a_committed_executed_notebook_renders_its_figures(lab, browser, tmp_path):
    executed = sorted(EXECUTED.glob("*.ipynb"), key=lambda p: p.stat().st_size)
    with_figures = [p for p in executed if images_in(json.loads(p.read_text()))]
    assert with_figures, f"none of the executed notebooks in {EXECUTED} holds a figure (image/png output)"
    source = with_figures[0]  # the smallest: quickest to render
    nb = json.loads(source.read_text())
    assert not outputs_of(nb, "error"), f"{source.name} is committed with an error output"
    shutil.copy(source, lab.root / source.name)
    with evidence(browser, lab, tmp_path):
        open_notebook(browser, lab, source.name, len(nb["cells"]))
        widths = rendered_images(browser, source.name, images_in(nb))
        assert len(widths) == images_in(nb) and all(w >= 200 for w in widths), \
            f"{source.name}: {images_in(nb)} figure(s) in the file, rendered widths {widths} px"
        errors = error_outputs(browser)
        assert not errors, f"{source.name}: an output shows an error:\n" + "\n---\n".join(errors)
