"""How much each figure measures: the full run (`make bench`, a few minutes on 2 cores) and the
quick one (`--quick`, a smoke test of the whole bench in well under a minute)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Plan:
    name: str
    warmup: int  # cells each kernel runs before a figure measures it ...
    warmup_seconds: float  # ... or fewer (two at least) if they take longer than this
    trivial: int  # `true` cells per kernel
    ten: int  # ten-line cells per kernel (each paired with a `true` cell)
    slow_cell: float  # seconds: a kernel slower than this per cell gets ...
    slow_share: int  # ... 1/slow_share of the iterations, and the table says so
    startups: int  # fresh kernels per kernel
    first_line: int  # `echo a; sleep 1; echo b` cells per kernel
    seq: int  # the flood: `seq 1 N`
    flood_rounds: int  # flood runs per kernel that finishes it
    deadline: float  # seconds a kernel has for the flood
    isolation_trivial: int  # `true` cells per isolation mode
    isolation_startups: int  # fresh kernels per isolation mode
    session_creates: int  # `%session create` cells
    sessions: int  # sessions in one kernel, for their memory
    notebooks: int  # notebooks run at once through nbclient ...
    notebook_cells: int  # ... with this many cells each
    download_bytes: int  # the network figure: one curl download of this size ...
    downloads: int  # ... this many times per network mode


FULL = Plan(
    name="full",
    warmup=20,
    warmup_seconds=2.0,
    trivial=300,
    ten=100,
    slow_cell=0.1,
    slow_share=6,
    startups=5,
    first_line=5,
    seq=7_000_000,  # 55 MB
    flood_rounds=3,
    deadline=20.0,
    isolation_trivial=300,
    isolation_startups=5,
    session_creates=50,
    sessions=100,
    notebooks=8,
    notebook_cells=200,
    download_bytes=200 << 20,
    downloads=5,
)

QUICK = Plan(
    name="quick",
    warmup=2,
    warmup_seconds=0.5,
    trivial=10,
    ten=4,
    slow_cell=0.1,
    slow_share=2,
    startups=1,
    first_line=1,
    seq=100_000,  # 0.6 MB
    flood_rounds=1,
    deadline=3.0,
    isolation_trivial=10,
    isolation_startups=1,
    session_creates=3,
    sessions=3,
    notebooks=2,
    notebook_cells=10,
    download_bytes=4 << 20,
    downloads=1,
)
