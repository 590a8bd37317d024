"""The labelling page (§5.2) in a real headless Chromium: clicks, reload, export, and the scorer on the export."""

import csv
import os
import shutil
import time

import numpy as np
import pytest

from dapter_tf import data, models
from dapter_tf.attacks import labelling
from dapter_tf.data import tasks

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path):
    """Debian's Chromium, headless, driven through chromedriver; downloads go to tmp_path/downloads."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them where apt-get can)")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The flags that keep Chromium off the (closed) network and independent of any profile.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver, downloads
    finally:
        driver.quit()


def _wait_for_file(folder, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        done = [f for f in os.listdir(folder) if f.endswith(".csv")]
        if done:
            return folder / done[0]
        time.sleep(0.1)
    raise AssertionError(f"no CSV downloaded into {folder}")


def _reload_until(driver, progress: str, timeout: float = 10.0) -> str:
    """Reloads the page until its progress line reads ``progress`` or ``timeout`` passes; returns the last one.

    Under CPU load (the rest of the suite training models), Chromium sometimes hands a file:// page
    reloaded right after a click an empty localStorage; a reload a moment later shows every answer
    (measured: 2 to 5 reloads in 30 under load, none idle). Clicks made on such an empty page were
    not kept either: a Chromium race this test does not cover (the closing note of issue 5 says so).
    What this test checks is that the answers come back on a reload.
    """
    from selenium.webdriver.common.by import By

    end = time.time() + timeout
    while True:
        driver.refresh()
        shown = driver.find_element(By.ID, "progress").text
        if shown == progress or time.time() > end:
            return shown
        time.sleep(0.5)


def test_label_reload_export_and_score_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By

    driver, downloads = browser
    # Real images: the embedded CIFAR-10 sample through a converter, asked about vehicle/animal.
    task = tasks.get_task("cifar2_10", target_label="label")
    test_set = data.load_split(task, "embedded", "test").take(200)
    converted = (models.build_converter((4, 8, 8)).predict(test_set.images / 255.0, verbose=0) * 255).astype(np.uint8)
    page, key, n = labelling.write_kit(converted, test_set.labels, str(tmp_path / "kit"), ["superclass"], 3, 0, "Study")
    assert n == 6

    driver.get(f"file://{page}")
    figures = driver.find_elements(By.CSS_SELECTOR, "figure.item")
    assert len(figures) == 6
    assert all(f.find_element(By.TAG_NAME, "img").get_property("naturalWidth") == 32 for f in figures)
    assert driver.find_element(By.ID, "progress").text == "0 / 6 answered"
    clicks = {"item_1": "yes", "item_2": "no", "item_3": "unsure", "item_4": "yes"}
    for item, answer in clicks.items():
        driver.find_element(By.CSS_SELECTOR, f'#{item} button[data-answer="{answer}"]').click()
    driver.find_element(By.CSS_SELECTOR, '#item_4 button[data-answer="no"]').click()  # A change of mind.
    clicks["item_4"] = "no"
    driver.find_element(By.ID, "labeller").send_keys("vol 1")
    assert driver.find_element(By.ID, "progress").text == "4 / 6 answered"

    # Nothing is lost on a reload.
    assert _reload_until(driver, "4 / 6 answered") == "4 / 6 answered"
    assert (
        driver.find_element(By.CSS_SELECTOR, '#item_2 button[data-answer="no"]').get_attribute("aria-pressed") == "true"
    )
    assert driver.find_element(By.ID, "labeller").get_property("value") == "vol 1"

    driver.find_element(By.ID, "export").click()
    exported = _wait_for_file(downloads)
    assert exported.name == "answers-vol_1.csv"
    with open(exported, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["item"] for r in rows] == [f"item_{k}" for k in range(1, 7)]
    assert {r["item"]: r["answer"] for r in rows if r["answer"]} == clicks
    assert {r["labeller"] for r in rows} == {"vol 1"}
    assert driver.find_element(By.ID, "csv").get_property("value") == exported.read_text()

    # The scorer on the exported file agrees with the key, item by item.
    truth = labelling.read_key(key)
    right = sum(truth[item][1] == answer for item, answer in clicks.items())
    scores = labelling.score_answers([str(exported)], key)
    assert scores["overall"]["correct"] == right
    assert scores["overall"]["accuracy"] == right / 6
    assert scores["overall"]["unsure"] == 1 and scores["overall"]["blank"] == 2
    assert list(scores["labellers"]) == ["vol 1"]
