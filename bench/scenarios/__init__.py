"""One module per scenario: run(opts) -> list[Measure] for one repetition, and TARGETS."""
