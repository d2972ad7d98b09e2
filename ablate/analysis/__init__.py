"""Analysis, computed once per study from the store: tidy tables (results), summaries (aggregate), the paper's
numbers and claims (anchors, paper.yaml) and the verdicts on them (verdicts). The report only shows these."""
