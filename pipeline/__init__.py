"""awd-bench DVC stages: params schema, suites, and one module per stage (see docs/design.md)."""
