"""Deploy tooling (packaging, migrations); run from a checkout, never shipped in a function's zip."""
