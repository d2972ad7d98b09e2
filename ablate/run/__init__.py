"""Running a study: the stage order (pipeline), what to run (jobs), one cell (cell), where cells run (executors,
ray), reuse across studies, the results lock, the memory and compute budget, status, progress bars."""
