# What the preconditions decide, as locals that depend only on the manifest and the variables, so that
# `make test` evaluates them offline with `terraform console` against terraform.tfvars.example
# (tests/integration/test_terraform.py): a plan can never fail on them for a copied example again.

locals {
  # Settings the platform provides to every function; the rest come from var.function_settings.
  # DB_HOST and DB_PORT are the local stack's; in GCP the Cloud SQL connector replaces them.
  platform_settings = ["SERVICE_NAME", "GCP_PROJECT", "DB_NAME", "DB_USER", "DB_HOST", "DB_PORT"]

  # function -> the settings its manifest entry lists that nothing provides (functions.tf refuses these).
  missing_settings = {
    for name, f in local.functions : name => sort(tolist(setsubtract(
      toset(try(f.settings, [])),
      setunion(toset(local.platform_settings), toset(keys(lookup(var.function_settings, name, {})))),
      ))) if length(setsubtract(
      toset(try(f.settings, [])),
      setunion(toset(local.platform_settings), toset(keys(lookup(var.function_settings, name, {})))),
    )) > 0
  }

  # Connection budget. shared/db.py gives every instance at most pool_size 2 + max_overflow 2 = 4
  # connections; the manifest's max_instances times 4 must fit in max_connections minus the reserve for
  # migrations and operators (sql.tf refuses otherwise).
  connections_per_instance = 4
  function_connections     = sum([for f in local.topology.functions : f.max_instances * local.connections_per_instance])
  connections_fit          = local.function_connections <= var.db_max_connections - var.db_reserved_connections
}
