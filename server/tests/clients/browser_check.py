"""Drives the web page in Debian's headless Chromium (selenium + chromedriver), through the URL given (the
nginx edge in the tests): the page lists the models, runs an inference from its form and shows the exact
answer, logs no console errors, and on a reload takes its hashed assets from the cache. Prints the page's
Largest Contentful Paint and transferred bytes, cold and warm, as one JSON line, then the pass line.
Exits non-zero on the first failed check."""
import json
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


# Largest Contentful Paint of the current page, from the buffered performance entries.
LCP = """
const done = arguments[arguments.length - 1];
new PerformanceObserver((list) => {
  const entries = list.getEntries();
  done(entries.length ? entries[entries.length - 1].startTime : null);
}).observe({type: 'largest-contentful-paint', buffered: true});
setTimeout(() => done(null), 3000);
"""

# Bytes that came over the network for the page and its resources (0 for what the cache served).
TRANSFERRED = """
const nav = performance.getEntriesByType('navigation')[0];
const resources = performance.getEntriesByType('resource');
return {
  total: (nav ? nav.transferSize : 0) + resources.reduce((n, r) => n + r.transferSize, 0),
  assets: resources.filter((r) => /\\/assets\\//.test(r.name)).map((r) => [r.name, r.transferSize]),
};
"""


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def load(driver, url):
    driver.get(url)
    WebDriverWait(driver, 20).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#models-body tr")) >= 2)
    return driver.execute_async_script(LCP), driver.execute_script(TRANSFERRED)


def main(url):
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(profile)
        driver.set_script_timeout(10)
        try:
            lcp_cold, cold = load(driver, url)
            rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#models-body tr")]
            check(any(r.startswith("affine") for r in rows) and any(r.startswith("digits") for r in rows),
                  f"the page lists affine and digits: {rows}")
            WebDriverWait(driver, 10).until(
                lambda d: d.find_element(By.ID, "ready").get_attribute("data-state") == "ready")
            check(True, "the readiness badge says ready")

            Select(driver.find_element(By.ID, "model")).select_by_visible_text("affine")
            Select(driver.find_element(By.ID, "version")).select_by_value("1")
            data = WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "in-0-data")))
            data.clear()
            data.send_keys("[[1, 2, 3, 4]]")
            driver.find_element(By.ID, "run").click()
            WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "result").is_displayed())
            outputs = {o.find_element(By.TAG_NAME, "code").text: "".join(o.find_element(By.TAG_NAME, "pre").text.split())
                       for o in driver.find_elements(By.CSS_SELECTOR, "#outputs .output")}
            check(outputs.get("y") == "[[3,5,7,9]]", f"affine v1 answers y = 2x + 1 on the page: {outputs}")
            check(driver.find_element(By.ID, "error").text == "", "no error is shown")

            lcp_warm, warm = load(driver, url)
            cached = [name for name, size in warm["assets"] if size == 0]
            check(len(warm["assets"]) >= 2 and len(cached) == len(warm["assets"]),
                  f"the reload takes every hashed asset from the cache: {warm['assets']}")
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            check(not errors, f"no console errors: {errors}")
        finally:
            driver.quit()
    print(json.dumps({"lcp_cold_ms": lcp_cold, "lcp_warm_ms": lcp_warm,
                      "bytes_cold": cold["total"], "bytes_warm": warm["total"]}))
    print("all browser checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
