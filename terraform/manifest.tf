# Everything is driven by the topology manifest, the same file the local stack reads: there is no second
# list of functions, topics or subscriptions to keep in sync. These locals depend on nothing but the
# manifest, so tests evaluate them offline with `terraform console` (tests/integration/test_terraform.py).

locals {
  topology = yamldecode(file("${path.module}/../shared/topology.yaml"))

  functions       = { for f in local.topology.functions : f.name => f }
  event_functions = { for name, f in local.functions : name => f if !try(f.trigger.http, false) }
  http_functions  = { for name, f in local.functions : name => f if try(f.trigger.http, false) }

  push_subscriptions = { for s in local.topology.subscriptions : s.name => s if try(s.push_to, null) != null }
  hold_subscriptions = { for s in local.topology.subscriptions : s.name => s if try(s.push_to, null) == null }
  dead_letter_topics = toset([for s in local.push_subscriptions : s.dead_letter_topic])

  # (function, topic) for every topic a function publishes to: one publisher binding each.
  publishers = {
    for pair in flatten([
      for f in local.topology.functions : [for topic in try(f.publishes, []) : { function = f.name, topic = topic }]
    ]) : "${pair.function}/${pair.topic}" => pair
  }

  # (function, secret) for every secret a function reads: one accessor binding each.
  secret_readers = {
    for pair in flatten([
      for f in local.topology.functions : [for secret in try(f.secrets, []) : { function = f.name, secret = secret }]
    ]) : "${pair.function}/${pair.secret}" => pair
  }
}
