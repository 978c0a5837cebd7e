"""The build report: report.json, report.html and its plots (a stage of `pile build`)."""
