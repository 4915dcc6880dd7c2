"""Drives the web page in Debian's headless Chromium (selenium + chromedriver), through the URL given (the
nginx edge in the tests), with the API key given: the page says the prediction log needs a key, takes
the key, lists the models, runs an inference from its form and shows the exact answer, lists that
prediction in its log, adds feedback to it and shows it, logs no console errors, and on a reload takes
its hashed assets from the cache. Prints the page's Largest Contentful Paint and transferred bytes, cold
and warm, as one JSON line, then the pass line. Exits non-zero on the first failed check.
    usage: browser_check.py URL API_KEY"""
import json
import sys
import tempfile

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
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


def main(url, key):
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

            status = WebDriverWait(driver, 10).until(
                lambda d: d.find_element(By.ID, "log-status").text if "API key" in d.find_element(By.ID, "log-status").text else None)
            check(status == "this route needs an API key: send `Authorization: Bearer KEY`. Enter an API key above.",
                  f"without a key the log says so: {status!r}")
            # Before the key, what needs one is refused: only 401s may show in the console.
            before = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            check(all("status of 401" in e["message"] for e in before), f"only 401s before the key: {before}")
            driver.find_element(By.ID, "api-key").send_keys(key)
            driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
            WebDriverWait(driver, 10).until(
                lambda d: d.find_element(By.ID, "server-info").text.startswith("Server: kubeinfer"))
            check(True, "with the key the server's metadata loads")
            check(driver.find_element(By.ID, "key-state").text == "key set for this tab", "the page takes the key")
            check(driver.find_element(By.ID, "api-key").get_attribute("value") == "", "the key field is emptied")

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

            # The log re-renders when it refreshes: rows are looked up afresh, and a stale one retried.
            stale = (StaleElementReferenceException,)
            logged = WebDriverWait(driver, 15, poll_frequency=0.25, ignored_exceptions=stale).until(lambda d: next(
                ((r.get_attribute("data-id"),
                  {c.get_attribute("data-label"): c.text for c in r.find_elements(By.TAG_NAME, "td")})
                 for r in d.find_elements(By.CSS_SELECTOR, "#log-body tr")
                 if r.find_element(By.TAG_NAME, "code").text == "affine v1"), None))
            prediction, cells = logged
            check(cells.get("Outcome") == "success" and cells.get("Protocol") == "rest"
                  and cells.get("Feedback") == "none", f"the log lists the prediction: {cells}")
            button = f'#log-body tr[data-id="{prediction}"] button'
            WebDriverWait(driver, 5, ignored_exceptions=stale).until(
                lambda d: d.find_element(By.CSS_SELECTOR, button).click() or True)
            WebDriverWait(driver, 5).until(lambda d: d.find_element(By.ID, "feedback-form").is_displayed())
            driver.find_element(By.ID, "feedback-label").send_keys("7")
            driver.find_element(By.ID, "feedback-score").send_keys("0.9")
            driver.find_element(By.ID, "feedback-send").click()
            shown = WebDriverWait(driver, 10, ignored_exceptions=stale).until(lambda d: next(
                (r.find_element(By.CSS_SELECTOR, "td.feedback").text
                 for r in d.find_elements(By.CSS_SELECTOR, "#log-body tr")
                 if r.get_attribute("data-id") == prediction
                 and r.find_element(By.CSS_SELECTOR, "td.feedback").text != "none"), None))
            check(shown == "1 · label 7", f"the feedback shows on its prediction: {shown!r}")
            check(not driver.find_element(By.ID, "feedback-form").is_displayed(), "the feedback form closes")

            lcp_warm, warm = load(driver, url)
            cached = [name for name, size in warm["assets"] if size == 0]
            check(len(warm["assets"]) >= 3 and len(cached) == len(warm["assets"]),
                  f"the reload takes every hashed asset from the cache: {warm['assets']}")
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            check(not errors, f"no console errors once the key is given: {errors}")
        finally:
            driver.quit()
    print(json.dumps({"lcp_cold_ms": lcp_cold, "lcp_warm_ms": lcp_warm,
                      "bytes_cold": cold["total"], "bytes_warm": warm["total"]}))
    print("all browser checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
