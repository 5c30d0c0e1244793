# What the preconditions decide, as locals that depend only on the manifest and the variables, so that
# `make test` evaluates them offline with `terraform console` against terraform.tfvars.example
# (tests/integration/test_terraform.py): a plan can never fail on them for a copied example again.

locals {
  # Settings the platform provides to every function (the manifest's platform.settings); the rest come
  # from var.function_settings. DB_HOST and DB_PORT are the local stack's; in GCP the Cloud SQL
  # connector replaces them.
  platform_settings = local.topology.platform.settings

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

  # function -> the names var.function_settings gives it that its code never reads (neither its manifest
  # settings and tuning nor the platform's): a misspelt tuning name would otherwise be ignored silently.
  undeclared_settings = {
    for name, values in var.function_settings : name => sort(tolist(setsubtract(
      toset(keys(values)),
      toset(concat(local.topology.platform.settings, local.topology.platform.tuning,
      try(local.functions[name].settings, []), try(local.functions[name].tuning, []))),
      ))) if length(setsubtract(
      toset(keys(values)),
      toset(concat(local.topology.platform.settings, local.topology.platform.tuning,
      try(local.functions[name].settings, []), try(local.functions[name].tuning, []))),
    )) > 0
  }

  # Connection budget. shared/db.py gives every instance at most pool_size 2 + max_overflow 2 = 4
  # connections; the manifest's max_instances times 4 must fit in max_connections minus the reserve for
  # migrations and operators (sql.tf refuses otherwise).
  connections_per_instance = 4
  function_connections     = sum([for f in local.topology.functions : f.max_instances * local.connections_per_instance])
  connections_fit          = local.function_connections <= var.db_max_connections - var.db_reserved_connections
}
