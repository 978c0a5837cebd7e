"""The report stage's declaration for `pile build` (pipeline.contract): `report.html`, `report.json`,
`report/*.png` and their manifest, read back from every other stage's outputs."""

from __future__ import annotations

from typing import Any

from pipeline.contract import StageResult, StageSpec
from pipeline.report.stage import REPORT_FIGURES, REPORT_MANIFEST

REPORT_BYTES = 400_000  # report.html/json and six PNGs: ~170 kB on the sample
NAMES = ("report.json", "report.html", *(f"report/{n}" for n in REPORT_FIGURES), REPORT_MANIFEST)
# make_figures also draws one `pile exposure` figure per variant, not in REPORT_FIGURES
EXPOSURE = "report/exposure_{variant}.png"


class ReportSpec(StageSpec):
    """The build's report. No config of its own: its key is made of every other stage's key."""

    name = "report"
    upstream = ("dedup", "tokenize", "order", "preshuffle")
    per_variant = False

    def variants(self, variants: tuple[str, ...]) -> list[str]:
        return ["build"]

    def directory(self, job: Any, variant: str) -> str:
        return "."

    def outputs(self, job: Any, variant: str) -> list[str]:
        return [*NAMES, *(EXPOSURE.format(variant=v) for v in job.variants)]

    def owns(self, variant: str) -> list[str]:
        return [*NAMES, EXPOSURE.format(variant="*")]

    def estimate(self, job: Any, variant: str) -> int:
        return REPORT_BYTES

    def run(self, job: Any, variant: str, executor: Any) -> StageResult:
        from pipeline.report.stage import write_report

        write_report(job)  # the figures it draws are listed in its manifest, written last
        return StageResult(job.out / REPORT_MANIFEST, {})
