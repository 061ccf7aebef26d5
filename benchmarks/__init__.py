"""The benchmark scripts, importable as a package (benchmarks.roofline, benchmarks.workloads) from
the repository root. A regular package, not a namespace one: opacus installs a top-level
`benchmarks` package of its own, which would otherwise win the import."""
