"""`fastcourse bench`: what fastcourse does on the machine it runs on (time to accuracy with its
breakdown, VGG16 features, batchnorm statistics, memory, the lesson-3 estimate, `--gpu`).

Modules: `cases` (each case and `run_bench`), `recipe` (the data, the course's CNN through the
trainer, the time-to-accuracy recipe), `breakdown` (where the seconds go), `features`, `memory`
and `lesson3` (the lesson-3 path), `bn_epoch`, `report` (rows, the table, the parsable lines, the
machine line), `flops` (operation counts and the matmul rooflines), `gpu` (`--gpu`). The
comparisons with other toolkits live outside the package, in the repository's `benchmarks/`.
"""
