"""`fastcourse bench`: fastcourse against its peer (the course's recipe in plain Keras 3),
measured in the same run on the same machine; see `fastcourse.bench.cases` for the cases.

Modules: `cases` (each case and `run_bench`), `peer` (the peer, fastcourse's side, the data),
`features` and `memory` (the lesson-3 feature path), `report` (rows, the table, the ratio
line), `flops` (operation counts and the matmul roofline), `gpu` (`--gpu`).
"""
