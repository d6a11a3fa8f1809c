"""Open a `snakemake --report` page in headless Chromium the way a user does, through Selenium
and Debian's chromium and chromium-driver: read the front page, click through every result in
the sidebar, collect the console's errors, take screenshots.

    python -m nvfp4bench.report_browser report.html docs/reference-h100 [--screenshots-only]

checks the report (exit status 1 and one line per problem if a page fails) and writes the
screenshots report-front-page.png and report-overview.png into the folder, and a copy of
report.html unless --screenshots-only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("NVFP4BENCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NVFP4BENCH_CHROMEDRIVER", "/usr/bin/chromedriver")
# The screen the report is checked and photographed at: a common laptop's.
WINDOW = (1280, 800)
WAIT_S = 20


def unavailable() -> str | None:
    """Why the browser cannot run here (one line), or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found (Debian package {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[browser]')"
    return None


@dataclass
class Shown:
    """One result as the report showed it."""

    path: str
    kind: str  # "image" or "table"
    sidebar: list[str]  # category, subcategory, row label
    problem: str = ""


@dataclass
class Visit:
    front_page: str = ""
    front_page_problem: str = ""
    shown: list[Shown] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        lines = [f"front page: {self.front_page_problem}"] if self.front_page_problem else []
        lines += [f"{' / '.join(s.sidebar)}: {s.problem}" for s in self.shown if s.problem]
        missed = sorted(set(self.results) - {s.path for s in self.shown})
        lines += [f"{path}: not reachable from the sidebar" for path in missed]
        lines += [f"console: {error}" for error in self.console_errors]
        return lines


class ReportBrowser:
    """A headless Chromium window on one report file."""

    def __init__(self, report: str | Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.report = Path(report).resolve()
        self._profile = tempfile.mkdtemp(prefix="nvfp4bench-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        # As root and with no network: no sandbox, and none of Chromium's own connections.
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={self._profile}",
        ):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        width, height = WINDOW
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.driver.get(self.report.as_uri())
        self._wait(lambda: self._js("return document.querySelector('#app nav li') !== null"))

    def __enter__(self) -> ReportBrowser:
        return self

    def __exit__(self, *exc) -> None:
        self.driver.quit()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def _wait(self, condition, timeout: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return False

    def front_page(self) -> str:
        """The text of the workflow description on the report's first page."""
        self._click_home()
        self._click_sidebar("Workflow")
        self._wait(lambda: self._js("return document.querySelector('.prose') !== null"))
        return self._js("return document.querySelector('.prose').innerText")

    def follow_front_page_link(self, text: str) -> str | None:
        """Click the front page's link `text`; the category the sidebar then shows."""
        self.front_page()
        before = self._js("return app.state.category || null")
        self.driver.find_element("css selector", ".prose").find_element("link text", text).click()
        self._wait(lambda: self._js("return app.state.category || null") != before, timeout=5)
        return self._js("return app.state.category || null")

    def _cut_off(self, selector: str) -> str:
        """A problem if the element's top lies above what can be scrolled to (a page taller than
        the window, centred in it), else ""."""
        top = self._js(f"return document.querySelector('{selector}').getBoundingClientRect().top")
        return f"its top is cut off ({top:.0f} px, out of reach)" if top < 0 else ""

    def console_errors(self) -> list[str]:
        """Errors logged since the last call, from the page and its frames."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def screenshot(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))

    def _click_home(self) -> None:
        self.driver.find_element("css selector", "nav nav ol li a").click()

    def _sidebar_items(self) -> list[str]:
        return self._js(
            "return [...document.querySelectorAll('nav ul li a span')].map(s => s.innerText)"
        )

    def _click_sidebar(self, label: str) -> None:
        for item in self.driver.find_elements("css selector", "nav ul li a"):
            if item.text.strip() == label:
                item.click()
                return
        raise LookupError(f"no sidebar entry {label!r}; there are {self._sidebar_items()}")

    def categories(self) -> dict[str, list[str]]:
        """Category -> subcategories, as the report lists them."""
        return self._js(
            "return Object.fromEntries("
            "Object.entries(categories).map(([c, s]) => [c, Object.keys(s)]))"
        )

    def _result_rows(self) -> list:
        return self.driver.find_elements("css selector", "nav table tbody tr")

    def _shown_path(self) -> str | None:
        return self._js("return app.state.resultPath || null")

    def _check_content(self) -> tuple[str, str]:
        """(kind, problem) of what the content area shows now."""
        content = "div.h-screen.overflow-auto"
        image = f"{content} img"
        frame = f"{content} iframe"
        self._wait(lambda: self._js(f"return document.querySelector('{image}, {frame}') !== null"))
        if self._js(f"return document.querySelector('{image}') !== null"):
            loaded = self._wait(
                lambda: self._js(
                    f"const i = document.querySelector('{image}'); "
                    "return i.complete && i.naturalWidth > 0"
                ),
                timeout=5,
            )
            return "image", self._cut_off(image) if loaded else "the image did not load"
        if not self._js(f"return document.querySelector('{frame}') !== null"):
            return "", "shows neither an image nor a page"
        self.driver.switch_to.frame(self.driver.find_element("css selector", frame))
        try:
            rendered = self._wait(
                lambda: self._js(
                    "return document.querySelectorAll('table.dataTable tbody tr').length > 0 && "
                    "document.querySelectorAll('.dtsp-searchPane').length > 0"
                )
            )
            text = self._js("return document.body.innerText")
        finally:
            self.driver.switch_to.default_content()
        if not rendered:
            return "table", f"no interactive table rendered: {text[:200]!r}"
        return "table", ""

    def visit_all(self) -> Visit:
        """Click every result of every (sub)category in the sidebar and check what it shows."""
        visit = Visit(results=self._js("return Object.keys(results)"))
        visit.front_page = self.front_page()
        visit.front_page_problem = self._cut_off(".prose")
        for category, subcategories in self.categories().items():
            for subcategory in subcategories:
                self._click_home()
                self._click_sidebar(category)
                if len(subcategories) > 1:
                    self._click_sidebar(subcategory)
                for index in range(len(self._result_rows())):
                    row = self._result_rows()[index]
                    label = " ".join(td.text for td in row.find_elements("css selector", "td"))
                    before = self._shown_path()
                    row.find_element("css selector", "td:last-child a").click()
                    self._wait(lambda b=before: self._shown_path() != b, timeout=5)
                    kind, problem = self._check_content()
                    visit.shown.append(
                        Shown(
                            self._shown_path() or "",
                            kind,
                            [category, subcategory, label.strip()],
                            problem,
                        )
                    )
        visit.console_errors = self.console_errors()
        return visit

    def show_category_first_result(self, category: str) -> None:
        self._click_home()
        self._click_sidebar(category)
        self._result_rows()[0].find_element("css selector", "td:last-child a").click()
        self._check_content()


def publish(report: str | Path, folder: str | Path, copy: bool = True) -> list[str]:
    """Check `report` and write screenshots of its front page and overview into `folder`, with a
    copy of the report if `copy`; returns the problems found (empty when every page rendered)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with ReportBrowser(report) as browser:
        visit = browser.visit_all()
        browser.front_page()
        browser.screenshot(folder / "report-front-page.png")
        browser.show_category_first_result("Overview")
        browser.screenshot(folder / "report-overview.png")
    if copy:
        shutil.copyfile(report, folder / "report.html")
    return visit.problems()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="the report.html that snakemake --report wrote")
    parser.add_argument("folder", help="where report.html and the screenshots go")
    parser.add_argument("--screenshots-only", action="store_true", help="no copy of the report")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason:
        print(f"report_browser: {reason}", file=sys.stderr)
        return 2
    problems = publish(args.report, args.folder, copy=not args.screenshots_only)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
