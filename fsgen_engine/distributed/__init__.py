"""Running beyond one process: Ray jobs for sweeps and evaluations (``ray_jobs``; needs the
``distributed`` extra, ``pip install .[distributed]``)."""
