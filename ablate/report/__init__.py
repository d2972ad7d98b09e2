"""The report: tables and figures of ablate.analysis rendered as self-contained HTML (plots, html, build)."""
